//! The agent's three calls to the server, over HTTP(S) with `reqwest`:
//! read a credential, renew its lease, revoke it.
//!
//! This is the only file of the agent that speaks HTTP. It knows the Vault
//! envelope (`lease_id`, `lease_duration`, `renewable`, `warnings`, `data`,
//! `errors`) and nothing about schedules or sinks; the token is passed in by
//! the caller on every call, so a changed token file takes effect at once.

use std::time::Duration;

use reqwest::{Client, Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{json, Value};

/// A lease as the server last described it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub id: String,
    /// The TTL from the moment of the answer (whole seconds on the wire).
    pub duration: Duration,
    pub renewable: bool,
    pub warnings: Vec<String>,
}

/// The `data` of `GET <mount>/creds/<cluster>/<database>/<role>`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub connection_url: String,
}

/// A freshly issued credential and its lease.
#[derive(Debug, Clone)]
pub struct Issued {
    pub lease: Lease,
    pub credentials: Credentials,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No answer: connection refused, timeout, TLS failure.
    #[error("server unreachable: {0}")]
    Unreachable(String),
    /// An answer other than success, with the server's `errors`.
    #[error("server answered {status}: {message}")]
    Status {
        status: StatusCode,
        message: String,
        /// The answer carried `Retry-After`: the condition is temporary
        /// (pgsecrets sends it with a renewal's 400 while PostgreSQL is
        /// away), whatever the status says.
        retry_after: bool,
    },
    /// A success answer without the fields every Vault server sends.
    #[error("unexpected answer from the server: {0}")]
    Malformed(String),
    #[error("HTTP client: {0}")]
    Setup(String),
}

impl Error {
    /// The server refused this lease for good (unknown, expired, not
    /// renewable, past its max TTL): retrying the same call cannot help.
    pub fn is_lease_refused(&self) -> bool {
        matches!(self, Error::Status { status, retry_after: false, .. } if *status == StatusCode::BAD_REQUEST)
    }

    /// The token may not make this call (its policy, or it is revoked).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Error::Status { status, .. } if *status == StatusCode::FORBIDDEN)
    }
}

/// A client for one server address.
#[derive(Debug, Clone)]
pub struct Api {
    http: Client,
    address: Url,
}

#[derive(Deserialize)]
struct Envelope {
    lease_id: String,
    lease_duration: u64,
    renewable: bool,
    #[serde(default)]
    warnings: Option<Vec<String>>,
    #[serde(default)]
    data: Option<Value>,
}

impl Envelope {
    fn lease(&self) -> Lease {
        Lease {
            id: self.lease_id.clone(),
            duration: Duration::from_secs(self.lease_duration),
            renewable: self.renewable,
            warnings: self.warnings.clone().unwrap_or_default(),
        }
    }
}

impl Api {
    /// `ca_pem`, when given, is the only trust anchor for `https` (as
    /// `VAULT_CACERT` is for Vault's clients).
    pub fn new(address: Url, ca_pem: Option<&[u8]>) -> Result<Api, Error> {
        let mut builder = Client::builder()
            .user_agent(concat!("pgsecrets-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        if let Some(pem) = ca_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Setup(format!("ca_cert: {}", one_line(&e))))?;
            builder = builder.tls_built_in_root_certs(false);
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|e| Error::Setup(one_line(&e)))?;
        Ok(Api { http, address })
    }

    /// `GET /v1/<mount>/creds/<path>`.
    pub async fn read_credentials(
        &self,
        token: &str,
        mount: &str,
        path: &str,
    ) -> Result<Issued, Error> {
        let envelope = self
            .call(Method::GET, &format!("{mount}/creds/{path}"), token, None)
            .await?
            .ok_or_else(|| Error::Malformed("no body".into()))?;
        let data = envelope
            .data
            .clone()
            .ok_or_else(|| Error::Malformed("no data".into()))?;
        let credentials: Credentials =
            serde_json::from_value(data).map_err(|e| Error::Malformed(e.to_string()))?;
        if envelope.lease_id.is_empty() {
            return Err(Error::Malformed("the credentials carry no lease".into()));
        }
        Ok(Issued {
            lease: envelope.lease(),
            credentials,
        })
    }

    /// `PUT /v1/sys/leases/renew`, asking for `increment` from now.
    pub async fn renew(
        &self,
        token: &str,
        lease_id: &str,
        increment: Duration,
    ) -> Result<Lease, Error> {
        let body = json!({"lease_id": lease_id, "increment": increment.as_secs()});
        let envelope = self
            .call(Method::PUT, "sys/leases/renew", token, Some(body))
            .await?
            .ok_or_else(|| Error::Malformed("no body".into()))?;
        Ok(envelope.lease())
    }

    /// `PUT /v1/sys/leases/revoke`: the server drops the user before answering.
    pub async fn revoke(&self, token: &str, lease_id: &str) -> Result<(), Error> {
        let body = json!({"lease_id": lease_id});
        self.call(Method::PUT, "sys/leases/revoke", token, Some(body))
            .await
            .map(|_| ())
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<Option<Envelope>, Error> {
        let url = self
            .address
            .join(&format!("v1/{path}"))
            .map_err(|e| Error::Setup(e.to_string()))?;
        let mut request = self
            .http
            .request(method, url)
            .header("X-Vault-Token", token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Error::Unreachable(one_line(&e)))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .contains_key(reqwest::header::RETRY_AFTER);
        let text = response
            .text()
            .await
            .map_err(|e| Error::Unreachable(one_line(&e)))?;
        if !status.is_success() {
            return Err(Error::Status {
                status,
                message: error_message(&text),
                retry_after,
            });
        }
        if status == StatusCode::NO_CONTENT || text.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Malformed(e.to_string()))
    }
}

/// `{"errors": [...]}` joined, or the body itself when it is something else.
fn error_message(body: &str) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<String>,
    }
    match serde_json::from_str::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => e.errors.join("; "),
        Ok(_) => "no error message".into(),
        Err(_) => body.chars().take(200).collect(),
    }
}

/// An error and its causes on one line ("error sending request: connection refused").
fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_one_message() {
        assert_eq!(
            error_message(r#"{"errors":["lease not found"]}"#),
            "lease not found"
        );
        assert_eq!(error_message(r#"{"errors":["a","b"]}"#), "a; b");
        assert_eq!(error_message("Bad Gateway"), "Bad Gateway");
    }

    #[test]
    fn only_a_400_means_the_lease_is_refused() {
        let status = |code| Error::Status {
            status: StatusCode::from_u16(code).unwrap(),
            message: String::new(),
            retry_after: false,
        };
        assert!(status(400).is_lease_refused());
        let temporary = Error::Status {
            status: StatusCode::BAD_REQUEST,
            message: String::new(),
            retry_after: true,
        };
        assert!(
            !temporary.is_lease_refused(),
            "a 400 with Retry-After is not final"
        );
        assert!(!status(403).is_lease_refused());
        assert!(!status(503).is_lease_refused());
        assert!(!Error::Unreachable("x".into()).is_lease_refused());
        assert!(status(403).is_permission_denied());
    }
}
