//! Command-line interface: the dispatcher.
//!
//! Server subcommands: `server`, `operator init`, `gen-docs`; the sidecar:
//! `agent`; benchmarks: `bench`. Client
//! subcommands, in the `vault` CLI's manner, talking HTTP through
//! [`crate::client`] to the server named by `PGSECRETS_ADDR`/`VAULT_ADDR`:
//! `read`, `write`, `list`, `delete`, `lease`, `token`, `policy`, and two
//! conveniences, `creds` and `psql`.
//!
//! Vault's own single-dash long flags (`-dev`, `-dev-root-token-id=x`,
//! `-format=json`) are accepted too, so `vault`-style command lines work.
//! Exit codes (not Vault's): 0 success, 1 local error (usage, bad input, no
//! server), 2 the server answered with an error ([`error`]).

pub mod agent;
pub mod bench;
pub mod creds;
pub mod dev;
pub mod docs;
pub mod error;
pub mod generic;
pub mod kv_args;
pub mod lease;
pub mod operator;
pub mod output;
pub mod policy;
pub mod psql;
pub mod server;
pub mod token;

pub use error::Error;

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
    /// Keep an application's database credentials fresh in files (sidecar).
    Agent(agent::AgentArgs),
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
    /// Read a path (GET); key=value pairs are sent as query parameters.
    Read(generic::ReadArgs),
    /// Write to a path (PUT) with key=value pairs as its JSON body.
    Write(generic::WriteArgs),
    /// List the keys under a path.
    List(generic::ListArgs),
    /// Delete a path.
    Delete(generic::DeleteArgs),
    /// Renew, revoke or look up leases.
    Lease {
        #[command(subcommand)]
        command: lease::LeaseCommand,
    },
    /// Create or look up tokens.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Write, read, list or delete ACL policies.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Get a fresh PostgreSQL user: export-able PG* lines, JSON, or a URL.
    Creds(creds::CredsArgs),
    /// Run psql as a fresh PostgreSQL user, revoked when psql exits.
    Psql(psql::PsqlArgs),
    /// Benchmarks against the raw-SQL floor (starts its own PostgreSQL and
    /// pgsecrets servers); see the README.
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
    /// OpenBao's bao binary for `--scenario peer` (default:
    /// .venv-compat/bin/bao of the source tree or the current directory,
    /// else bao on PATH; none: the scenario is skipped).
    #[arg(long)]
    pub openbao: Option<PathBuf>,
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
    /// Do not start the dev server's throwaway PostgreSQL.
    #[arg(long, requires = "dev")]
    pub dev_no_postgres: bool,
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

/// Rewrites Vault-style `-long-flag` arguments to `--long-flag`, up to a
/// bare `--` (what follows it, e.g. psql's own `-tAc`, is left alone).
pub fn vault_style_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut after_separator = false;
    args.into_iter()
        .map(|a| {
            if after_separator {
                return a;
            }
            if a == "--" {
                after_separator = true;
                return a;
            }
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

/// Parses the process arguments (Vault-style flags included). Help and
/// version are printed here (`Err(0)`); a usage error is printed as one line
/// (`Err(1)`).
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Cli, i32> {
    use clap::error::ErrorKind;
    let typed: Vec<String> = args.into_iter().collect();
    let args = vault_style_args(typed.iter().cloned());
    let args_count = args.len();
    match Cli::try_parse_from(&args) {
        Ok(cli) => Ok(cli),
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                let _ = e.print();
                Err(0)
            }
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand if args_count <= 1 => {
                let _ = e.print();
                Err(error::EXIT_LOCAL)
            }
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                eprintln!("error: a subcommand is missing (see --help)");
                Err(error::EXIT_LOCAL)
            }
            _ => {
                eprintln!("{} (see --help)", usage_line(e, &typed, &args));
                Err(error::EXIT_LOCAL)
            }
        },
    }
}

/// A usage error on one line: clap's first paragraph, whose later lines
/// name what is wrong (the missing arguments), joined onto the first, with
/// a flag the user typed Vault-style (`-bogus`) shown as typed rather than
/// as the `--bogus` it was rewritten to.
fn usage_line(mut e: clap::Error, typed: &[String], rewritten: &[String]) -> String {
    use clap::error::{ContextKind, ContextValue};
    if let Some(ContextValue::String(flag)) = e.get(ContextKind::InvalidArg) {
        let as_typed = typed
            .iter()
            .zip(rewritten)
            .filter(|(t, r)| t != r)
            .map(|(t, _)| t.split('=').next().unwrap_or(t))
            .find(|t| flag.strip_prefix('-') == Some(*t))
            .map(str::to_string);
        if let Some(as_typed) = as_typed {
            e.insert(ContextKind::InvalidArg, ContextValue::String(as_typed));
        }
    }
    let rendered = e.render().to_string();
    let mut lines = rendered
        .trim_start()
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty());
    let Some(first) = lines.next() else {
        return "error: invalid arguments".into();
    };
    let items: Vec<&str> = lines.collect();
    if items.is_empty() {
        first.to_string()
    } else {
        format!("{first} {}", items.join(", "))
    }
}

