//! The postgresql backend: the ordered key-value store in a PostgreSQL
//! database several pgsecrets servers share (DESIGN §5, issue 19).
//!
//! Values arrive sealed by the barrier, so the database holds ciphertext
//! only; keys are stored as `bytea`, so list and scan order is the byte
//! order of the embedded backends. The schema is created and upgraded by
//! [`schema`]; the HA lock and the fence every write carries are in
//! [`lock`]; the connection settings, the runtime the connections live on
//! and password-free errors are in [`connection`].
//!
//! Reads and writes use a small pool of data connections; the HA lock has a
//! connection of its own, so a lock renewal never queues behind data work
//! (hashicorp/vault#17643).

mod connection;
mod kv;
pub mod lock;
mod schema;

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

pub use connection::{ConnectionUrl, Settings, CONNECTION_URL_ENV, DEFAULT_LOCK_TTL};
pub use lock::{Fence, HaLock, Leader};
pub use schema::SCHEMA_VERSION;

use super::{Backend, Error, Op, ReadFuture, WriteFuture};
use connection::{address, parse, pg_error, pool_error, PgRuntime};

/// Data connections: enough for concurrent requests, few enough that
/// several nodes stay well under `max_connections`.
const POOL_SIZE: usize = 8;
/// How long a request waits for a free data connection.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// Start-up retries wait at most this long between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Whether writes carry the HA fence.
#[derive(Debug)]
enum Fencing {
    /// `ha_enabled = false`: one server, writes unfenced.
    Off,
    /// `ha_enabled = true`: writes need the fence of a held lock; `None`
    /// (not active, or leadership lost) fails them.
    Required(Option<Fence>),
}

/// What the backend and its [`HaLock`] share.
struct Shared {
    pool: Pool,
    pg_config: tokio_postgres::Config,
    /// `host:port`, for messages.
    addr: String,
    /// Only to scrub messages (see [`connection::pg_error`]).
    password: String,
    fencing: RwLock<Fencing>,
    /// Last, so the connections above close before it stops.
    runtime: PgRuntime,
}

impl Shared {
    fn pg(&self, e: &tokio_postgres::Error) -> Error {
        pg_error(&self.addr, &self.password, e)
    }

    /// The fence a write must carry: `Ok(None)` when unfenced.
    fn fence(&self) -> Result<Option<Fence>, Error> {
        match &*self.fencing.read().unwrap_or_else(PoisonError::into_inner) {
            Fencing::Off => Ok(None),
            Fencing::Required(Some(fence)) => Ok(Some(fence.clone())),
            Fencing::Required(None) => Err(Error::Fenced),
        }
    }

    fn set_fence(&self, fence: Option<Fence>) {
        let mut fencing = self.fencing.write().unwrap_or_else(PoisonError::into_inner);
        if let Fencing::Required(slot) = &mut *fencing {
            *slot = fence;
        }
    }

    async fn data(&self) -> Result<deadpool_postgres::Object, Error> {
        self.pool
            .get()
            .await
            .map_err(|e| pool_error(&self.addr, &self.password, &e))
    }
}

pub struct PgBackend {
    shared: Arc<Shared>,
    lock: Option<Arc<HaLock>>,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("addr", &self.shared.addr)
            .field("ha_enabled", &self.lock.is_some())
            .finish_non_exhaustive()
    }
}

