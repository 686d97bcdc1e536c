//! Server configuration: a TOML file (see `config/*.toml`) plus the dev
//! defaults, validated into [`Config`] before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {0}")]
    Invalid(String),
}

/// Where the encrypted storage lives.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageConfig {
    /// Lost on exit: tests and `--dev`.
    InMem,
    /// The embedded default: one SQLite file.
    Sqlite { path: PathBuf },
    /// A PostgreSQL database several servers can share.
    Postgresql(crate::storage::postgresql::Settings),
}

/// Where the unseal key (the key that opens the storage keyring) comes from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SealConfig {
    /// A file holding the base64 key, created by `operator init` (mode 0600).
    pub key_file: Option<PathBuf>,
    /// An environment variable holding the base64 key; wins over the file.
    pub key_env: Option<String>,
}

/// The listener's TLS, from `[listener]`'s `tls_*` options (Vault's names).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// `tls_min_version`: rustls has nothing below TLS 1.2.
    pub min_version: TlsVersion,
    /// `tls_client_ca_file`: the CAs whose client certificates are accepted.
    /// As in Vault, it is used only when client certificates are required.
    pub client_ca_file: Option<PathBuf>,
    /// `tls_require_and_verify_client_cert`: a client without a certificate
    /// signed by `client_ca_file` is refused at the handshake.
    pub require_client_cert: bool,
}

impl TlsConfig {
    /// A certificate and key with the defaults: TLS 1.2 and up, no client
    /// certificates.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            min_version: TlsVersion::Tls12,
            client_ca_file: None,
            require_client_cert: false,
        }
    }
}

/// The lowest TLS version the listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    #[default]
    Tls12,
    Tls13,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub address: SocketAddr,
    pub tls: Option<TlsConfig>,
    /// Request size, timeouts and connection cap of the listener.
    pub http: crate::wire::WireConfig,
    pub storage: StorageConfig,
    pub seal: SealConfig,
    pub log_format: LogFormat,
    /// Declared audit devices and the audit settings.
    pub audit: crate::audit::Config,
    /// `listener.unauthenticated_metrics_access`: `sys/metrics` without a token.
    pub unauthenticated_metrics: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listener: Option<FileListener>,
    storage: FileStorage,
    seal: Option<FileSeal>,
    log_format: Option<LogFormat>,
    #[serde(default)]
    audit: Vec<FileAudit>,
    #[serde(default)]
    unsafe_allow_api_audit_creation: bool,
    audit_failure: Option<String>,
}

