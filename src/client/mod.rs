//! A small client for Vault's HTTP API, as the `vault` CLI speaks it: used by
//! the `pgsecrets` client subcommands and usable by any Rust program that
//! talks to pgsecrets (or Vault).
//!
//! ```no_run
//! # async fn demo() -> Result<(), pgsecrets::client::Error> {
//! use pgsecrets::client::Client;
//!
//! let client = Client::from_env()?; // PGSECRETS_ADDR / VAULT_ADDR, ..._TOKEN, VAULT_CACERT
//! let creds = client.read("database/creds/main/shop/app").await?;
//! println!("{} until renewed", creds.data_str("username").unwrap_or("?"));
//! client.lease_revoke(&creds.lease_id).await?;
//! # Ok(()) }
//! ```
//!
//! Every call sends `X-Vault-Token` (when a token is set) to
//! `<address>/v1/<path>` and returns the answer's [`Envelope`]. A non-2xx
//! answer is [`Error::Server`] with the status, the `errors` array and any
//! `Retry-After`; problems before an answer (no address, refused
//! connection, TLS) are the other, local, variants. This module knows nothing of the server's
//! internals: it depends only on the wire protocol.

mod envelope;
mod error;
mod settings;

pub use envelope::{Auth, Envelope};
pub use error::{one_line, Error};
pub use settings::{Settings, ADDRESS_VARS, CA_CERT_VAR, TOKEN_VARS};

use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};

/// Query parameters of a read, list or delete: repeated names are allowed.
pub type Query = [(String, String)];

/// A connection to one server with one token. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    address: Url,
    token: Option<String>,
}

impl Client {
    /// A client configured from the environment (see [`Settings::from_env`]).
    pub fn from_env() -> Result<Client, Error> {
        Client::new(Settings::from_env()?)
    }

