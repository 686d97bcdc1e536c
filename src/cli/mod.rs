//! Command-line interface: `server`, `operator init`, `gen-docs`, `bench`.
//!
//! Vault's own single-dash long flags (`-dev`, `-dev-root-token-id=x`) are
//! accepted too, so scripts written for `vault server -dev` work unchanged.

pub mod bench;
pub mod docs;
pub mod operator;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::LogFormat;

#[derive(Parser, Debug)]
#[command(
    name = "pgsecrets",
    version,
    about = "Vault-compatible server issuing short-lived PostgreSQL credentials"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Server(ServerArgs),
    /// Operator tasks.
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// Regenerate the API reference in routes/ from the route tables.
    GenDocs {
        /// Output directory.
        #[arg(long, default_value = "routes")]
        out: PathBuf,
    },
    /// Benchmarks against the raw-SQL floor (starts its own PostgreSQL and
    /// pgsecrets servers); see benches/RESULTS.md.
    Bench(BenchArgs),
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Tiny versions of every scenario (seconds): checks the harness, not speed.
    #[arg(long)]
    pub quick: bool,
    /// Run only this scenario (repeatable); default: all.
    #[arg(long, value_enum)]
    pub scenario: Vec<crate::bench::Scenario>,
    /// Leases written in the scale scenario (default 1000000; --quick 2000).
    #[arg(long)]
    pub leases: Option<usize>,
    /// Directory of PostgreSQL's initdb, pg_ctl and postgres (default:
    /// PGSECRETS_PG_BIN, else the newest /usr/lib/postgresql/<major>/bin, else pg_config).
    #[arg(long)]
    pub pg_bin: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Zero-setup development server: in-memory storage, root token printed.
    #[arg(long)]
    pub dev: bool,
    /// Address of the dev server.
    #[arg(long, default_value = "127.0.0.1:8200", requires = "dev")]
    pub dev_listen_address: SocketAddr,
    /// Root token of the dev server (default: random).
    #[arg(long, env = "VAULT_DEV_ROOT_TOKEN_ID", requires = "dev")]
    pub dev_root_token_id: Option<String>,
    /// Configuration file (TOML); see config/pgsecrets.toml.
    #[arg(long, required_unless_present = "dev", conflicts_with = "dev")]
    pub config: Option<PathBuf>,
    /// Log format; overrides the config file.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Subcommand, Debug)]
pub enum OperatorCommand {
    /// Create the storage and its unseal key; prints the root token once.
    Init {
        #[arg(long)]
        config: PathBuf,
    },
}

/// Rewrites Vault-style `-long-flag` arguments to `--long-flag`.
pub fn vault_style_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .map(|a| {
            let is_single_dash_long = a.starts_with('-')
                && !a.starts_with("--")
                && a.len() > 2
                && a.as_bytes()[1].is_ascii_alphabetic();
            if is_single_dash_long {
                format!("-{a}")
            } else {
                a
            }
        })
        .collect()
}

/// Sets up `tracing` output.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGSECRETS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs a parsed command; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Server(args) => server::run(args).await.map_err(Into::into),
        Command::Operator {
            command: OperatorCommand::Init { config },
        } => operator::init(&config).await.map_err(Into::into),
        Command::GenDocs { out } => docs::write(&out).await.map_err(Into::into),
        Command::Bench(args) => bench::run(args).await.map_err(Into::into),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_flags_parse() {
        let args = vault_style_args(
            [
                "pgsecrets",
                "server",
                "-dev",
                "-dev-root-token-id=abc",
                "-dev-listen-address",
                "127.0.0.1:9",
            ]
            .map(String::from),
        );
        let cli = Cli::try_parse_from(args).unwrap();
        let Command::Server(s) = cli.command else {
            panic!()
        };
        assert!(s.dev);
        assert_eq!(s.dev_root_token_id.as_deref(), Some("abc"));
        assert_eq!(s.dev_listen_address.port(), 9);
    }
}