/// `[[audit]]`: a declared device (Vault's `audit "<type>" "<path>"`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAudit {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    options: std::collections::BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileListener {
    address: Option<String>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_min_version: Option<String>,
    tls_client_ca_file: Option<PathBuf>,
    tls_require_and_verify_client_cert: Option<bool>,
    tls_disable_client_certs: Option<bool>,
    max_request_size: Option<usize>,
    http_read_header_timeout: Option<String>,
    http_read_timeout: Option<String>,
    http_idle_timeout: Option<String>,
    max_connections: Option<usize>,
    unauthenticated_metrics_access: Option<bool>,
    x_forwarded_for_authorized_addrs: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStorage {
    backend: String,
    path: Option<PathBuf>,
    /// postgresql: `postgres://user:password@host:port/database`.
    connection_url: Option<String>,
    /// postgresql: writes carry the HA lock's fence.
    ha_enabled: Option<bool>,
    /// postgresql: the HA lock's lifetime, e.g. "10s".
    lock_ttl: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSeal {
    key_file: Option<PathBuf>,
    key_env: Option<String>,
}

impl Config {
    /// The zero-setup dev configuration.
    pub fn dev(address: SocketAddr) -> Config {
        Config {
            address,
            tls: None,
            http: crate::wire::WireConfig::default(),
            storage: StorageConfig::InMem,
            seal: SealConfig::default(),
            log_format: LogFormat::Human,
            audit: crate::audit::Config::default(),
            unauthenticated_metrics: false,
        }
    }

    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates a config file's text; relative paths in it are
    /// resolved against the file's directory.
    pub fn parse(text: &str, path: &Path) -> Result<Config, Error> {
        let file: FileConfig = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        let listener = file.listener.unwrap_or(FileListener {
            address: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_min_version: None,
            tls_client_ca_file: None,
            tls_require_and_verify_client_cert: None,
            tls_disable_client_certs: None,
            max_request_size: None,
            http_read_header_timeout: None,
            http_read_timeout: None,
            http_idle_timeout: None,
            max_connections: None,
            unauthenticated_metrics_access: None,
            x_forwarded_for_authorized_addrs: None,
        });
        let tls = listener_tls(&listener, resolve)?;
        let address_text = listener.address.unwrap_or_else(|| "127.0.0.1:8200".into());
        let address: SocketAddr = address_text.parse().map_err(|_| {
            Error::Invalid(format!(
                "listener.address {address_text:?} is not an IP:port address"
            ))
        })?;
        let max_request_size = listener
            .max_request_size
            .unwrap_or(crate::wire::DEFAULT_MAX_REQUEST_SIZE);
        if max_request_size == 0 {
            return Err(Error::Invalid(
                "listener.max_request_size must be positive".into(),
            ));
        }
        let mut http = crate::wire::WireConfig {
            max_request_size,
            ..crate::wire::WireConfig::default()
        };
        for (name, value, slot) in [
            (
                "http_read_header_timeout",
                &listener.http_read_header_timeout,
                &mut http.read_header_timeout,
            ),
            (
                "http_read_timeout",
                &listener.http_read_timeout,
                &mut http.read_timeout,
            ),
            (
                "http_idle_timeout",
                &listener.http_idle_timeout,
                &mut http.idle_timeout,
            ),
        ] {
            if let Some(text) = value {
                *slot = listener_duration(name, text)?;
            }
        }
        for text in listener.x_forwarded_for_authorized_addrs.iter().flatten() {
            let net = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    Error::Invalid(format!(
                        "listener.x_forwarded_for_authorized_addrs: {text:?} is not an address or CIDR block such as \"10.0.0.0/8\""
                    ))
                })?;
            http.trusted_proxies.push(net);
        }
        if let Some(max) = listener.max_connections {
            if max == 0 {
                return Err(Error::Invalid(
                    "listener.max_connections must be positive".into(),
                ));
            }
            http.max_connections = max;
        }
        let url_env = std::env::var(crate::storage::postgresql::CONNECTION_URL_ENV).ok();
        let storage = match file.storage.backend.as_str() {
            "postgresql" => postgresql_storage(&file.storage, url_env)?,
            "inmem" => StorageConfig::InMem,
            "sqlite" => StorageConfig::Sqlite {
                path: resolve(file.storage.path.ok_or_else(|| {
                    Error::Invalid("storage.path is required for the sqlite backend".into())
                })?),
            },
            other => {
                return Err(Error::Invalid(format!(
                "storage.backend {other:?} is unknown: use \"sqlite\", \"postgresql\" or \"inmem\""
            )))
            }
        };
        if file.storage.backend != "postgresql" {
            for (name, set) in [
                ("connection_url", file.storage.connection_url.is_some()),
                ("ha_enabled", file.storage.ha_enabled.is_some()),
                ("lock_ttl", file.storage.lock_ttl.is_some()),
            ] {
                if set {
                    return Err(Error::Invalid(format!(
                        "storage.{name} is for backend = \"postgresql\" only"
                    )));
                }
            }
        }
        let seal = match file.seal {
            Some(s) => SealConfig {
                key_file: s.key_file.map(resolve),
                key_env: s.key_env,
            },
            None => SealConfig::default(),
        };
        if storage != StorageConfig::InMem && seal.key_file.is_none() && seal.key_env.is_none() {
            return Err(Error::Invalid(
                "[seal] needs key_file or key_env to keep the storage key".into(),
            ));
        }
        let continue_on_failure = match file.audit_failure.as_deref() {
            None | Some("block") => false,
            Some("continue") => true,
            Some(other) => {
                return Err(Error::Invalid(format!(
                    "audit_failure {other:?} is unknown: use \"block\" (the default: no request runs unaudited) or \"continue\""
                )))
            }
        };
        let mut devices = Vec::new();
        for device in file.audit {
            let mut options = std::collections::BTreeMap::new();
            for (key, value) in device.options {
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Integer(i) => i.to_string(),
                    other => {
                        return Err(Error::Invalid(format!(
                            "audit {:?}: option {key:?} must be a string, not {}",
                            device.path,
                            other.type_str()
                        )))
                    }
                };
                options.insert(key, text);
            }
            devices.push(crate::audit::Spec {
                path: device.path,
                kind: device.kind,
                description: device.description,
                options,
                local: false,
            });
        }
        Ok(Config {
            address,
            tls,
            http,
            storage,
            seal,
            log_format: file.log_format.unwrap_or_default(),
            audit: crate::audit::Config {
                devices,
                allow_api_creation: file.unsafe_allow_api_audit_creation,
                continue_on_failure,
            },
            unauthenticated_metrics: listener.unauthenticated_metrics_access.unwrap_or(false),
        })
    }
}

