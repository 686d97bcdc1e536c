//! Where a server's binaries are, and, as root, a copy of them that the
//! `postgres` user can run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use super::{describe, Error, OS_USER};

/// Where the server binaries are, first found wins: `explicit` (a flag),
/// `PGSECRETS_PG_BIN`, `pg_config --bindir`, a directory on `PATH` holding
/// them, then Debian's `/usr/lib/postgresql/<major>/bin`, newest first
/// (`PGSECRETS_PG_VERSIONS_DIR` names another directory of `<major>/bin`).
pub fn find_bin(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(dir) = explicit {
        return if has_server_binaries(dir) {
            Ok(dir.to_path_buf())
        } else {
            Err(Error::Setup(format!(
                "{} holds no initdb, pg_ctl and postgres",
                dir.display()
            )))
        };
    }
    if let Some(dir) = std::env::var_os("PGSECRETS_PG_BIN").filter(|v| !v.is_empty()) {
        return find_bin(Some(Path::new(&dir)));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server_binaries(&dir) {
            return Ok(dir);
        }
    }
    if let Some(dir) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| has_server_binaries(dir))
    {
        return Ok(dir);
    }
    // Tests point this elsewhere to see what a machine without PostgreSQL sees.
    let versions = std::env::var_os("PGSECRETS_PG_VERSIONS_DIR")
        .unwrap_or_else(|| "/usr/lib/postgresql".into());
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir(versions)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_server_binaries(dir))
        .collect();
    debian.sort();
    if let Some((_, dir)) = debian.pop() {
        return Ok(dir);
    }
    Err(Error::NotFound)
}

/// Whether `dir` holds the programs a server needs, executable.
pub fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"].iter().all(|b| {
        std::fs::metadata(dir.join(b))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// `bin`, or when the `postgres` user cannot run what is there (an npm
/// copy under `/root`, say), a world-readable copy of its install tree (the
/// parent of `bin/`) under `/tmp`, made once per machine and binary.
pub(super) fn reachable_by_postgres(bin: &Path) -> Result<PathBuf, Error> {
    // Asking `runuser` costs a process per server; tests start hundreds.
    static KNOWN: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, usable)) = known.iter().find(|(orig, _)| orig == bin) {
        return Ok(usable.clone());
    }
    let usable = if runnable_by_postgres(bin) {
        bin.to_path_buf()
    } else {
        copy_for_postgres(bin)?
    };
    known.push((bin.to_path_buf(), usable.clone()));
    Ok(usable)
}

fn runnable_by_postgres(dir: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", OS_USER, "--", "sh", "-c"])
        .arg(r#"test -x "$1/initdb" && test -x "$1/pg_ctl" && test -x "$1/postgres" && test -r "$1/postgres""#)
        .arg("sh")
        .arg(dir)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn copy_for_postgres(bin: &Path) -> Result<PathBuf, Error> {
    let unreachable = |why: String| {
        Error::Setup(format!(
            "the binaries at {} are not accessible to the `{OS_USER}` user and {why}; \
             make them world-readable (chmod -R a+rX) in a directory it can reach",
            bin.display()
        ))
    };
    let (Some(install), Some(bin_name)) = (bin.parent(), bin.file_name()) else {
        return Err(unreachable("they sit in no install tree to copy".into()));
    };
    // The binary's path and age name the copy: an upgrade in place gets a
    // new one rather than running the old.
    let stamp = std::fs::metadata(bin.join("postgres"))
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    let key = format!("{}|{stamp:?}", bin.display());
    let dest = PathBuf::from(format!(
        "/tmp/pgsecrets-pgbin-{:016x}",
        fnv1a(key.as_bytes())
    ));
    let copy = dest.join(bin_name);
    if runnable_by_postgres(&copy) {
        return Ok(copy);
    }
    // Copied aside, then renamed: another process may be doing the same.
    let staging = PathBuf::from(format!("{}.{}.tmp", dest.display(), std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let out = Command::new("cp")
        .arg("-a")
        .arg(install)
        .arg(&staging)
        .output()?;
    if !out.status.success() {
        return Err(unreachable(format!(
            "copying them to {} failed: {}",
            staging.display(),
            describe(&out)
        )));
    }
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&staging)
        .status();
    let _ = std::fs::remove_dir_all(&dest);
    if std::fs::rename(&staging, &dest).is_err() {
        // Another process won the race; its copy serves.
        let _ = std::fs::remove_dir_all(&staging);
    }
    if !runnable_by_postgres(&copy) {
        return Err(unreachable(format!(
            "neither is the copy at {}",
            dest.display()
        )));
    }
    Ok(copy)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
