//! `pgsecrets agent`: keep an application's database credentials fresh in
//! files (see [`crate::agent`] and `config/agent.toml`).

use std::path::PathBuf;

use crate::agent::config::{FlagCredential, Overrides};
use crate::agent::{self, Config};
use crate::config::LogFormat;

use super::init_logging;

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// Agent configuration (TOML); see config/agent.toml.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Server address [default: the config's `address`, else $VAULT_ADDR].
    #[arg(long)]
    pub address: Option<String>,
    /// CA certificate(s) (PEM) for https [default: the config's, else $VAULT_CACERT].
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// File holding the agent's token; read again whenever it changes.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The database engine's mount [default: database].
    #[arg(long)]
    pub mount: Option<String>,
    /// One more credential to keep: CLUSTER/DATABASE/ROLE (with --file).
    #[arg(long, requires = "file")]
    pub path: Option<String>,
    /// The file to write that credential to.
    #[arg(long, requires = "path")]
    pub file: Option<PathBuf>,
    /// Its format: env, json, url [default: env].
    #[arg(long, requires = "path")]
    pub format: Option<String>,
    /// A shell command to run after each write of that file.
    #[arg(long, requires = "path")]
    pub command: Option<String>,
    /// Log format; overrides the config file.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

pub async fn run(args: AgentArgs) -> Result<(), agent::Error> {
    // Installed first: a SIGTERM during startup still ends in a clean exit.
    let shutdown = shutdown_signal()?;
    let credential = match (args.path, args.file) {
        (Some(path), Some(file)) => Some(FlagCredential {
            path,
            file,
            format: args.format,
            command: args.command,
        }),
        _ => None,
    };
    let overrides = Overrides {
        address: args.address,
        ca_cert: args.ca_cert,
        token_file: args.token_file,
        mount: args.mount,
        log_format: args.log_format,
        credential,
    };
    let config = Config::load(args.config.as_deref(), overrides)?;
    init_logging(config.log_format);
    agent::run(config, shutdown).await
}

/// Completes on SIGTERM or ctrl-c.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, agent::Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(agent::Error::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(agent::Error::Signal)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