/// `[listener]`'s TLS options, checked together: TLS is on when a
/// certificate and key are given, and the other `tls_*` options need it.
fn listener_tls(
    listener: &FileListener,
    resolve: impl Fn(PathBuf) -> PathBuf,
) -> Result<Option<TlsConfig>, Error> {
    let (cert, key) = match (&listener.tls_cert_file, &listener.tls_key_file) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        (None, None) => {
            let given = [
                ("tls_min_version", listener.tls_min_version.is_some()),
                ("tls_client_ca_file", listener.tls_client_ca_file.is_some()),
                (
                    "tls_require_and_verify_client_cert",
                    listener.tls_require_and_verify_client_cert.is_some(),
                ),
            ];
            if let Some((name, _)) = given.iter().find(|(_, set)| *set) {
                return Err(Error::Invalid(format!(
                    "listener.{name} needs TLS: set listener.tls_cert_file and listener.tls_key_file"
                )));
            }
            return Ok(None);
        }
        _ => {
            return Err(Error::Invalid(
                "listener.tls_cert_file and listener.tls_key_file go together".into(),
            ))
        }
    };
    let min_version = match listener.tls_min_version.as_deref() {
        None | Some("tls12") => TlsVersion::Tls12,
        Some("tls13") => TlsVersion::Tls13,
        Some(other) => {
            return Err(Error::Invalid(format!(
                "listener.tls_min_version {other:?} is not supported: rustls supports only \"tls12\" (the default) and \"tls13\""
            )))
        }
    };
    let require_client_cert = listener.tls_require_and_verify_client_cert.unwrap_or(false);
    if require_client_cert && listener.tls_disable_client_certs == Some(true) {
        return Err(Error::Invalid(
            "listener.tls_disable_client_certs and listener.tls_require_and_verify_client_cert are mutually exclusive".into(),
        ));
    }
    // Vault would check client certificates against the OS trust store
    // here; any public CA's customer would then pass, so a CA is required.
    if require_client_cert && listener.tls_client_ca_file.is_none() {
        return Err(Error::Invalid(
            "listener.tls_require_and_verify_client_cert needs listener.tls_client_ca_file: the CA whose client certificates are accepted".into(),
        ));
    }
    Ok(Some(TlsConfig {
        cert_file: resolve(cert),
        key_file: resolve(key),
        min_version,
        client_ca_file: listener.tls_client_ca_file.clone().map(&resolve),
        require_client_cert,
    }))
}

/// `[storage] backend = "postgresql"`. The connection URL comes from
/// `PGSECRETS_PG_CONNECTION_URL` (`url_env`) when set, else from
/// `connection_url`: the environment wins, as `VAULT_PG_CONNECTION_URL` does
/// in Vault, so the password can stay out of the file.
fn postgresql_storage(
    storage: &FileStorage,
    url_env: Option<String>,
) -> Result<StorageConfig, Error> {
    use crate::storage::postgresql::{
        ConnectionUrl, Settings, CONNECTION_URL_ENV, DEFAULT_LOCK_TTL,
    };
    let url = url_env
        .filter(|u| !u.trim().is_empty())
        .or_else(|| storage.connection_url.clone())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "the postgresql storage needs storage.connection_url or the {CONNECTION_URL_ENV} environment variable"
            ))
        })?;
    if storage.path.is_some() {
        return Err(Error::Invalid(
            "storage.path is for the sqlite backend; postgresql takes connection_url".into(),
        ));
    }
    let lock_ttl = match &storage.lock_ttl {
        None => DEFAULT_LOCK_TTL,
        Some(text) => match crate::logical::duration::parse_seconds(text.trim()) {
            Ok(seconds) if seconds >= 1.0 => std::time::Duration::from_secs_f64(seconds),
            _ => {
                return Err(Error::Invalid(format!(
                    "storage.lock_ttl {text:?} is not a duration of at least 1s such as \"10s\""
                )))
            }
        },
    };
    Ok(StorageConfig::Postgresql(Settings {
        connection_url: ConnectionUrl::new(url),
        ha_enabled: storage.ha_enabled.unwrap_or(false),
        lock_ttl,
    }))
}

