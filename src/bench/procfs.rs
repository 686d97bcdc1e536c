//! CPU time of a process tree from `/proc`, for the CPU each server spends
//! per credential over a window.

use std::time::Duration;

use super::Error;

/// `/proc/<pid>/stat` counts in USER_HZ ticks, which Linux fixes at 100 for
/// userspace on every architecture it builds for (`getconf CLK_TCK`).
const TICKS_PER_SECOND: u64 = 100;

/// The fields after the command name (which may hold spaces and
/// parentheses, so the split is at the last `)`): state is index 0.
fn fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// utime + stime (fields 14 and 15 of `stat`), in ticks.
fn ticks(fields: &[String]) -> u64 {
    let at = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    at(11).unwrap_or(0) + at(12).unwrap_or(0)
}

/// CPU time of `pid` and of its living descendants.
pub fn tree_cpu(pid: u32) -> Result<Duration, Error> {
    let own = fields(pid).ok_or_else(|| Error::Unexpected(format!("no /proc/{pid}/stat")))?;
    let mut total = ticks(&own);
    // Children by parent pid: a scan of /proc (a few hundred entries).
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(f) = fields(child) {
                if f.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
                    total += ticks(&f);
                    parents.push(child);
                }
            }
        }
    }
    Ok(Duration::from_millis(total * 1000 / TICKS_PER_SECOND))
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_spent_some_cpu() {
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        let cpu = super::tree_cpu(std::process::id()).expect("own stat");
        assert!(cpu > std::time::Duration::ZERO);
    }
}