    /// A client for `settings`; reads the CA file now, connects on first use.
    pub fn new(settings: Settings) -> Result<Client, Error> {
        let invalid = |reason: &str| Error::InvalidAddress {
            address: settings.address.clone(),
            reason: reason.to_string(),
        };
        let address = Url::parse(&settings.address).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(address.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if address.cannot_be_a_base() || address.host_str().is_none() {
            return Err(invalid("expected http(s)://host:port"));
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("pgsecrets-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(std::time::Duration::from_secs(10)));
        if let Some(path) = &settings.ca_cert {
            builder = builder
                .tls_built_in_root_certs(false)
                .tls_built_in_webpki_certs(false);
            for cert in ca_bundle(path)? {
                builder = builder.add_root_certificate(cert);
            }
        } else if address.scheme() == "https" {
            // The built-in webpki roots, plus the system's, as the Vault CLI
            // trusts the system pool.
            for der in rustls_native_certs::load_native_certs().certs {
                if let Ok(cert) = reqwest::Certificate::from_der(&der) {
                    builder = builder.add_root_certificate(cert);
                }
            }
        }
        let http = builder.build().map_err(|e| Error::Setup(chain(&e)))?;
        Ok(Client {
            http,
            address,
            token: settings.token,
        })
    }

    /// The same server with another token.
    pub fn with_token(&self, token: impl Into<String>) -> Client {
        Client {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// The server's address.
    pub fn address(&self) -> &str {
        self.address.as_str().trim_end_matches('/')
    }

    /// The token sent with every request.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// `GET /v1/<path>`: a 404 (nothing there) is [`Error::Server`] with status 404.
    pub async fn read(&self, path: &str) -> Result<Envelope, Error> {
        self.read_with(path, &[]).await
    }

    /// [`Client::read`] with query parameters.
    pub async fn read_with(&self, path: &str, query: &Query) -> Result<Envelope, Error> {
        Ok(self
            .request(Method::GET, path, query, None)
            .await?
            .unwrap_or_default())
    }

    /// `GET /v1/<path>/?list=true`, as the `vault` CLI lists; keys are in
    /// [`Envelope::keys`]. An empty list is a 404, as in Vault.
    pub async fn list(&self, path: &str) -> Result<Envelope, Error> {
        self.list_with(path, &[]).await
    }

    /// [`Client::list`] with more query parameters.
    pub async fn list_with(&self, path: &str, query: &Query) -> Result<Envelope, Error> {
        let mut query = query.to_vec();
        query.push(("list".into(), "true".into()));
        let path = format!("{}/", path.trim_end_matches('/'));
        Ok(self
            .request(Method::GET, &path, &query, None)
            .await?
            .unwrap_or_default())
    }

    /// `PUT /v1/<path>` with a JSON body (an object, e.g. `json!({"policy": p})`);
    /// `None` when the server answered without a body (204).
    pub async fn write(&self, path: &str, body: &Value) -> Result<Option<Envelope>, Error> {
        self.request(Method::PUT, path, &[], Some(body)).await
    }

    /// `DELETE /v1/<path>`; `None` when the server answered without a body.
    pub async fn delete(&self, path: &str) -> Result<Option<Envelope>, Error> {
        self.delete_with(path, &[]).await
    }

    /// [`Client::delete`] with query parameters.
    pub async fn delete_with(&self, path: &str, query: &Query) -> Result<Option<Envelope>, Error> {
        self.request(Method::DELETE, path, query, None).await
    }

    /// `sys/leases/lookup`: `data.{id, issue_time, expire_time, ttl, renewable, ...}`.
    pub async fn lease_lookup(&self, lease_id: &str) -> Result<Envelope, Error> {
        let body = json!({ "lease_id": lease_id });
        Ok(self
            .write("sys/leases/lookup", &body)
            .await?
            .unwrap_or_default())
    }

    /// `sys/leases/renew`: the new TTL counts from now; `increment` in
    /// seconds (`None`: the role's default). The answer's `lease_duration`
    /// is the TTL granted, and its warnings say when it was capped.
    pub async fn lease_renew(
        &self,
        lease_id: &str,
        increment: Option<u64>,
    ) -> Result<Envelope, Error> {
        let body = json!({ "lease_id": lease_id, "increment": increment });
        Ok(self
            .write("sys/leases/renew", &body)
            .await?
            .unwrap_or_default())
    }

    /// `sys/leases/revoke`, synchronously: when this returns `Ok`, the
    /// database user is gone.
    pub async fn lease_revoke(&self, lease_id: &str) -> Result<(), Error> {
        let body = json!({ "lease_id": lease_id, "sync": true });
        self.write("sys/leases/revoke", &body).await.map(|_| ())
    }

    /// `auth/token/lookup-self`: the token's policies, TTL, ...
    pub async fn token_lookup_self(&self) -> Result<Envelope, Error> {
        self.read("auth/token/lookup-self").await
    }

    /// `auth/token/renew-self`; `increment` in seconds.
    pub async fn token_renew_self(&self, increment: Option<u64>) -> Result<Envelope, Error> {
        let body = json!({ "increment": increment });
        Ok(self
            .write("auth/token/renew-self", &body)
            .await?
            .unwrap_or_default())
    }

    /// One request. `Ok(None)` for a 2xx without a body (204, 202).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: &Query,
        body: Option<&Value>,
    ) -> Result<Option<Envelope>, Error> {
        let url = self.url(path, query)?;
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .header("X-Vault-Request", "true");
        if let Some(token) = &self.token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .map(|v| {
                let seconds = v.to_str().ok().and_then(|s| s.trim().parse().ok());
                std::time::Duration::from_secs(seconds.unwrap_or(0))
            });
        let text = response.text().await.map_err(|e| self.transport(&e))?;
        let url_path = url.path().to_string();
        if !status.is_success() {
            return Err(Error::Server {
                method: method.to_string(),
                path: url_path,
                status: status.as_u16(),
                errors: error_messages(&text),
                retry_after,
            });
        }
        if text.trim().is_empty() || status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        serde_json::from_str::<Envelope>(&text)
            .map(Some)
            .map_err(|e| Error::BadResponse {
                method: method.to_string(),
                path: url_path,
                status: status.as_u16(),
                reason: e.to_string(),
            })
    }

    /// `<address>/v1/<path>?<query>`, each path segment percent-encoded.
    fn url(&self, path: &str, query: &Query) -> Result<Url, Error> {
        let trimmed = path.trim().trim_start_matches('/');
        let bad = |reason: &str| Error::InvalidPath {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        if trimmed.is_empty() {
            return Err(bad("the path is empty"));
        }
        let segments: Vec<&str> = trimmed.split('/').collect();
        if segments.iter().any(|s| *s == "." || *s == "..") {
            return Err(bad("relative paths (. and ..) are not supported"));
        }
        let mut url = self.address.clone();
        url.path_segments_mut()
            .map_err(|_| bad("the server address cannot take a path"))?
            .pop_if_empty()
            .push("v1")
            .extend(segments);
        url.set_query(None);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter());
        }
        Ok(url)
    }

    fn transport(&self, error: &reqwest::Error) -> Error {
        let address = self.address().to_string();
        if let Some(tls) = find_tls_error(error) {
            return Error::Tls {
                address,
                reason: tls,
            };
        }
        Error::Unreachable {
            address,
            reason: if error.is_timeout() {
                "timed out".to_string()
            } else {
                chain(error)
            },
        }
    }
}

/// The `errors` array of an error body, or the body itself when it is not one.
fn error_messages(text: &str) -> Vec<String> {
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        if let Some(errors) = value.get("errors").and_then(Value::as_array) {
            return errors
                .iter()
                .map(|e| match e {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
        }
    }
    let text = text.trim();
    if text.is_empty() {
        Vec::new()
    } else {
        vec![text.chars().take(200).collect()]
    }
}

fn ca_bundle(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, Error> {
    let fail = |reason: String| Error::CaCert {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| fail(chain(&e)))?;
    if certs.is_empty() {
        return Err(fail("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// The rustls error under a transport failure, if the handshake was what failed.
fn find_tls_error(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // `io::Error::source` skips the error it wraps, so look inside.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(tls.to_string());
            }
            current = Some(inner);
            continue;
        }
        current = e.source();
    }
    None
}

/// The most specific messages of an error chain, without reqwest's
/// "error sending request for url (...)" wrapper.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut messages: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        messages.push(e.to_string());
        current = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner),
            None => e.source(),
        };
    }
    let specific: Vec<String> = messages
        .iter()
        .skip(if messages.len() > 1 { 1 } else { 0 })
        .filter(|m| !m.starts_with("error sending request") && !m.starts_with("client error"))
        .cloned()
        .collect();
    let mut out: Vec<String> = Vec::new();
    for m in specific {
        if !out.iter().any(|o| o.contains(&m)) {
            out.push(m);
        }
    }
    if out.is_empty() {
        messages.first().cloned().unwrap_or_default()
    } else {
        out.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(address: &str) -> Client {
        Client::new(Settings::new(address)).unwrap()
    }

    #[test]
    fn urls_keep_segments_and_encode_them() {
        let c = client("http://127.0.0.1:8200");
        let u = c.url("/database/creds/a b/db", &[]).unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8200/v1/database/creds/a%20b/db"
        );
        let u = c
            .url("sys/policies/acl/", &[("list".into(), "true".into())])
            .unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8200/v1/sys/policies/acl/?list=true"
        );
        let c = client("https://vault.example/prefix/");
        assert_eq!(
            c.url("sys/health", &[]).unwrap().as_str(),
            "https://vault.example/prefix/v1/sys/health"
        );
    }

    #[test]
    fn bad_paths_and_addresses_are_refused_locally() {
        let c = client("http://127.0.0.1:8200");
        assert!(matches!(c.url("", &[]), Err(Error::InvalidPath { .. })));
        assert!(matches!(
            c.url("sys/../x", &[]),
            Err(Error::InvalidPath { .. })
        ));
        for bad in ["127.0.0.1:8200", "ftp://h", "not a url"] {
            assert!(
                matches!(
                    Client::new(Settings::new(bad)),
                    Err(Error::InvalidAddress { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn error_bodies_give_their_messages() {
        assert_eq!(
            error_messages(r#"{"errors":["permission denied"]}"#),
            vec!["permission denied"]
        );
        assert!(error_messages(r#"{"errors":[]}"#).is_empty());
        assert_eq!(error_messages("Bad Gateway\n"), vec!["Bad Gateway"]);
    }
}
