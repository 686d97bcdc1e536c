//! What can go wrong talking to a Vault-compatible server.
//!
//! Two families, told apart by [`Error::is_server`]: local errors (the
//! request never got a usable answer: bad input, no address, no server,
//! TLS) and server errors (the server answered, with a non-2xx status and
//! its `errors` array, or with a body that is not JSON).

use std::path::PathBuf;
use std::time::Duration;

/// An error from [`crate::client::Client`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither `PGSECRETS_ADDR` nor `VAULT_ADDR` is set.
    #[error("VAULT_ADDR is not set: export VAULT_ADDR=http://127.0.0.1:8200 (or PGSECRETS_ADDR)")]
    MissingAddress,
    /// The address is not an `http://` or `https://` URL.
    #[error("invalid server address {address:?}: {reason}")]
    InvalidAddress { address: String, reason: String },
    /// A request path the client refuses to send.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    /// `VAULT_CACERT` names a file that cannot be read or holds no certificate.
    #[error("VAULT_CACERT {}: {reason}", path.display())]
    CaCert { path: PathBuf, reason: String },
    /// The HTTP client could not be built (e.g. a certificate it rejects).
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    /// The TLS handshake failed (untrusted certificate, plain HTTP server, ...).
    #[error("TLS error talking to {address}: {reason}")]
    Tls { address: String, reason: String },
    /// No answer: connection refused, DNS failure, timeout, connection reset.
    #[error("cannot reach {address}: {reason}")]
    Unreachable { address: String, reason: String },
    /// The server answered with a non-2xx status.
    #[error("{}", server_message(method, path, *status, errors))]
    Server {
        method: String,
        /// The URL path, e.g. `/v1/sys/leases/renew`.
        path: String,
        status: u16,
        /// The response's `errors` array (or its text when it was not JSON).
        errors: Vec<String>,
        /// The answer's `Retry-After`: the server says the condition is
        /// temporary, whatever the status. pgsecrets sends it with a lease
        /// renewal's or revocation's 400 while PostgreSQL is unavailable.
        /// Whole seconds; an HTTP-date (pgsecrets never sends one) reads as 0.
        retry_after: Option<Duration>,
    },
    /// A 2xx answer whose body is not the JSON the client expects.
    #[error("{method} {path}: the server answered {status} with a body that is not a JSON object: {reason}")]
    BadResponse {
        method: String,
        path: String,
        status: u16,
        reason: String,
    },
}

impl Error {
    /// Whether the server answered (non-2xx, or a broken body); `false` for
    /// local errors where no usable answer came back.
    pub fn is_server(&self) -> bool {
        match self {
            Error::Server { .. } | Error::BadResponse { .. } => true,
            Error::MissingAddress
            | Error::InvalidAddress { .. }
            | Error::InvalidPath { .. }
            | Error::CaCert { .. }
            | Error::Setup(_)
            | Error::Tls { .. }
            | Error::Unreachable { .. } => false,
        }
    }

    /// The HTTP status of a server error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Server { status, .. } | Error::BadResponse { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A 404: no value, no list entries, or no such route.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// A 403: the token's policy does not allow the call, or the token is
    /// unknown or revoked.
    pub fn is_permission_denied(&self) -> bool {
        self.status() == Some(403)
    }

    /// How long the server asked to wait before trying again, when it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The server refused the request as sent, for good: a 400 without
    /// `Retry-After`, so sending it again cannot succeed. For a lease
    /// renewal: the lease is unknown, expired, not renewable or past its
    /// max TTL. Vault answers 400 for those and for a storage outage
    /// alike; pgsecrets tells the outage apart with `Retry-After`.
    pub fn is_refused(&self) -> bool {
        self.status() == Some(400) && self.retry_after().is_none()
    }
}

fn server_message(method: &str, path: &str, status: u16, errors: &[String]) -> String {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut out = format!("{method} {path}: {status} {reason}")
        .trim_end()
        .to_string();
    let messages: Vec<String> = errors
        .iter()
        .map(|e| one_line(e))
        .filter(|e| !e.is_empty())
        .collect();
    if !messages.is_empty() {
        out.push_str(": ");
        out.push_str(&messages.join("; "));
    }
    out
}

/// Flattens a message to one line. Vault wraps some messages as
/// `1 error occurred:\n\t* <msg>\n\n`; only the items are kept.
pub fn one_line(message: &str) -> String {
    let trimmed = message.trim();
    let first = trimmed.lines().next().unwrap_or("");
    let is_wrapped = first.ends_with("occurred:")
        && first
            .split_whitespace()
            .next()
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()));
    let text = if is_wrapped {
        trimmed
            .lines()
            .skip(1)
            .filter_map(|l| l.trim().strip_prefix("* "))
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        trimmed.to_string()
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_wrapped_messages_become_one_line() {
        assert_eq!(
            one_line("1 error occurred:\n\t* permission denied\n\n"),
            "permission denied"
        );
        assert_eq!(one_line("2 errors occurred:\n\t* a\n\t* b\n\n"), "a; b");
        assert_eq!(one_line("unknown role: x"), "unknown role: x");
        assert_eq!(one_line("line one\nline two"), "line one line two");
    }

    #[test]
    fn server_errors_name_the_request_status_and_messages() {
        let e = Error::Server {
            method: "GET".into(),
            path: "/v1/database/creds/a/b/c".into(),
            status: 403,
            errors: vec!["1 error occurred:\n\t* permission denied\n\n".into()],
            retry_after: None,
        };
        assert_eq!(
            e.to_string(),
            "GET /v1/database/creds/a/b/c: 403 Forbidden: permission denied"
        );
        assert!(e.is_server());
        let e = Error::Server {
            method: "GET".into(),
            path: "/v1/x".into(),
            status: 404,
            errors: vec![],
            retry_after: None,
        };
        assert_eq!(e.to_string(), "GET /v1/x: 404 Not Found");
        assert!(e.is_not_found());
        assert!(!Error::MissingAddress.is_server());
        assert!(!e.is_refused());
    }

    #[test]
    fn only_a_400_without_retry_after_is_a_refusal() {
        let answer = |status, retry_after| Error::Server {
            method: "PUT".into(),
            path: "/v1/sys/leases/renew".into(),
            status,
            errors: vec![],
            retry_after,
        };
        assert!(answer(400, None).is_refused());
        let outage = answer(400, Some(Duration::from_secs(5)));
        assert!(!outage.is_refused(), "a 400 with Retry-After is temporary");
        assert_eq!(outage.retry_after(), Some(Duration::from_secs(5)));
        assert!(!answer(403, None).is_refused());
        assert!(!answer(503, None).is_refused());
        assert!(answer(403, None).is_permission_denied());
        let unreachable = Error::Unreachable {
            address: "http://127.0.0.1:1".into(),
            reason: "connection refused".into(),
        };
        assert!(!unreachable.is_refused() && !unreachable.is_permission_denied());
    }
}
