//! The agent's three calls to the server: read a credential, renew its
//! lease, revoke it, made with [`crate::client::Client`] (which owns the
//! HTTP, TLS, envelope and error messages).
//!
//! What this file adds is the agent's view of the answers: a [`Lease`] for
//! the schedule and [`Credentials`] for the sinks, checked to be there. The
//! token is passed in by the caller on every call, so a changed token file
//! takes effect at once.

use std::time::Duration;

use serde::Deserialize;

use super::Config;
use crate::client::{Client, Envelope, Error, Settings};

/// Limit on one call: a server that accepted the connection but hangs is
/// retried like one that is away, without holding up renewals for long.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A lease as the server last described it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub id: String,
    /// The TTL from the moment of the answer (whole seconds on the wire).
    pub duration: Duration,
    pub renewable: bool,
    pub warnings: Vec<String>,
}

impl Lease {
    fn of(envelope: &Envelope) -> Lease {
        Lease {
            id: envelope.lease_id.clone(),
            duration: Duration::from_secs(envelope.lease_duration),
            renewable: envelope.renewable,
            warnings: envelope.warnings().to_vec(),
        }
    }
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

/// The agent's client for `config`'s server, without a token (each call
/// takes the token file's current one). Reads `ca_cert` now, so a bad one
/// stops the agent before it starts.
pub fn client(config: &Config) -> Result<Client, super::Error> {
    let mut settings = Settings::new(config.address.as_str());
    settings.ca_cert = config.ca_cert.clone();
    settings.timeout = TIMEOUT;
    Client::new(settings).map_err(|e| match e {
        // The client's message names VAULT_CACERT, one of three sources here.
        Error::CaCert { path, reason } => super::Error::CaCert { path, reason },
        other => super::Error::Client(other),
    })
}

/// `GET /v1/<mount>/creds/<path>`.
pub async fn read_credentials(
    client: &Client,
    token: &str,
    mount: &str,
    path: &str,
) -> Result<Issued, Error> {
    let path = format!("{mount}/creds/{path}");
    let envelope = client.with_token(token).read(&path).await?;
    let malformed = |reason: String| Error::BadResponse {
        method: "GET".into(),
        path: format!("/v1/{path}"),
        status: 200,
        reason,
    };
    let data = envelope
        .data
        .clone()
        .ok_or_else(|| malformed("no data".into()))?;
    let credentials: Credentials = serde_json::from_value(serde_json::Value::Object(data))
        .map_err(|e| malformed(e.to_string()))?;
    if envelope.lease_id.is_empty() {
        return Err(malformed("the credentials carry no lease".into()));
    }
    Ok(Issued {
        lease: Lease::of(&envelope),
        credentials,
    })
}

/// `PUT /v1/sys/leases/renew`, asking for `increment` from now.
pub async fn renew(
    client: &Client,
    token: &str,
    lease_id: &str,
    increment: Duration,
) -> Result<Lease, Error> {
    let envelope = client
        .with_token(token)
        .lease_renew(lease_id, Some(increment.as_secs()))
        .await?;
    // An answer without the lease would schedule the next renewal at once.
    if envelope.lease_id.is_empty() {
        return Err(Error::BadResponse {
            method: "PUT".into(),
            path: "/v1/sys/leases/renew".into(),
            status: 200,
            reason: "the answer carries no lease".into(),
        });
    }
    Ok(Lease::of(&envelope))
}

/// `PUT /v1/sys/leases/revoke`: the server drops the user before answering.
pub async fn revoke(client: &Client, token: &str, lease_id: &str) -> Result<(), Error> {
    client.with_token(token).lease_revoke(lease_id).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::config::{Environment, Overrides};

    fn config(ca_cert: &std::path::Path) -> Config {
        let text = "address = \"https://127.0.0.1:8200\"\ntoken_file = \"token\"\n\
                    [[credential]]\npath = \"main/app_db/app\"\nfile = \"/run/app/db.env\"\n";
        let overrides = Overrides {
            ca_cert: Some(ca_cert.to_path_buf()),
            ..Overrides::default()
        };
        let file = Some((text.to_string(), std::path::Path::new("/etc/agent.toml")));
        Config::parse(file, overrides, Environment::default()).unwrap()
    }

    #[test]
    fn a_ca_cert_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let e = client(&config(&ca)).unwrap_err().to_string();
        assert!(
            e.starts_with("ca_cert ") && e.contains("no PEM certificate"),
            "{e}"
        );
        let missing = dir.path().join("missing.pem");
        let e = client(&config(&missing)).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("ca_cert {}: ", missing.display())),
            "{e}"
        );
    }

    #[test]
    fn a_lease_is_read_from_the_envelope() {
        let envelope: Envelope = serde_json::from_value(serde_json::json!({
            "lease_id": "database/creds/a/b/c/x", "lease_duration": 60,
            "renewable": true, "warnings": ["capped"]
        }))
        .unwrap();
        assert_eq!(
            Lease::of(&envelope),
            Lease {
                id: "database/creds/a/b/c/x".into(),
                duration: Duration::from_secs(60),
                renewable: true,
                warnings: vec!["capped".into()],
            }
        );
    }
}
