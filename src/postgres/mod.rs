//! PostgreSQL access: connection targets, TLS, pools, SCRAM verifiers,
//! error classification and splitting SQL scripts into statements. Knows
//! nothing of clusters or leases.

mod auth_guard;
pub mod connect;
pub mod launcher;
pub mod scram;
mod socket;
pub mod statements;
pub mod tls;

pub use connect::{ChannelBinding, SslMode, Target};
pub use socket::same_address;
pub use tls::ClientIdentity;

use tokio_postgres::error::SqlState;

/// What went wrong talking to PostgreSQL, classified by cause (never by
/// message text).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach PostgreSQL at {host}:{port}: {reason}")]
    Unreachable {
        host: String,
        port: u16,
        reason: String,
    },
    #[error("timed out connecting to PostgreSQL at {host}:{port}")]
    Timeout { host: String, port: u16 },
    /// The server refused the login: a wrong password, but also a
    /// `pg_hba.conf` that refuses it or wants a client certificate;
    /// `reason` is the server's own message.
    #[error("PostgreSQL rejected the credentials of user {user:?}: {reason}")]
    AuthFailed { user: String, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
    /// The server answered the TLS request with no: it runs with `ssl = off`.
    #[error("PostgreSQL at {host}:{port} does not accept TLS, which ssl_mode={ssl_mode} requires: set ssl_mode=disable for a server without TLS, or turn on ssl in its postgresql.conf")]
    NoTls {
        host: String,
        port: u16,
        ssl_mode: &'static str,
    },
    #[error("the TLS certificate of PostgreSQL at {host}:{port} was refused: {reason}")]
    Certificate {
        host: String,
        port: u16,
        reason: String,
    },
    #[error("the TLS handshake with PostgreSQL at {host}:{port} failed: {reason}")]
    Handshake {
        host: String,
        port: u16,
        reason: String,
    },
    /// The server asked for a password in a form it could replay, over a
    /// channel that did not verify who it is; nothing was sent.
    #[error("PostgreSQL at {host}:{port}: {reason}")]
    InsecureAuth {
        host: String,
        port: u16,
        reason: String,
    },
    #[error("PostgreSQL error {code}: {message}")]
    Sql { code: String, message: String },
    #[error("no free connection to the cluster within {seconds}s")]
    PoolTimeout { seconds: u64 },
    #[error("connection lost: {0}")]
    Connection(String),
}

impl Error {
    /// Classifies a tokio-postgres error met while talking to `target`.
    pub fn from_pg(error: tokio_postgres::Error, target: &Target) -> Error {
        if let Some(db) = error.as_db_error() {
            let code = db.code();
            if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            {
                return Error::AuthFailed {
                    user: target.user.clone(),
                    reason: db.message().to_string(),
                };
            }
            return Error::Sql {
                code: code.code().to_string(),
                message: db.message().to_string(),
            };
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> =
            std::error::Error::source(&error);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                // An io error's `source` skips the error it wraps, so the
                // wrapped one is looked at here.
                let inner = io.get_ref();
                if let Some(refused) =
                    inner.and_then(|e| e.downcast_ref::<auth_guard::InsecureAuthRequest>())
                {
                    return Error::InsecureAuth {
                        host: target.host.clone(),
                        port: target.port,
                        reason: refused.to_string(),
                    };
                }
                if inner.is_some_and(|e| e.is::<tls::TlsRefused>()) {
                    return Error::NoTls {
                        host: target.host.clone(),
                        port: target.port,
                        ssl_mode: target.ssl_mode.as_str(),
                    };
                }
                if let Some(tls) = inner.and_then(|e| e.downcast_ref::<rustls::Error>()) {
                    return Error::from_rustls(tls, target);
                }
                return Error::Unreachable {
                    host: target.host.clone(),
                    port: target.port,
                    reason: io.to_string(),
                };
            }
            if let Some(tls) = s.downcast_ref::<rustls::Error>() {
                return Error::from_rustls(tls, target);
            }
            source = s.source();
        }
        if error.is_closed() {
            return Error::Connection(error.to_string());
        }
        Error::Connection(error.to_string())
    }

    /// Classifies a failed TLS handshake with `target`.
    fn from_rustls(error: &rustls::Error, target: &Target) -> Error {
        match error {
            rustls::Error::InvalidCertificate(certificate) => Error::Certificate {
                host: target.host.clone(),
                port: target.port,
                reason: tls::certificate_reason(
                    certificate,
                    &target.host,
                    target.ssl_root_cert.is_some(),
                ),
            },
            other => Error::Handshake {
                host: target.host.clone(),
                port: target.port,
                reason: other.to_string(),
            },
        }
    }

    /// The SQLSTATE of a database error.
    pub fn sql_state(&self) -> Option<&str> {
        match self {
            Error::Sql { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Quotes an SQL identifier (`"name"`), doubling embedded quotes.
pub fn ident(name: &str) -> String {
    postgres_protocol::escape::escape_identifier(name)
}

/// Quotes an SQL string literal.
pub fn literal(value: &str) -> String {
    postgres_protocol::escape::escape_literal(value)
}
