//! Connection targets, single connections and pools.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::auth_guard::{Guarded, GuardedTls};
use super::socket::LazyTcp;
use super::{tls, Error};

/// libpq's `sslmode` values that pgsecrets supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(text: &str) -> Option<SslMode> {
        match text {
            "disable" => Some(SslMode::Disable),
            "require" => Some(SslMode::Require),
            "verify-ca" => Some(SslMode::VerifyCa),
            "verify-full" => Some(SslMode::VerifyFull),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// libpq's `channel_binding`: whether the SCRAM login is tied to the TLS
/// channel (`SCRAM-SHA-256-PLUS`), so a server in the middle cannot relay it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelBinding {
    Disable,
    #[default]
    Prefer,
    Require,
}

impl ChannelBinding {
    pub fn parse(text: &str) -> Option<ChannelBinding> {
        match text {
            "disable" => Some(ChannelBinding::Disable),
            "prefer" => Some(ChannelBinding::Prefer),
            "require" => Some(ChannelBinding::Require),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelBinding::Disable => "disable",
            ChannelBinding::Prefer => "prefer",
            ChannelBinding::Require => "require",
        }
    }
}

/// Where and as whom to connect.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: String,
    pub ssl_mode: SslMode,
    pub ssl_root_cert: Option<String>,
    /// The client certificate and key shown to servers that ask for one.
    pub client_identity: Option<tls::ClientIdentity>,
    pub channel_binding: ChannelBinding,
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("ssl_mode", &self.ssl_mode)
            .field("client_certificate", &self.client_identity.is_some())
            .finish_non_exhaustive()
    }
}

impl Target {
    fn pg_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .dbname(&self.dbname)
            .user(&self.user)
            .password(&self.password)
            .application_name("pgsecrets")
            .connect_timeout(self.connect_timeout)
            .channel_binding(match self.channel_binding {
                ChannelBinding::Disable => tokio_postgres::config::ChannelBinding::Disable,
                ChannelBinding::Prefer => tokio_postgres::config::ChannelBinding::Prefer,
                ChannelBinding::Require => tokio_postgres::config::ChannelBinding::Require,
            })
            .ssl_mode(match self.ssl_mode {
                SslMode::Disable => PgSslMode::Disable,
                _ => PgSslMode::Require,
            });
        config
    }

    fn tls(&self) -> Result<MakeRustlsConnect, Error> {
        let config = tls::client_config(
            self.ssl_mode,
            self.ssl_root_cert.as_deref(),
            self.client_identity.as_ref(),
        )?
        .unwrap_or_else(|| {
            // Never used with sslmode=disable; tokio-postgres wants a type.
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("default protocol versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
        });
        Ok(MakeRustlsConnect::new(config))
    }

    /// The same target in another database.
    pub fn in_database(&self, dbname: &str) -> Target {
        Target {
            dbname: dbname.to_string(),
            ..self.clone()
        }
    }

    /// The same target as another user.
    pub fn as_user(&self, user: &str, password: &str) -> Target {
        Target {
            user: user.to_string(),
            password: password.to_string(),
            ..self.clone()
        }
    }

    /// One connection, its driver task spawned; bounded by the connect timeout.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, Error> {
        let connector = self.connector()?;
        let config = self.pg_config();
        let attempt = connector.open(&config);
        match tokio::time::timeout(self.connect_timeout + Duration::from_secs(1), attempt).await {
            Err(_) => Err(Error::Timeout {
                host: self.host.clone(),
                port: self.port,
            }),
            Ok(Err(e)) => Err(Error::from_pg(e, self)),
            Ok(Ok((client, _driver))) => Ok(client),
        }
    }

    fn connector(&self) -> Result<GuardedConnector, Error> {
        Ok(GuardedConnector {
            host: self.host.clone(),
            port: self.port,
            ssl_mode: self.ssl_mode,
            tls: self.tls()?,
            connect_timeout: self.connect_timeout,
        })
    }

    /// A pool of connections to this target.
    pub fn pool(&self, max_size: usize, wait: Duration) -> Result<Pool, Error> {
        let manager = Manager::from_connect(
            self.pg_config(),
            self.connector()?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(max_size.max(1))
            .wait_timeout(Some(wait))
            .create_timeout(Some(self.connect_timeout + Duration::from_secs(1)))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Connection(e.to_string()))
    }
}

/// Opens connections through the auth guard (see `auth_guard`), for single
/// connections and pools alike.
struct GuardedConnector {
    host: String,
    port: u16,
    ssl_mode: SslMode,
    tls: MakeRustlsConnect,
    connect_timeout: Duration,
}

type Opened = (tokio_postgres::Client, JoinHandle<()>);

impl GuardedConnector {
    async fn open(&self, config: &tokio_postgres::Config) -> Result<Opened, tokio_postgres::Error> {
        let socket = LazyTcp::new(&self.host, self.port, self.connect_timeout);
        // Only a certificate checked against the host name vouches for the
        // server enough to hand it a password it could replay.
        let allow_password = self.ssl_mode == SslMode::VerifyFull;
        match self.ssl_mode {
            SslMode::Disable => {
                let stream = Guarded::new(socket, allow_password);
                let (client, connection) = config.connect_raw(stream, NoTls).await?;
                Ok((client, drive(connection)))
            }
            _ => {
                let tls = GuardedTls {
                    make: self.tls.clone(),
                    host: self.host.clone(),
                    allow_password,
                };
                let socket = tls::WatchAnswer::new(socket);
                let (client, connection) = config.connect_raw(socket, tls).await?;
                Ok((client, drive(connection)))
            }
        }
    }
}

/// Spawns a connection's driver task.
fn drive<S, T>(connection: tokio_postgres::Connection<S, T>) -> JoinHandle<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    })
}

impl deadpool_postgres::Connect for GuardedConnector {
    fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> Pin<Box<dyn Future<Output = Result<Opened, tokio_postgres::Error>> + Send + '_>> {
        let config = config.clone();
        Box::pin(async move { self.open(&config).await })
    }
}
