//! `pgsecrets agent`: a sidecar that keeps an application's database
//! credentials fresh in files the application reads.
//!
//! It is a client of the server like any other: it talks HTTP to `/v1/`
//! with a token and never touches storage or PostgreSQL. Data enters from
//! the server ([`api`]) and the token file ([`token`]), and leaves through
//! sink files ([`sink`], rendered by [`render`]) and notifications to the
//! application ([`notify`]).
//!
//! - [`config`]: `agent.toml` + flags + environment -> validated [`Config`];
//!   [`credential`]: one `[[credential]]` block of it.
//! - [`keeper`]: one loop per credential (fetch, write, renew, replace).
//! - [`schedule`]: when to renew or replace, and the retry backoff.
//!
//! On shutdown every keeper stops between steps, and every lease still held
//! is revoked before [`run`] returns.

pub mod api;
pub mod config;
pub mod credential;
pub mod keeper;
pub mod notify;
pub mod render;
pub mod schedule;
pub mod sink;
pub mod token;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client::{self, Client};

pub use config::Config;

use keeper::Keeper;
use schedule::Backoff;
use token::TokenFile;

/// How long shutdown keeps trying to revoke the leases it holds.
const SHUTDOWN_REVOKE_DEADLINE: Duration = Duration::from_secs(10);

/// What to do when the server refuses a revocation with 403.
pub(crate) const REVOKE_HINT: &str =
    "the agent's token needs update on sys/leases/revoke; the lease expires on its own";

/// Why the agent could not start. Nothing after the start stops it but a
/// shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Token(#[from] token::Error),
    /// `ca_cert` (from the config, `--ca-cert` or `VAULT_CACERT`) cannot be used.
    #[error("ca_cert {}: {reason}", path.display())]
    CaCert {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error(transparent)]
    Client(client::Error),
    #[error("the directory of sink file {file} is missing")]
    SinkDirectory { file: std::path::PathBuf },
    #[error("cannot listen for signals: {0}")]
    Signal(std::io::Error),
}

/// Keeps every configured credential fresh until `shutdown` completes, then
/// revokes the leases held.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let client = api::client(&config)?;
    let token = Arc::new(TokenFile::open(&config.token_file)?);
    for c in &config.credentials {
        if !sink::directory(&c.file).is_dir() {
            return Err(Error::SinkDirectory {
                file: c.file.clone(),
            });
        }
    }
    tracing::info!(
        address = %config.address,
        credentials = config.credentials.len(),
        "pgsecrets agent started"
    );
    let (stop, stopped) = watch::channel(false);
    let mut keepers = JoinSet::new();
    for credential in config.credentials {
        let backoff = Backoff::new(config.retry_initial, config.retry_max);
        let keeper = Keeper::new(
            credential,
            client.clone(),
            Arc::clone(&token),
            config.grace,
            backoff,
        );
        keepers.spawn(keeper.run(stopped.clone()));
    }
    shutdown.await;
    tracing::info!("shutting down: revoking the leases held");
    let _ = stop.send(true);
    let mut held = Vec::new();
    while let Some(result) = keepers.join_next().await {
        match result {
            Ok(leases) => held.extend(leases),
            Err(e) => tracing::error!("a credential's loop failed: {e}"),
        }
    }
    revoke_all(&client, &token, held, config.retry_initial).await;
    Ok(())
}

/// Revokes `leases` concurrently, retrying each until it is gone or the
/// deadline passes; leases left over expire on the server by themselves.
async fn revoke_all(client: &Client, token: &Arc<TokenFile>, leases: Vec<String>, retry: Duration) {
    let mut revocations = JoinSet::new();
    for lease_id in leases {
        let (client, token) = (client.clone(), Arc::clone(token));
        revocations.spawn(async move {
            let mut backoff = Backoff::new(retry, Duration::from_secs(2));
            loop {
                match api::revoke(&client, &token.current(), &lease_id).await {
                    Ok(()) => {
                        tracing::info!(lease_id = %lease_id, "revoked");
                        return;
                    }
                    Err(e) if e.is_permission_denied() => {
                        tracing::error!(lease_id = %lease_id, "cannot revoke: {e} ({REVOKE_HINT})");
                        return;
                    }
                    Err(e) => {
                        let delay = backoff.delay();
                        tracing::warn!(lease_id = %lease_id, "cannot revoke: {e}; retrying in {:.1}s", delay.as_secs_f64());
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        });
    }
    let all = async { while revocations.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_REVOKE_DEADLINE, all)
        .await
        .is_err()
    {
        tracing::warn!(
            "gave up revoking after {SHUTDOWN_REVOKE_DEADLINE:?}; the leases left expire on the server"
        );
    }
}
