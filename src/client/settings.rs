//! Where the server is and how to trust it: the environment the `vault` CLI
//! reads, with `PGSECRETS_*` names taking precedence.

use std::path::PathBuf;
use std::time::Duration;

use super::Error;

/// Variables naming the server, first set (non-empty) wins.
pub const ADDRESS_VARS: [&str; 2] = ["PGSECRETS_ADDR", "VAULT_ADDR"];
/// Variables holding the token, first set (non-empty) wins.
pub const TOKEN_VARS: [&str; 2] = ["PGSECRETS_TOKEN", "VAULT_TOKEN"];
/// A PEM file of CA certificates trusted for `https://` addresses, instead of
/// the built-in and system roots.
pub const CA_CERT_VAR: &str = "VAULT_CACERT";

/// How a [`super::Client`] reaches its server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `http://host:port` or `https://host:port` (a path prefix is kept).
    pub address: String,
    /// Sent as `X-Vault-Token`; requests go without one when `None`.
    pub token: Option<String>,
    /// PEM CA bundle for TLS; `None` trusts the built-in (webpki) and system roots.
    pub ca_cert: Option<PathBuf>,
    /// Limit on one whole request.
    pub timeout: Duration,
}

impl Settings {
    /// Default request timeout (the `vault` CLI's is 60 s too).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

    /// A server at `address`, no token, default trust and timeout.
    pub fn new(address: impl Into<String>) -> Settings {
        Settings {
            address: address.into(),
            token: None,
            ca_cert: None,
            timeout: Settings::DEFAULT_TIMEOUT,
        }
    }

    /// Reads `PGSECRETS_ADDR`/`VAULT_ADDR`, `PGSECRETS_TOKEN`/`VAULT_TOKEN`
    /// and `VAULT_CACERT`. Fails only when no address is set.
    pub fn from_env() -> Result<Settings, Error> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`Settings::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, Error> {
        let first = |names: &[&str]| {
            names
                .iter()
                .filter_map(|n| lookup(n))
                .find(|v| !v.trim().is_empty())
        };
        let address = first(&ADDRESS_VARS).ok_or(Error::MissingAddress)?;
        Ok(Settings {
            address: address.trim().to_string(),
            token: first(&TOKEN_VARS).map(|t| t.trim().to_string()),
            ca_cert: first(&[CA_CERT_VAR]).map(PathBuf::from),
            timeout: Settings::DEFAULT_TIMEOUT,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, Error> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn pgsecrets_variables_override_vault_ones() {
        let s = settings(&[
            ("VAULT_ADDR", "http://vault:8200"),
            ("VAULT_TOKEN", "v"),
            ("PGSECRETS_ADDR", "http://pgsecrets:8200"),
            ("PGSECRETS_TOKEN", "p"),
        ])
        .unwrap();
        assert_eq!(s.address, "http://pgsecrets:8200");
        assert_eq!(s.token.as_deref(), Some("p"));
        let s = settings(&[("VAULT_ADDR", "http://vault:8200"), ("PGSECRETS_ADDR", "")]).unwrap();
        assert_eq!(s.address, "http://vault:8200");
        assert_eq!(s.token, None);
    }

    #[test]
    fn no_address_is_an_error() {
        assert!(matches!(
            settings(&[("VAULT_TOKEN", "t")]),
            Err(Error::MissingAddress)
        ));
    }
}
