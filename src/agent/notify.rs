//! Telling the application that its sink file changed: a shell command, a
//! signal to the process named in a pid file, or both.
//!
//! Failures here are logged, never fatal: the new credential is already in
//! the sink, and the application will read it on its next reload anyway.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{kill_process, Pid, Signal};

/// How long a command may run before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The signals an application may ask for, by name (`HUP` or `SIGHUP`).
const SIGNALS: [(&str, Signal); 7] = [
    ("HUP", Signal::HUP),
    ("INT", Signal::INT),
    ("QUIT", Signal::QUIT),
    ("TERM", Signal::TERM),
    ("USR1", Signal::USR1),
    ("USR2", Signal::USR2),
    ("WINCH", Signal::WINCH),
];

/// A signal and the file holding the pid to send it to.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalTarget {
    pub signal: Signal,
    pub pid_file: PathBuf,
}

/// Parses a signal name: `HUP`, `SIGHUP` or `hup`.
pub fn parse_signal(name: &str) -> Result<Signal, String> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(known, _)| *known == bare)
        .map(|(_, signal)| *signal)
        .ok_or_else(|| {
            let names: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
            format!("signal {name:?} is unknown: use {}", names.join(", "))
        })
}

/// Runs `command` with `sh -c`; `PGSECRETS_SINK` names the file just written.
pub async fn run_command(command: &str, sink: &Path) {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("PGSECRETS_SINK", sink)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!(command, "cannot start the command: {e}");
            return;
        }
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) if status.success() => tracing::info!(command, "command ran"),
        Ok(Ok(status)) => tracing::warn!(command, %status, "command failed"),
        Ok(Err(e)) => tracing::warn!(command, "command: {e}"),
        Err(_) => tracing::warn!(
            command,
            "command still running after {COMMAND_TIMEOUT:?}; killed"
        ),
    }
}

/// Sends the signal to the pid in the pid file. A missing pid file means the
/// application is not running yet, and is only noted.
pub fn send_signal(target: &SignalTarget) {
    let file = target.pid_file.display();
    let text = match std::fs::read_to_string(&target.pid_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(pid_file = %file, "no pid file: nobody to signal yet");
            return;
        }
        Err(e) => {
            tracing::warn!(pid_file = %file, "cannot read the pid file: {e}");
            return;
        }
    };
    let Some(pid) = text.trim().parse().ok().and_then(Pid::from_raw) else {
        tracing::warn!(pid_file = %file, "the pid file holds no process id");
        return;
    };
    match kill_process(pid, target.signal) {
        Ok(()) => {
            tracing::info!(pid = pid.as_raw_nonzero().get(), signal = ?target.signal, "signalled the application")
        }
        Err(e) => tracing::warn!(
            pid = pid.as_raw_nonzero().get(),
            "cannot signal the application: {e}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_are_read_like_kill_reads_them() {
        assert_eq!(parse_signal("HUP").unwrap(), Signal::HUP);
        assert_eq!(parse_signal("sigusr1").unwrap(), Signal::USR1);
        let e = parse_signal("SIGSTOP").unwrap_err();
        assert!(
            e.contains("\"SIGSTOP\" is unknown") && e.contains("HUP"),
            "{e}"
        );
    }
}
