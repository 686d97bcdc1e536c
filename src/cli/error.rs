//! Why a subcommand failed, and the exit code each reason gets.
//!
//! Exit codes, as documented in the README: 0 success; 1 a local error
//! (usage, bad input, missing `VAULT_ADDR`, unreachable server, TLS, a
//! server that cannot start); 2 the server answered with an error (any
//! non-2xx status).

use crate::client;
use crate::server::StartError;

/// Exit code for local errors.
pub const EXIT_LOCAL: i32 = 1;
/// Exit code for errors the server answered with.
pub const EXIT_SERVER: i32 = 2;

/// A subcommand's failure; `Display` is the one line printed after `error: `.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Talking to the server failed or the server refused.
    #[error(transparent)]
    Client(#[from] client::Error),
    /// Nothing at the path read or listed (a 404 with no message).
    #[error("no value found at {path}")]
    NotFound { path: String },
    /// Bad command-line input the parser could not catch (`key=value`,
    /// durations, unreadable files, ...).
    #[error("{0}")]
    Input(String),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
    /// `psql` could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// The server subcommands' errors.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The agent could not start (bad configuration, no token file, ...).
    #[error(transparent)]
    Agent(#[from] crate::agent::Error),
    /// A benchmark could not run.
    #[error(transparent)]
    Bench(#[from] crate::bench::Error),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Client(e) if e.is_server() => EXIT_SERVER,
            Error::NotFound { .. } => EXIT_SERVER,
            Error::Client(_)
            | Error::Input(_)
            | Error::Output(_)
            | Error::Spawn { .. }
            | Error::Start(_)
            | Error::Agent(_)
            | Error::Bench(_) => EXIT_LOCAL,
        }
    }

    /// The message on one line (server messages may span several).
    pub fn one_line(&self) -> String {
        client::one_line(&self.to_string())
    }
}

/// Maps a read or list 404 without a message to [`Error::NotFound`].
pub fn not_found_at(path: &str) -> impl FnOnce(client::Error) -> Error + '_ {
    move |e| match &e {
        client::Error::Server {
            status: 404,
            errors,
            ..
        } if errors.iter().all(|m| m.trim().is_empty()) => Error::NotFound {
            path: path.to_string(),
        },
        _ => Error::Client(e),
    }
}
