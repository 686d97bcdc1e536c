//! The cleanup that outlives this process: a small detached shell that
//! polls it every second and, once it is gone (`kill -9`, or a server held
//! in a static that is never dropped), stops the server and deletes its
//! directory.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

const SCRIPT: &str = r#"
trap '' HUP INT TERM PIPE
while kill -0 "$WD_PID" 2>/dev/null; do
  # Reparented (our process died, maybe still a zombie): stop waiting.
  ppid=
  if [ -r "/proc/$$/status" ]; then
    while read -r key value; do
      if [ "$key" = "PPid:" ]; then ppid=$value; fi
    done < "/proc/$$/status"
  fi
  if [ -n "$ppid" ] && [ "$ppid" != "$WD_PID" ]; then break; fi
  sleep 1
done
if [ -f "$WD_DATA/postmaster.pid" ]; then
  if [ "$WD_RUNAS" = 1 ]; then
    runuser -u postgres -- "$WD_PG_CTL" stop -D "$WD_DATA" -m immediate -w -t 30 -s
  else
    "$WD_PG_CTL" stop -D "$WD_DATA" -m immediate -w -t 30 -s
  fi
  if [ -f "$WD_DATA/postmaster.pid" ]; then
    pm=$(head -n 1 "$WD_DATA/postmaster.pid")
    if [ -n "$pm" ]; then kill -QUIT "$pm"; sleep 1; fi
  fi
fi
rm -rf "$WD_ROOT"
"#;

/// Starts the watchdog for the server of `pg_ctl` on `data`, whose
/// temporary directory is `root`.
pub(super) fn spawn(
    pg_ctl: &Path,
    data: &Path,
    root: &Path,
    as_postgres: bool,
) -> std::io::Result<Child> {
    Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .env("WD_PID", std::process::id().to_string())
        .env("WD_PG_CTL", pg_ctl)
        .env("WD_DATA", data)
        .env("WD_ROOT", root)
        .env("WD_RUNAS", if as_postgres { "1" } else { "0" })
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: a ctrl-c to our process does not reach it.
        .process_group(0)
        .spawn()
}
