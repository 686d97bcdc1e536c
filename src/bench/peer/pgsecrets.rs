//! pgsecrets as the peer scenario runs it: a child process of this very
//! binary (so its CPU time and memory are its own, not the load
//! generator's), in memory (`server --dev`, as OpenBao's `-dev`) or on its
//! embedded SQLite storage (`server --config`, initialised beforehand as
//! `operator init` does).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::super::child::Child;
use super::super::pg::free_port;
use super::super::{target, Error};
use super::Storage;
use crate::client::Client;

const START_WITHIN: Duration = Duration::from_secs(120);
/// The dev server's root token, as OpenBao's `-dev-root-token-id=root`.
const DEV_ROOT: &str = "root";

pub struct Pgsecrets {
    storage: Storage,
    pub url: String,
    port: u16,
    pub root_token: String,
    child: Option<Child>,
    /// The config file, storage, unseal key and log.
    dir: TempDir,
}

impl Pgsecrets {
    pub async fn start(storage: Storage) -> Result<Pgsecrets, Error> {
        let dir = tempfile::Builder::new()
            .prefix("pgsecrets-bench-peer-")
            .tempdir()?;
        let port = free_port()?;
        let mut root_token = DEV_ROOT.to_string();
        if storage == Storage::Durable {
            root_token = super::super::child::durable_config(dir.path(), port)
                .await?
                .2;
        }
        let mut s = Pgsecrets {
            storage,
            url: format!("http://127.0.0.1:{port}"),
            port,
            root_token,
            child: None,
            dir,
        };
        s.spawn()?;
        s.wait_ready().await?;
        Ok(s)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn spawn(&mut self) -> Result<(), Error> {
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        command.arg("server");
        match self.storage {
            Storage::Memory => {
                command
                    .arg("--dev")
                    .arg(format!("--dev-listen-address=127.0.0.1:{}", self.port))
                    .arg(format!("--dev-root-token-id={DEV_ROOT}"))
                    .arg("--dev-no-postgres");
            }
            Storage::Durable => {
                command
                    .arg("--config")
                    .arg(self.dir.path().join("pgsecrets.toml"));
            }
        }
        command.env_remove("VAULT_DEV_ROOT_TOKEN_ID");
        self.child = Some(Child::spawn(command, &self.url, &self.log())?);
        Ok(())
    }

    async fn wait_ready(&mut self) -> Result<(), Error> {
        let log = self.log();
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| Error::Setup("pgsecrets is not running".into()))?;
        child.wait_until(&log, START_WITHIN, |s| s == 200).await?;
        Ok(())
    }

    pub fn client(&self) -> Result<Client, Error> {
        target::client(&self.url, &self.root_token)
    }

    /// Stops the process and starts it again on the same storage; returns
    /// when `sys/health` answers 200, and the instant the process started.
    pub async fn restart(&mut self) -> Result<Instant, Error> {
        if self.storage != Storage::Durable {
            return Err(Error::Setup(
                "an in-memory pgsecrets has nothing to restart on".into(),
            ));
        }
        self.stop().await;
        let started = Instant::now();
        self.spawn()?;
        self.wait_ready().await?;
        Ok(started)
    }

    pub fn process(&self) -> Result<&Child, Error> {
        self.child
            .as_ref()
            .ok_or_else(|| Error::Setup("pgsecrets is not running".into()))
    }

    pub async fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            child.stop().await;
        }
    }
}