/// A listener timeout: Vault's duration syntax (`10s`, `5m`), positive.
fn listener_duration(name: &str, text: &str) -> Result<std::time::Duration, Error> {
    match crate::logical::duration::parse_seconds(text.trim()) {
        Ok(seconds) if seconds > 0.0 => Ok(std::time::Duration::from_secs_f64(seconds)),
        _ => Err(Error::Invalid(format!(
            "listener.{name} {text:?} is not a positive duration such as \"10s\" or \"5m\""
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_configs_parse() {
        for name in ["pgsecrets.toml", "dev.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("config")
                .join(name);
            Config::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn mistakes_are_named() {
        let p = Path::new("/etc/x.toml");
        let e = Config::parse("[storage]\nbackend = \"mysql\"", p).unwrap_err();
        assert!(e.to_string().contains("\"mysql\" is unknown"), "{e}");
        let e = Config::parse("[storage]\nbackend = \"sqlite\"", p).unwrap_err();
        assert!(e.to_string().contains("storage.path"), "{e}");
        let e = Config::parse("[storage]\nbackend = \"sqlite\"\npath=\"a.db\"", p).unwrap_err();
        assert!(e.to_string().contains("key_file"), "{e}");
        let e = Config::parse("bogus = 1\n[storage]\nbackend = \"inmem\"", p).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = Config::parse(
            "[listener]\nhttp_idle_timeout = \"soon\"\n[storage]\nbackend = \"inmem\"",
            p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("http_idle_timeout"), "{e}");
        let c = Config::parse(
            "[listener]\nhttp_read_header_timeout = \"2s\"\nmax_connections = 7\n[storage]\nbackend = \"inmem\"",
            p,
        )
        .unwrap();
        assert_eq!(
            c.http.read_header_timeout,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(c.http.read_timeout, std::time::Duration::from_secs(30));
        assert_eq!(c.http.idle_timeout, std::time::Duration::from_secs(300));
        assert_eq!(c.http.max_connections, 7);
        let c = Config::parse(
            "[storage]\nbackend = \"sqlite\"\npath=\"a.db\"\n[seal]\nkey_file=\"k\"",
            p,
        )
        .unwrap();
        assert_eq!(
            c.storage,
            StorageConfig::Sqlite {
                path: "/etc/a.db".into()
            }
        );
    }

    #[test]
    fn listener_tls_options_take_vaults_names() {
        let p = Path::new("/etc/x.toml");
        let parse = |listener: &str| {
            Config::parse(
                &format!("[listener]\ntls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\n{listener}\n[storage]\nbackend = \"inmem\""),
                p,
            )
        };
        let tls = parse("").unwrap().tls.unwrap();
        assert_eq!(tls, TlsConfig::new("/etc/c.pem", "/etc/k.pem"));
        let tls = parse(
            "tls_min_version = \"tls13\"\ntls_client_ca_file = \"ca.pem\"\ntls_require_and_verify_client_cert = true",
        )
        .unwrap()
        .tls
        .unwrap();
        assert_eq!(tls.min_version, TlsVersion::Tls13);
        assert_eq!(
            tls.client_ca_file.as_deref(),
            Some(Path::new("/etc/ca.pem"))
        );
        assert!(tls.require_client_cert);
        let e = parse("tls_min_version = \"tls11\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"tls11\"") && e.contains("rustls supports only \"tls12\""),
            "{e}"
        );
        let e = parse("tls_require_and_verify_client_cert = true")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tls_require_and_verify_client_cert") && e.contains("tls_client_ca_file"),
            "{e}"
        );
        let e = parse("tls_client_ca_file = \"ca.pem\"\ntls_require_and_verify_client_cert = true\ntls_disable_client_certs = true")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mutually exclusive"), "{e}");
        let e = Config::parse(
            "[listener]\ntls_min_version = \"tls13\"\n[storage]\nbackend = \"inmem\"",
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tls_min_version needs TLS"), "{e}");
    }

    #[test]
    fn postgresql_storage_takes_its_url_from_the_environment_first() {
        use crate::storage::postgresql::Settings;
        let file: FileConfig = toml::from_str(
            "[storage]\nbackend = \"postgresql\"\nconnection_url = \"postgres://u:file-pw@db:5432/p\"\n\
             ha_enabled = true\nlock_ttl = \"15s\"",
        )
        .unwrap();
        let StorageConfig::Postgresql(from_file) = postgresql_storage(&file.storage, None).unwrap()
        else {
            panic!("not postgresql")
        };
        assert_eq!(
            from_file.connection_url.expose(),
            "postgres://u:file-pw@db:5432/p"
        );
        assert!(from_file.ha_enabled);
        assert_eq!(from_file.lock_ttl, std::time::Duration::from_secs(15));
        let env = Some("postgres://u:env-pw@db2:5433/p".to_string());
        let StorageConfig::Postgresql(from_env) = postgresql_storage(&file.storage, env).unwrap()
        else {
            panic!("not postgresql")
        };
        assert_eq!(
            from_env.connection_url.expose(),
            "postgres://u:env-pw@db2:5433/p"
        );
        let c = Config::parse(
            "[storage]\nbackend = \"postgresql\"\nconnection_url = \"postgres://u:pw@db/p\"\n[seal]\nkey_env = \"K\"",
            Path::new("/etc/x.toml"),
        );
        if std::env::var(crate::storage::postgresql::CONNECTION_URL_ENV).is_err() {
            let c = c.unwrap();
            assert_eq!(
                c.storage,
                StorageConfig::Postgresql(Settings::new("postgres://u:pw@db/p"))
            );
            let shown = format!("{:?}", c);
            assert!(
                !shown.contains(":pw@"),
                "the password is not in Debug: {shown}"
            );
        }
        let none: FileConfig = toml::from_str("[storage]\nbackend = \"postgresql\"").unwrap();
        let e = postgresql_storage(&none.storage, None).unwrap_err();
        assert!(e.to_string().contains("PGSECRETS_PG_CONNECTION_URL"), "{e}");
        let short: FileConfig = toml::from_str(
            "[storage]\nbackend = \"postgresql\"\nconnection_url = \"postgres://db/p\"\nlock_ttl = \"0s\"",
        )
        .unwrap();
        let e = postgresql_storage(&short.storage, None).unwrap_err();
        assert!(e.to_string().contains("lock_ttl"), "{e}");
        let e = Config::parse(
            "[storage]\nbackend = \"sqlite\"\npath = \"a.db\"\nha_enabled = true\n[seal]\nkey_file = \"k\"",
            Path::new("/etc/x.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("ha_enabled"), "{e}");
    }

    #[test]
    fn audit_devices_are_declared_in_the_file() {
        let p = Path::new("/etc/x.toml");
        let c = Config::parse(
            "audit_failure = \"continue\"\nunsafe_allow_api_audit_creation = true\n\
             [[audit]]\npath = \"file\"\ntype = \"file\"\n\
             options = { file_path = \"/tmp/x.log\", hmac_accessor = false }\n\
             [storage]\nbackend = \"inmem\"",
            p,
        )
        .unwrap();
        assert!(c.audit.continue_on_failure && c.audit.allow_api_creation);
        assert_eq!(c.audit.devices[0].path, "file");
        assert_eq!(c.audit.devices[0].options["hmac_accessor"], "false");
        let e = Config::parse(
            "audit_failure = \"maybe\"\n[storage]\nbackend = \"inmem\"",
            p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("audit_failure"), "{e}");
        let c = Config::parse("[storage]\nbackend = \"inmem\"", p).unwrap();
        assert!(!c.audit.allow_api_creation && !c.audit.continue_on_failure);
    }

    #[test]
    fn trusted_proxies_are_addresses_or_cidr_blocks() {
        let p = Path::new("/etc/x.toml");
        let c = Config::parse(
            "[listener]\nx_forwarded_for_authorized_addrs = [\"10.0.0.0/8\", \"192.0.2.1\"]\n[storage]\nbackend = \"inmem\"",
            p,
        )
        .unwrap();
        assert_eq!(c.http.trusted_proxies.len(), 2);
        assert!(
            c.http.trusted_proxies[1].contains(&"192.0.2.1".parse::<std::net::IpAddr>().unwrap())
        );
        let e = Config::parse(
            "[listener]\nx_forwarded_for_authorized_addrs = [\"proxy\"]\n[storage]\nbackend = \"inmem\"",
            p,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("x_forwarded_for_authorized_addrs"),
            "{e}"
        );
    }

    #[test]
    fn the_readmes_postgresql_example_parses() {
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
                .unwrap();
        let section = &readme[readme.find("#### PostgreSQL storage").expect("the section")..];
        let block = section
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a toml block");
        let file: FileConfig = toml::from_str(block).unwrap();
        let StorageConfig::Postgresql(settings) = postgresql_storage(&file.storage, None).unwrap()
        else {
            panic!("not postgresql")
        };
        assert!(!settings.ha_enabled);
        assert_eq!(settings.lock_ttl, std::time::Duration::from_secs(10));
    }

    #[test]
    fn the_readmes_audit_example_parses() {
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
                .unwrap();
        let section = &readme[readme.find("### Audit log").expect("the section")..];
        let block = section
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a toml block");
        let text = format!("{block}[storage]\nbackend = \"inmem\"\n");
        let c = Config::parse(&text, Path::new("/etc/x.toml")).unwrap();
        let device = &c.audit.devices[0];
        crate::audit::device::Options::parse(&device.kind, &device.options, true).unwrap();
    }
}
