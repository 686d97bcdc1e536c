//! Connection settings of a cluster as a request gives them: parsed,
//! checked, and applied to a new record (defaults) or an existing one (only
//! what was given).

use super::names;
use super::records::ClusterRecord;
use super::Error;
use crate::logical::FieldData;
use crate::postgres::{self, SslMode};

/// Connection settings from a request, checked.
pub struct Settings {
    pub host: Option<String>,
    pub port: u16,
    pub database: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ssl_mode: SslMode,
    pub ssl_root_cert: Option<String>,
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
        let mode_text = fields
            .str("ssl_mode")
            .unwrap_or_else(|| "verify-full".into());
        let ssl_mode = SslMode::parse(&mode_text).ok_or_else(|| {
            invalid(
                "ssl_mode",
                format!("{mode_text:?} is not one of disable, require, verify-ca, verify-full"),
            )
        })?;
        let ssl_root_cert = fields.str("ssl_root_cert").filter(|c| !c.is_empty());
        if let Some(pem) = &ssl_root_cert {
            postgres::tls::client_config(SslMode::VerifyFull, Some(pem))
                .map_err(|e| invalid("ssl_root_cert", e.to_string()))?;
        }
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
            max_open_connections: max_open as u32,
            max_idle_connections: max_idle as u32,
            max_connection_lifetime: fields.duration("max_connection_lifetime").unwrap_or(0),
            given: [
                "port",
                "database",
                "ssl_mode",
                "ssl_root_cert",
                "max_open_connections",
                "max_idle_connections",
                "max_connection_lifetime",
            ]
            .into_iter()
            .filter(|f| fields.is_set(f))
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
        record.max_open_connections = self.max_open_connections;
        record.max_idle_connections = self.max_idle_connections;
        record.max_connection_lifetime = self.max_connection_lifetime;
    }
}