impl PgBackend {
    /// Connects and migrates the schema, once.
    pub async fn connect(settings: &Settings) -> Result<PgBackend, Error> {
        let pg_config = parse(&settings.connection_url)?;
        let addr = address(&pg_config);
        let password = pg_config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let mut data_config = pg_config.clone();
        data_config.application_name("pgsecrets-storage");
        let manager = Manager::from_config(
            data_config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::PostgresConfig(format!("data pool for {addr}: {e}")))?;
        let fencing = if settings.ha_enabled {
            Fencing::Required(None)
        } else {
            Fencing::Off
        };
        let shared = Arc::new(Shared {
            pool,
            pg_config,
            addr,
            password,
            fencing: RwLock::new(fencing),
            runtime: PgRuntime::start()?,
        });
        let s = Arc::clone(&shared);
        shared
            .runtime
            .run(async move {
                // A connection of its own: the migration lock is held to
                // COMMIT and must not pin a pooled connection's state.
                let mut config = s.pg_config.clone();
                config.application_name("pgsecrets-migrate");
                let (mut client, conn) = config.connect(NoTls).await.map_err(|e| s.pg(&e))?;
                tokio::spawn(conn);
                let outcome = schema::migrate(&mut client).await.map_err(|e| s.pg(&e))?;
                outcome.into_result(&s.addr)
            })
            .await?;
        let lock = settings
            .ha_enabled
            .then(|| Arc::new(HaLock::new(Arc::clone(&shared), settings.lock_ttl)));
        Ok(PgBackend { shared, lock })
    }

    /// [`PgBackend::connect`], retried with capped exponential backoff while
    /// the database is unreachable (each attempt logged); other errors (bad
    /// password, a schema too new) are returned at once. `attempts: None`
    /// retries forever.
    pub async fn connect_retrying(
        settings: &Settings,
        attempts: Option<u32>,
    ) -> Result<PgBackend, Error> {
        let mut delay = Duration::from_millis(500);
        let mut attempt = 1u32;
        loop {
            match PgBackend::connect(settings).await {
                Err(e @ Error::PostgresUnreachable { .. })
                    if attempts.map_or(true, |max| attempt < max) =>
                {
                    tracing::warn!(error = %e, attempt, retry_in_ms = delay.as_millis() as u64, "postgresql storage unreachable; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// The HA lock, when `ha_enabled`: acquiring it sets the fence this
    /// backend's writes carry.
    pub fn ha_lock(&self) -> Option<Arc<HaLock>> {
        self.lock.clone()
    }

    /// Sets (or with `None` clears) the fence writes carry; for an HA layer
    /// that manages the lock itself. No effect without `ha_enabled`.
    pub fn set_fence(&self, fence: Option<Fence>) {
        self.shared.set_fence(fence);
    }

    /// `host:port` of the database.
    pub fn address(&self) -> &str {
        &self.shared.addr
    }
}

impl Backend for PgBackend {
    /// Blocks for a round trip: [`Storage`](super::Storage) reads through
    /// [`Backend::fetch`] instead, which awaits it (see there).
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let shared = Arc::clone(&self.shared);
        self.shared.runtime.block(kv::get(shared, key.to_owned()))
    }

    /// A read is a network round trip, not the quick local lookup `get`
    /// promises, so async callers await it on the backend's runtime
    /// instead of holding a server worker thread for it.
    fn fetch(self: Arc<Self>, key: String) -> ReadFuture {
        let shared = Arc::clone(&self.shared);
        Box::pin(self.shared.runtime.run(kv::get(shared, key)))
    }

    fn apply(&self, ops: &[Op]) -> Result<(), Error> {
        let shared = Arc::clone(&self.shared);
        self.shared.runtime.block(kv::apply(shared, ops.to_vec()))
    }

    fn submit(self: Arc<Self>, ops: Vec<Op>) -> WriteFuture {
        let shared = Arc::clone(&self.shared);
        Box::pin(self.shared.runtime.run(kv::apply(shared, ops)))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let shared = Arc::clone(&self.shared);
        self.shared
            .runtime
            .block(kv::list(shared, prefix.to_owned()))
    }

    fn scan(&self, start: &str, end: &str, limit: usize) -> Result<Vec<(String, Vec<u8>)>, Error> {
        if start >= end || limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let shared = Arc::clone(&self.shared);
        self.shared
            .runtime
            .block(kv::scan(shared, start.to_owned(), end.to_owned(), limit))
    }

    fn kind(&self) -> &'static str {
        "postgresql"
    }
}
