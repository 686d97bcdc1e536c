//! A server as a child process: pgsecrets (`pgsecrets server --config
//! <file>` of this very binary) or, for the peer scenario, OpenBao; for what
//! only a process of its own shows: the time from exec until `sys/health`
//! answers, its resident memory and its CPU time.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::Error;
use crate::client::{Client, Settings};

/// A durable server's configuration in `dir` (`pgsecrets.toml`: SQLite
/// storage and its unseal key beside it, listening on `port`), its storage
/// initialised: the file, the configuration and the root token.
pub async fn durable_config(
    dir: &Path,
    port: u16,
) -> Result<(std::path::PathBuf, crate::config::Config, String), Error> {
    let path = dir.join("pgsecrets.toml");
    std::fs::write(
        &path,
        format!(
            "[listener]\naddress = \"127.0.0.1:{port}\"\n\n\
             [storage]\nbackend = \"sqlite\"\npath = \"pgsecrets.db\"\n\n\
             [seal]\nkey_file = \"unseal.key\"\n"
        ),
    )?;
    let config = crate::config::Config::load(&path)?;
    let root = crate::server::operator_init(&config).await?;
    Ok((path, config, root))
}

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
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        command.arg("server").arg("--config").arg(config);
        let started = Instant::now();
        let mut child = Child::spawn(command, url, log)?;
        child
            .wait_until(log, within, |status| status == 200)
            .await?;
        Ok((child, started.elapsed()))
    }

    /// Starts `command` (any server answering `sys/health` at `url`), its
    /// output to `log`; returns at once.
    pub fn spawn(
        mut command: tokio::process::Command,
        url: &str,
        log: &Path,
    ) -> Result<Child, Error> {
        let out = std::fs::File::create(log)?;
        let process = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()?;
        let pid = process
            .id()
            .ok_or_else(|| Error::Setup("the server exited at once".into()))?;
        Ok(Child {
            process,
            pid,
            url: url.to_string(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Polls `sys/health` every 5 ms until its status satisfies `ready`
    /// (200: serving; OpenBao answers 501 uninitialised, 503 sealed); fails
    /// if the process exits or `within` passes.
    pub async fn wait_until(
        &mut self,
        log: &Path,
        within: Duration,
        ready: impl Fn(u16) -> bool,
    ) -> Result<u16, Error> {
        let started = Instant::now();
        let mut settings = Settings::new(&self.url);
        settings.timeout = Duration::from_secs(5);
        let client = Client::new(settings)?;
        loop {
            let status = match client.read("sys/health").await {
                Ok(_) => Some(200),
                Err(e) => e.status(),
            };
            if let Some(status) = status.filter(|s| ready(*s)) {
                return Ok(status);
            }
            if let Some(status) = self.process.try_wait()? {
                return Err(Error::Setup(format!(
                    "the server exited ({status}) before answering; its log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )));
            }
            if started.elapsed() > within {
                return Err(Error::Setup(format!(
                    "the server did not answer sys/health as expected within {within:?} (last: {status:?})"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// User plus system CPU time of the process and its children (OpenBao
    /// may run plugins as processes of their own), from `/proc`.
    pub fn cpu(&self) -> Result<Duration, Error> {
        super::procfs::tree_cpu(self.pid)
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
