//! Connection settings of a cluster as a request gives them: parsed,
//! checked, and applied to a new record (defaults) or an existing one (only
//! what was given).

use super::names;
use super::records::ClusterRecord;
use super::Error;
use crate::logical::FieldData;
use crate::postgres::{self, ChannelBinding, ClientIdentity, SslMode};

/// Connection settings from a request, checked.
pub struct Settings {
    pub host: Option<String>,
    pub port: u16,
    pub database: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ssl_mode: SslMode,
    pub ssl_root_cert: Option<String>,
    /// Client certificate (PEM) and its key, given together.
    pub ssl_cert: Option<String>,
    pub ssl_key: Option<String>,
    pub channel_binding: ChannelBinding,
    pub max_open_connections: u32,
    pub max_idle_connections: u32,
    pub max_connection_lifetime: u64,
    /// Fields the request carried (updates change only these).
    pub given: Vec<&'static str>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidField {
        field,
        reason: reason.into(),
    }
}

pub fn check_host(host: &str) -> Result<(), Error> {
    if host.is_empty()
        || host.len() > 253
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '?' | '#' | '@'))
    {
        return Err(invalid(
            "host",
            format!("{host:?} is not a host name or IP address"),
        ));
    }
    Ok(())
}

/// The TLS fields and the names Vault's database engine gives them.
pub const TLS_ALIASES: [(&str, &str); 3] = [
    ("ssl_root_cert", "tls_ca"),
    ("ssl_cert", "tls_certificate"),
    ("ssl_key", "private_key"),
];

/// A field given under its own name or under its alias (not both, unless
/// they agree); `""` counts as given (it clears the stored value).
fn aliased(fields: &FieldData, name: &'static str) -> Result<Option<String>, Error> {
    let alias = TLS_ALIASES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a)
        .expect("an aliased field");
    let own = fields.is_set(name).then(|| fields.str(name)).flatten();
    let other = fields.is_set(alias).then(|| fields.str(alias)).flatten();
    match (own, other) {
        (Some(a), Some(b)) if a != b => Err(invalid(
            name,
            format!("{name} and its alias {alias} differ: give one of them"),
        )),
        (Some(v), _) | (None, Some(v)) => Ok(Some(v)),
        (None, None) => Ok(None),
    }
}

fn is_given(fields: &FieldData, name: &str) -> bool {
    fields.is_set(name)
        || TLS_ALIASES
            .iter()
            .any(|(n, alias)| *n == name && fields.is_set(alias))
}

fn parse_ssl_mode(fields: &FieldData) -> Result<SslMode, Error> {
    let text = fields
        .str("ssl_mode")
        .unwrap_or_else(|| "verify-full".into());
    SslMode::parse(&text).ok_or_else(|| match text.as_str() {
        // libpq's `prefer` and `allow` fall back to cleartext when TLS
        // fails, where a password server must not go.
        "prefer" | "allow" => invalid(
            "ssl_mode",
            format!("{text:?} would fall back to an unencrypted connection when TLS fails, which pgsecrets never does: use verify-full (default), verify-ca or require, or disable for a server without TLS"),
        ),
        _ => invalid(
            "ssl_mode",
            format!("{text:?} is not one of disable, require, verify-ca, verify-full"),
        ),
    })
}

impl Settings {
    pub fn parse(fields: &FieldData) -> Result<Settings, Error> {
        let host = fields.str("host").filter(|h| !h.is_empty());
        if let Some(host) = &host {
            check_host(host)?;
        }
        let port = fields.int("port").unwrap_or(5432);
        let port = u16::try_from(port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| invalid("port", format!("{port} is not a TCP port (1-65535)")))?;
        let database = fields.str("database").unwrap_or_else(|| "postgres".into());
        names::check_identifier("database", &database)?;
        let username = fields.str("username").filter(|u| !u.is_empty());
        if let Some(u) = &username {
            if u.len() > names::MAX_IDENTIFIER || u.chars().any(|c| c.is_control()) {
                return Err(invalid(
                    "username",
                    "at most 63 bytes, no control characters",
                ));
            }
        }
        let ssl_mode = parse_ssl_mode(fields)?;
        let nonempty = |v: Option<String>| v.filter(|c| !c.trim().is_empty());
        let ssl_root_cert = nonempty(aliased(fields, "ssl_root_cert")?);
        let ssl_cert = nonempty(aliased(fields, "ssl_cert")?);
        let ssl_key = nonempty(aliased(fields, "ssl_key")?);
        let binding_text = fields
            .str("channel_binding")
            .unwrap_or_else(|| "prefer".into());
        let channel_binding = ChannelBinding::parse(&binding_text).ok_or_else(|| {
            invalid(
                "channel_binding",
                format!("{binding_text:?} is not one of disable, prefer, require"),
            )
        })?;
        let max_open = fields.int("max_open_connections").unwrap_or(4);
        if !(1..=1000).contains(&max_open) {
            return Err(invalid("max_open_connections", "must be from 1 to 1000"));
        }
        let max_idle = fields.int("max_idle_connections").unwrap_or(2);
        if max_idle < 0 || max_idle > max_open {
            return Err(invalid(
                "max_idle_connections",
                "must be from 0 to max_open_connections",
            ));
        }
        Ok(Settings {
            host,
            port,
            database,
            username,
            password: fields.str("password").filter(|p| !p.is_empty()),
            ssl_mode,
            ssl_root_cert,
            ssl_cert,
            ssl_key,
            channel_binding,
            max_open_connections: max_open as u32,
            max_idle_connections: max_idle as u32,
            max_connection_lifetime: fields.duration("max_connection_lifetime").unwrap_or(0),
            given: [
                "port",
                "database",
                "ssl_mode",
                "ssl_root_cert",
                "ssl_cert",
                "ssl_key",
                "channel_binding",
                "max_open_connections",
                "max_idle_connections",
                "max_connection_lifetime",
            ]
            .into_iter()
            .filter(|f| is_given(fields, f))
            .collect(),
        })
    }

