//! pgsecrets as a child process (`pgsecrets server --config <file>` of this
//! very binary), for what only a process of its own shows: the time from
//! exec until `sys/health` answers, and its resident memory.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::Error;
use crate::client::{Client, Settings};

pub struct Child {
    process: tokio::process::Child,
    pid: u32,
    pub url: String,
}

impl Child {
    /// Starts the server and waits until `sys/health` answers 200; returns
    /// it and how long that took. Its output goes to `log`.
    pub async fn start(
        config: &Path,
        url: &str,
        log: &Path,
        within: Duration,
    ) -> Result<(Child, Duration), Error> {
        let exe = std::env::current_exe()?;
        let out = std::fs::File::create(log)?;
        let started = Instant::now();
        let process = tokio::process::Command::new(exe)
            .arg("server")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()?;
        let pid = process
            .id()
            .ok_or_else(|| Error::Setup("the server exited at once".into()))?;
        let mut child = Child {
            process,
            pid,
            url: url.to_string(),
        };
        let mut settings = Settings::new(url);
        settings.timeout = Duration::from_secs(5);
        let client = Client::new(settings)?;
        loop {
            // Any other answer (503 while sealed or starting) is an error.
            if client.read("sys/health").await.is_ok() {
                return Ok((child, started.elapsed()));
            }
            if let Some(status) = child.process.try_wait()? {
                return Err(Error::Setup(format!(
                    "the server exited ({status}) before answering; its log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )));
            }
            if started.elapsed() > within {
                return Err(Error::Setup(format!(
                    "the server did not answer sys/health within {within:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Resident memory now (`VmRSS`), in MiB.
    pub fn rss_mib(&self) -> Result<f64, Error> {
        self.status_kib("VmRSS:").map(|k| k as f64 / 1024.0)
    }

    /// The most resident memory so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> Result<f64, Error> {
        self.status_kib("VmHWM:").map(|k| k as f64 / 1024.0)
    }

    fn status_kib(&self, field: &str) -> Result<u64, Error> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::Unexpected(format!("no {field} in /proc/{}/status", self.pid)))
    }

    /// SIGTERM, as an operator stops it; killed if it has not exited after 10 s.
    pub async fn stop(mut self) {
        let _ = tokio::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(10), self.process.wait())
            .await
            .is_err()
        {
            let _ = self.process.kill().await;
        }
    }
}
