//! `pgsecrets lease renew|revoke|lookup ID`, as `vault lease ...`.

use clap::Subcommand;

use crate::client::Client;

use super::output::{self, FormatArg, OutputArgs};
use super::{duration_seconds, Error};

#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Renew a lease: its new TTL counts from now (capped by the role's max_ttl).
    Renew {
        /// The lease id (printed as lease_id when the credential was issued).
        id: String,
        /// Requested TTL, e.g. 30m or 3600 (default: the role's default TTL).
        #[arg(long, value_parser = duration_seconds)]
        increment: Option<u64>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Revoke a lease now: its database user is dropped before this returns.
    Revoke {
        id: String,
        #[command(flatten)]
        output: FormatArg,
    },
    /// Show a lease's issue time, expiry, TTL and whether it is renewable.
    Lookup {
        id: String,
        #[command(flatten)]
        output: OutputArgs,
    },
}

pub async fn run(command: LeaseCommand) -> Result<(), Error> {
    let client = Client::from_env()?;
    match command {
        LeaseCommand::Renew {
            id,
            increment,
            output,
        } => {
            let answer = client.lease_renew(&id, increment).await?;
            output::envelope(&output, &answer)
        }
        LeaseCommand::Revoke { id, output } => {
            client.lease_revoke(&id).await?;
            output::success(output.format, &format!("Success! Revoked lease: {id}"))
        }
        LeaseCommand::Lookup { id, output } => {
            let answer = client.lease_lookup(&id).await?;
            output::envelope(&output, &answer)
        }
    }
}