/// A duration flag (`30m`, `1h`, `3600`, `2d`) in whole seconds.
pub fn duration_seconds(text: &str) -> Result<u64, String> {
    let seconds = crate::logical::duration::parse_seconds(text.trim())?;
    if seconds < 0.0 {
        return Err("a duration cannot be negative".into());
    }
    Ok(seconds.trunc() as u64)
}

/// Sets up `tracing` output.
///
/// Whatever `PGSECRETS_LOG` asks for, tokio-postgres's debug and trace
/// events are never written: they carry the statements pgsecrets sends,
/// and those hold SCRAM verifiers of root, management and issued users
/// (`ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...'`), from which a password
/// can be attacked offline.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGSECRETS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in files and journals.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = match format {
        LogFormat::Human => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(
            fmt.with_filter(filter)
                .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                    !carries_statements(meta)
                })),
        )
        .try_init();
}

/// Events that may quote SQL sent to PostgreSQL (with passwords' verifiers).
fn carries_statements(meta: &tracing::Metadata<'_>) -> bool {
    let target = meta.target();
    (target == "tokio_postgres" || target.starts_with("tokio_postgres::"))
        && *meta.level() > tracing::Level::INFO
}

/// Runs a parsed command; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    match dispatch(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", e.one_line());
            e.exit_code()
        }
    }
}

/// Runs one command; `Ok` holds the exit code (psql's own, for `psql`).
async fn dispatch(command: Command) -> Result<i32, Error> {
    match command {
        Command::Server(args) => server::run(args).await?,
        Command::Agent(args) => agent::run(args).await?,
        Command::Bench(args) => bench::run(args).await?,
        Command::Operator {
            command: OperatorCommand::Init { config },
        } => operator::init(&config).await?,
        Command::GenDocs { out } => docs::write(&out).await?,
        Command::Read(args) => generic::read(args).await?,
        Command::Write(args) => generic::write(args).await?,
        Command::List(args) => generic::list(args).await?,
        Command::Delete(args) => generic::delete(args).await?,
        Command::Lease { command } => lease::run(command).await?,
        Command::Token { command } => token::run(command).await?,
        Command::Policy { command } => policy::run(command).await?,
        Command::Creds(args) => creds::run(args).await?,
        Command::Psql(args) => return psql::run(args).await,
    }
    Ok(0)
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

    fn parse_args(args: &[&str]) -> Command {
        let args = vault_style_args(args.iter().map(|a| a.to_string()));
        Cli::try_parse_from(args).unwrap().command
    }

    #[test]
    fn client_flags_parse_vault_style_and_psql_arguments_stay_untouched() {
        let Command::Read(r) =
            parse_args(&["pgsecrets", "read", "-format=json", "sys/mounts", "a=1"])
        else {
            panic!()
        };
        assert_eq!(r.output.format, output::Format::Json);
        assert_eq!(r.data, vec!["a=1"]);
        let Command::Psql(p) = parse_args(&[
            "pgsecrets",
            "psql",
            "main/shop/app",
            "--",
            "-tAc",
            "select 1",
        ]) else {
            panic!()
        };
        assert_eq!(p.psql_args, vec!["-tAc", "select 1"]);
        let Command::Token {
            command: token::TokenCommand::Create(c),
        } = parse_args(&[
            "pgsecrets",
            "token",
            "create",
            "-policy=a,b",
            "-policy=c",
            "-ttl=1h",
        ])
        else {
            panic!()
        };
        assert_eq!(c.policies, vec!["a", "b", "c"]);
        assert_eq!(c.ttl, Some(3600));
    }

    #[test]
    fn bad_durations_are_usage_errors() {
        let args = vault_style_args(
            ["pgsecrets", "lease", "renew", "-increment=soon", "x"].map(String::from),
        );
        assert!(Cli::try_parse_from(args).is_err());
        assert_eq!(duration_seconds("90s"), Ok(90));
        assert!(duration_seconds("-5s").is_err());
    }
}
