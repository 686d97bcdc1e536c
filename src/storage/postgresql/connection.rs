//! How the postgresql backend reaches its database: the settings (the
//! connection URL, kept out of logs), the runtime its connections live on,
//! and errors that name the server (host:port) but never the password.
//!
//! The backend's connections (the data pool and the lock connection) run on
//! a small tokio runtime of their own. The [`crate::storage::Backend`] trait
//! is synchronous and is called from the blocking pool, from plain threads
//! (tests, `operator init`) and, for reads and writes, from async tasks; a
//! private runtime serves all three the same way: async callers await a task
//! spawned on it, blocking callers wait for one. It also keeps the lock
//! connection's I/O off the server's runtime, so a busy server cannot delay
//! a lock renewal.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};

use crate::storage::Error;

/// `lock_ttl` when the config names none (issue 19: 10 s).
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(10);
/// Environment variable that supplies the connection URL, like Vault's
/// `VAULT_PG_CONNECTION_URL`; it wins over the file's `connection_url`.
pub const CONNECTION_URL_ENV: &str = "PGSECRETS_PG_CONNECTION_URL";
/// Names the backend runtime's worker threads.
const THREAD_NAME: &str = "pgsecrets-pg-storage";
/// Connecting gives up after this long, so a start-up retry loop logs.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A PostgreSQL connection URL. Its password must never reach a log, an
/// error or a `Debug` dump of the config, so `Debug` shows host and port
/// only.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionUrl(String);

impl ConnectionUrl {
    pub fn new(url: impl Into<String>) -> ConnectionUrl {
        ConnectionUrl(url.into())
    }

    /// The URL in full, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match parse(self) {
            Ok(config) => write!(f, "ConnectionUrl({})", address(&config)),
            Err(_) => f.write_str("ConnectionUrl(<invalid>)"),
        }
    }
}

/// `[storage] backend = "postgresql"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub connection_url: ConnectionUrl,
    /// Whether writes carry the HA fence (see [`super::lock`]). Without it
    /// the backend writes unfenced, as a single server does.
    pub ha_enabled: bool,
    /// How long an acquired or renewed lock lasts, by the database clock.
    pub lock_ttl: Duration,
}

impl Settings {
    pub fn new(connection_url: impl Into<String>) -> Settings {
        Settings {
            connection_url: ConnectionUrl::new(connection_url),
            ha_enabled: false,
            lock_ttl: DEFAULT_LOCK_TTL,
        }
    }
}

/// Parses the URL. The error never quotes it: the password is in it.
pub(super) fn parse(url: &ConnectionUrl) -> Result<tokio_postgres::Config, Error> {
    let mut config = tokio_postgres::Config::from_str(url.expose()).map_err(|_| {
        Error::PostgresConfig(
            "storage.connection_url is not a valid PostgreSQL URL \
             (postgres://user:password@host:port/database)"
                .into(),
        )
    })?;
    if config.get_hosts().is_empty() {
        return Err(Error::PostgresConfig(
            "storage.connection_url names no host".into(),
        ));
    }
    // TLS to the storage database is not built yet (the `postgres` module's
    // TLS code is a layer the storage may not use); refuse rather than
    // silently connect in clear when TLS was demanded.
    if config.get_ssl_mode() == SslMode::Require {
        return Err(Error::PostgresConfig(format!(
            "storage.connection_url for {}: sslmode=require is not supported by the postgresql storage yet",
            address(&config)
        )));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(config)
}

/// `host:port` of the first host, for messages.
pub(super) fn address(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// Turns a driver error into a storage error naming `addr`. Server errors
/// keep their message and SQLSTATE (PostgreSQL never echoes a password);
/// anything else is "unreachable", which start-up retries.
pub(super) fn pg_error(addr: &str, password: &str, e: &tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => Error::Postgres {
            addr: addr.to_owned(),
            message: scrub(
                &format!("{} (SQLSTATE {})", db.message(), db.code().code()),
                password,
            ),
        },
        None => Error::PostgresUnreachable {
            addr: addr.to_owned(),
            message: scrub(&e.to_string(), password),
        },
    }
}

pub(super) fn pool_error(addr: &str, password: &str, e: &deadpool_postgres::PoolError) -> Error {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(addr, password, e),
        other => Error::PostgresUnreachable {
            addr: addr.to_owned(),
            message: scrub(&other.to_string(), password),
        },
    }
}

/// Belt and braces: no message leaves with the password in it, whatever a
/// driver puts there.
fn scrub(message: &str, password: &str) -> String {
    if password.is_empty() {
        message.to_owned()
    } else {
        message.replace(password, "<redacted>")
    }
}

/// The runtime the backend's connections live on (see the module docs).
pub(super) struct PgRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl PgRuntime {
    pub(super) fn start() -> Result<PgRuntime, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(THREAD_NAME)
            .enable_all()
            .build()?;
        Ok(PgRuntime {
            runtime: Some(runtime),
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        // Taken only in `drop`.
        self.runtime.as_ref().expect("runtime present").handle()
    }

    /// Runs `work` on this runtime; the returned future may be awaited on
    /// any runtime.
    pub(super) fn run<T, F>(&self, work: F) -> impl Future<Output = Result<T, Error>> + Send
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Error>> + Send + 'static,
    {
        let task = self.handle().spawn(work);
        async move { task.await.map_err(|e| Error::TaskJoin(e.to_string()))? }
    }

    /// Runs `work` on this runtime and blocks the calling thread until it
    /// is done. For the synchronous trait methods, which run on the blocking
    /// pool or plain threads (never on this runtime's own workers).
    pub(super) fn block<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Error>> + Send + 'static,
    {
        if std::thread::current().name() == Some(THREAD_NAME) {
            // Waiting here would hold the very worker the work needs.
            return Err(Error::TaskJoin(
                "a blocking postgresql storage call was made on the storage runtime".into(),
            ));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle().spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.recv()
            .map_err(|_| Error::TaskJoin("the postgresql storage runtime stopped".into()))?
    }
}

impl Drop for PgRuntime {
    /// The backend may be dropped on an async task, where a blocking
    /// shutdown would panic; connections close as their tasks are dropped.
    fn drop(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        // The last reference can go with a task on this runtime (its caller
        // stopped waiting); a runtime is not shut down from its own worker.
        if std::thread::current().name() == Some(THREAD_NAME) {
            std::thread::spawn(move || runtime.shutdown_background());
        } else {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_errors_never_show_the_password() {
        let url = ConnectionUrl::new("postgres://app:s3cret-pw@db.example:6543/pgsecrets");
        let shown = format!("{:?}", Settings::new(url.expose()));
        assert!(shown.contains("db.example:6543"), "{shown}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        let bad = ConnectionUrl::new("postgres://app:s3cret-pw@db.example:notaport/x");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(!e.contains("s3cret-pw"), "{e}");
        assert!(format!("{bad:?}").contains("<invalid>"));
        let tls = ConnectionUrl::new("postgres://app:s3cret-pw@db.example/x?sslmode=require");
        let e = parse(&tls).unwrap_err().to_string();
        assert!(
            e.contains("db.example:5432") && !e.contains("s3cret-pw"),
            "{e}"
        );
    }
}