    /// Copies the settings the request gave onto an existing record; the
    /// others keep their stored values.
    pub fn update(&self, record: &mut ClusterRecord) -> Result<(), Error> {
        let given = |f: &str| self.given.contains(&f);
        if given("database") {
            record.database = self.database.clone();
        }
        if given("ssl_mode") {
            record.ssl_mode = self.ssl_mode;
        }
        if given("ssl_root_cert") {
            record.ssl_root_cert = self.ssl_root_cert.clone();
        }
        if given("ssl_cert") {
            record.ssl_cert = self.ssl_cert.clone();
        }
        if given("ssl_key") {
            record.ssl_key = self.ssl_key.clone();
        }
        if given("channel_binding") {
            record.channel_binding = self.channel_binding;
        }
        if given("max_open_connections") {
            record.max_open_connections = self.max_open_connections;
        }
        if given("max_idle_connections") {
            record.max_idle_connections = self.max_idle_connections;
        }
        if given("max_connection_lifetime") {
            record.max_connection_lifetime = self.max_connection_lifetime;
        }
        if record.max_idle_connections > record.max_open_connections {
            return Err(invalid(
                "max_idle_connections",
                "must be from 0 to max_open_connections",
            ));
        }
        Ok(())
    }

    /// Copies the tunable settings onto a record.
    pub fn apply_to(&self, record: &mut ClusterRecord) {
        record.database = self.database.clone();
        record.ssl_mode = self.ssl_mode;
        record.ssl_root_cert = self.ssl_root_cert.clone();
        record.ssl_cert = self.ssl_cert.clone();
        record.ssl_key = self.ssl_key.clone();
        record.channel_binding = self.channel_binding;
        record.max_open_connections = self.max_open_connections;
        record.max_idle_connections = self.max_idle_connections;
        record.max_connection_lifetime = self.max_connection_lifetime;
    }
}

/// The TLS settings a record is about to be kept with: certificates that
/// parse and are within their validity period, a key that belongs to the
/// client certificate, and the two given together.
pub fn check_tls(record: &ClusterRecord) -> Result<(), Error> {
    let identity = match (&record.ssl_cert, &record.ssl_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(ClientIdentity {
            cert_pem: cert.clone(),
            key_pem: key.clone(),
        }),
        (Some(_), None) => {
            return Err(invalid(
                "ssl_key",
                "ssl_cert needs its private key in ssl_key",
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                "ssl_cert",
                "ssl_key needs its certificate in ssl_cert",
            ))
        }
    };
    if record.ssl_mode == SslMode::Disable && (identity.is_some() || record.ssl_root_cert.is_some())
    {
        return Err(invalid(
            "ssl_mode",
            "ssl_mode=disable uses no TLS, so ssl_root_cert, ssl_cert and ssl_key would be ignored: pick a TLS mode or leave them out",
        ));
    }
    if record.ssl_mode == SslMode::Disable && record.channel_binding == ChannelBinding::Require {
        return Err(invalid(
            "channel_binding",
            "channel_binding=require binds the login to a TLS connection, which ssl_mode=disable does not make",
        ));
    }
    let now = chrono::Utc::now().timestamp();
    postgres::tls::check_settings(record.ssl_root_cert.as_deref(), identity.as_ref(), now)
        .map_err(|(field, reason)| invalid(field, reason))
}

/// A warning for TLS settings that encrypt without telling who the server is.
pub fn tls_warning(record: &ClusterRecord) -> Option<String> {
    (record.ssl_mode == SslMode::Require && record.ssl_root_cert.is_none()).then(|| {
        let binding = if record.channel_binding == ChannelBinding::Require {
            ""
        } else {
            "; channel_binding=require at least ties the SCRAM login to this TLS connection"
        };
        format!("ssl_mode=require encrypts but does not check the server's certificate, so anyone on the network path can pose as the server: give its CA as ssl_root_cert (require then checks the chain, as verify-ca does) or use verify-full{binding}")
    })
}
