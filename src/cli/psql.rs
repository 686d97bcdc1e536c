//! `pgsecrets psql CLUSTER/DB/ROLE [-- psql args]`: runs `psql` as a fresh
//! user and revokes the user's lease when `psql` exits, however it exits.
//!
//! The credentials reach `psql` only through its environment (`PGHOST`,
//! `PGPORT`, `PGDATABASE`, `PGUSER`, `PGPASSWORD`, `PGSSLMODE`), never its
//! command line, where other local users could read them in `ps`.
//!
//! Signals: ctrl-c reaches `psql` directly (same process group), which
//! cancels its query; this process ignores it and keeps waiting. SIGTERM or
//! SIGHUP stop `psql`, then the lease is revoked as usual.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};

use tokio::signal::unix::{signal, SignalKind};

use crate::client::Client;

use super::creds::{creds_path, issue, lease_line};
use super::Error;

/// The client program run.
const PSQL: &str = "psql";
/// Variables that would make libpq ignore the ones set here.
const OVERRIDING_VARS: [&str; 2] = ["PGHOSTADDR", "PGSERVICE"];

/// `pgsecrets psql`.
#[derive(clap::Args, Debug)]
pub struct PsqlArgs {
    /// Which credentials: CLUSTER/DB/ROLE.
    pub target: String,
    /// Where the database engine is mounted.
    #[arg(long, default_value = "database")]
    pub mount: String,
    /// Arguments for psql, after `--` (e.g. -- -c 'select 1').
    #[arg(last = true)]
    pub psql_args: Vec<String>,
}

/// Runs psql; returns its exit code (128 + signal when a signal ended it).
pub async fn run(args: PsqlArgs) -> Result<i32, Error> {
    let path = creds_path(&args.mount, &args.target)?;
    let client = Client::from_env()?;
    let issued = issue(&client, &path).await?;
    let lease_id = issued.answer.lease_id.clone();
    eprintln!("{} (revoked when psql exits)", lease_line(&issued.answer));

    let status = run_psql(&args.psql_args, &issued.env).await;
    let revoked = client.lease_revoke(&lease_id).await;
    let code = match status {
        Ok(status) => exit_code(status),
        Err(e) => {
            if let Err(revoke) = &revoked {
                eprintln!(
                    "error: lease {lease_id} was not revoked (it still expires): {}",
                    crate::client::one_line(&revoke.to_string())
                );
            }
            return Err(e);
        }
    };
    match revoked {
        Ok(()) => Ok(code),
        // psql's own failure is the more useful code; a clean psql run
        // whose lease stayed gets the revocation's error and code.
        Err(e) if code == 0 => Err(Error::Client(e)),
        Err(e) => {
            eprintln!(
                "error: lease {lease_id} was not revoked (it still expires): {}",
                crate::client::one_line(&e.to_string())
            );
            Ok(code)
        }
    }
}

async fn run_psql(args: &[String], env: &[(&'static str, String)]) -> Result<ExitStatus, Error> {
    let spawn_error = |source| Error::Spawn {
        program: PSQL.into(),
        source,
    };
    // Handlers first, so a signal between spawn and wait cannot kill us
    // before the lease is revoked.
    let mut interrupt = signal(SignalKind::interrupt()).map_err(spawn_error)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(spawn_error)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(spawn_error)?;
    let mut command = tokio::process::Command::new(PSQL);
    command
        .args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    for var in OVERRIDING_VARS {
        command.env_remove(var);
    }
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut child = command.spawn().map_err(spawn_error)?;
    loop {
        tokio::select! {
            status = child.wait() => return status.map_err(spawn_error),
            _ = interrupt.recv() => {}
            _ = terminate.recv() => { let _ = child.start_kill(); }
            _ = hangup.recv() => { let _ = child.start_kill(); }
        }
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}
