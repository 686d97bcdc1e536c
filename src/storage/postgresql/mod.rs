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
pub mod lock;
mod schema;

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

pub use connection::{ConnectionUrl, Settings, CONNECTION_URL_ENV, DEFAULT_LOCK_TTL};
pub use lock::{Fence, HaLock, Leader};
pub use schema::SCHEMA_VERSION;

use super::listing::{OneLevel, Step};
use super::{Backend, Error, Op, ReadFuture, WriteFuture};
use connection::{address, parse, pg_error, pool_error, PgRuntime};

/// Data connections: enough for concurrent requests, few enough that
/// several nodes stay well under `max_connections`.
const POOL_SIZE: usize = 8;
/// How long a request waits for a free data connection.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// Keys read per round trip while listing.
const LIST_CHUNK: i64 = 1000;
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
pub(crate) struct Shared {
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

/// The last op on each key wins, so a batch reduces to one upsert and one
/// delete statement; keys are distinct within each (an upsert may not
/// touch one row twice).
fn reduce(ops: Vec<Op>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut last: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Put { key, value } => last.insert(key, Some(value)),
            Op::Delete { key } => last.insert(key, None),
        };
    }
    let (mut put_keys, mut values, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
    for (key, value) in last {
        match value {
            Some(value) => {
                put_keys.push(key.into_bytes());
                values.push(value);
            }
            None => deletes.push(key.into_bytes()),
        }
    }
    (put_keys, values, deletes)
}

/// The fence, in the write's own statement: the lock row is read `FOR KEY
/// SHARE` and held to COMMIT, so a takeover (which changes `epoch`, a key
/// column) waits for this transaction, and a write after the takeover finds
/// no row and writes nothing. A check on another connection, or before
/// the write, would leave a window; this leaves none.
const FENCE: &str = "f AS (SELECT 1 FROM pgsecrets_ha_lock
                           WHERE holder = $1 AND epoch = $2 FOR KEY SHARE)";

fn upsert_sql(fenced: bool) -> String {
    let (with, params, from) = if fenced {
        (format!("WITH {FENCE}, "), ("$3", "$4"), "f, ")
    } else {
        ("WITH ".to_owned(), ("$1", "$2"), "")
    };
    let body = format!(
        "w AS (INSERT INTO pgsecrets_kv (key, value)
               SELECT t.k, t.v FROM {from}unnest({}::bytea[], {}::bytea[]) AS t(k, v)
               ON CONFLICT (key) DO UPDATE SET value = excluded.value
               RETURNING 1)",
        params.0, params.1
    );
    // The count of fence rows tells "fenced out" from "nothing to do".
    let tail = if fenced {
        "SELECT count(*) FROM f"
    } else {
        "SELECT 1::bigint"
    };
    format!("{with}{body} {tail}")
}

fn delete_sql(fenced: bool) -> String {
    if fenced {
        format!(
            "WITH {FENCE}, d AS (DELETE FROM pgsecrets_kv
                 WHERE key = ANY($3::bytea[]) AND EXISTS (SELECT 1 FROM f) RETURNING 1)
             SELECT count(*) FROM f"
        )
    } else {
        "WITH d AS (DELETE FROM pgsecrets_kv WHERE key = ANY($1::bytea[]) RETURNING 1)
         SELECT 1::bigint"
            .to_owned()
    }
}

async fn apply(shared: Arc<Shared>, ops: Vec<Op>) -> Result<(), Error> {
    if ops.is_empty() {
        return Ok(());
    }
    let fence = shared.fence()?;
    let (put_keys, values, deletes) = reduce(ops);
    let put_keys: Vec<&[u8]> = put_keys.iter().map(Vec::as_slice).collect();
    let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let deletes: Vec<&[u8]> = deletes.iter().map(Vec::as_slice).collect();
    let pg = |e: tokio_postgres::Error| shared.pg(&e);
    let mut client = shared.data().await?;
    // One transaction: all of the batch or none. A fenced-out statement
    // returns here and the dropped transaction rolls back.
    let tx = client.transaction().await.map_err(pg)?;
    let fenced = fence.is_some();
    let (holder, epoch) = fence.map_or((String::new(), 0), |f| (f.holder, f.epoch));
    if !put_keys.is_empty() {
        let stmt = tx.prepare_cached(&upsert_sql(fenced)).await.map_err(pg)?;
        let row = if fenced {
            tx.query_one(&stmt, &[&holder, &epoch, &put_keys, &values])
                .await
        } else {
            tx.query_one(&stmt, &[&put_keys, &values]).await
        }
        .map_err(pg)?;
        if row.get::<_, i64>(0) == 0 {
            return Err(Error::Fenced);
        }
    }
    if !deletes.is_empty() {
        let stmt = tx.prepare_cached(&delete_sql(fenced)).await.map_err(pg)?;
        let row = if fenced {
            tx.query_one(&stmt, &[&holder, &epoch, &deletes]).await
        } else {
            tx.query_one(&stmt, &[&deletes]).await
        }
        .map_err(pg)?;
        if row.get::<_, i64>(0) == 0 {
            return Err(Error::Fenced);
        }
    }
    tx.commit().await.map_err(pg)
}

fn utf8_key(raw: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(raw).map_err(|_| Error::Corrupt {
        key: String::from_utf8_lossy(raw).into_owned(),
        reason: "the stored key is not UTF-8".into(),
    })
}

async fn get(shared: Arc<Shared>, key: String) -> Result<Option<Vec<u8>>, Error> {
    let client = shared.data().await?;
    let stmt = client
        .prepare_cached("SELECT value FROM pgsecrets_kv WHERE key = $1")
        .await
        .map_err(|e| shared.pg(&e))?;
    let row = client
        .query_opt(&stmt, &[&key.as_bytes()])
        .await
        .map_err(|e| shared.pg(&e))?;
    Ok(row.map(|r| r.get(0)))
}

async fn list(shared: Arc<Shared>, prefix: String) -> Result<Vec<String>, Error> {
    let pg = |e: tokio_postgres::Error| shared.pg(&e);
    let mut client = shared.data().await?;
    let tx = client.transaction().await.map_err(pg)?;
    // One snapshot for every seek of the walk, as the embedded backends.
    tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(pg)?;
    let stmt = tx
        .prepare_cached("SELECT key FROM pgsecrets_kv WHERE key >= $1 ORDER BY key LIMIT $2")
        .await
        .map_err(pg)?;
    let mut walk = OneLevel::new(&prefix);
    let mut from = walk.start().to_owned();
    'seek: loop {
        let rows = tx
            .query(&stmt, &[&from.as_bytes(), &LIST_CHUNK])
            .await
            .map_err(pg)?;
        let full = rows.len() as i64 == LIST_CHUNK;
        for row in &rows {
            let key = utf8_key(row.get(0))?;
            match walk.visit(key) {
                Step::Next => {}
                Step::Seek(to) => {
                    from = to;
                    continue 'seek;
                }
                Step::Done => break 'seek,
            }
        }
        match rows.last() {
            // The next key after the last one read: the same bytes plus NUL.
            Some(last) if full => from = format!("{}\0", utf8_key(last.get(0))?),
            _ => break,
        }
    }
    let out = walk.finish();
    tx.commit().await.map_err(pg)?;
    Ok(out)
}

async fn scan(
    shared: Arc<Shared>,
    start: String,
    end: String,
    limit: i64,
) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let client = shared.data().await?;
    let stmt = client
        .prepare_cached(
            "SELECT key, value FROM pgsecrets_kv
             WHERE key >= $1 AND key < $2 ORDER BY key LIMIT $3",
        )
        .await
        .map_err(|e| shared.pg(&e))?;
    let rows = client
        .query(&stmt, &[&start.as_bytes(), &end.as_bytes(), &limit])
        .await
        .map_err(|e| shared.pg(&e))?;
    rows.iter()
        .map(|row| Ok((utf8_key(row.get(0))?.to_owned(), row.get(1))))
        .collect()
}

impl Backend for PgBackend {
    /// Blocks for a round trip: [`Storage`](super::Storage) reads through
    /// [`Backend::fetch`] instead, which awaits it (see there).
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let shared = Arc::clone(&self.shared);
        self.shared.runtime.block(get(shared, key.to_owned()))
    }

    /// A read is a network round trip, not the quick local lookup `get`
    /// promises, so async callers await it on the backend's runtime
    /// instead of holding a server worker thread for it.
    fn fetch(self: Arc<Self>, key: String) -> ReadFuture {
        let shared = Arc::clone(&self.shared);
        Box::pin(self.shared.runtime.run(get(shared, key)))
    }

    fn apply(&self, ops: &[Op]) -> Result<(), Error> {
        let shared = Arc::clone(&self.shared);
        self.shared.runtime.block(apply(shared, ops.to_vec()))
    }

    fn submit(self: Arc<Self>, ops: Vec<Op>) -> WriteFuture {
        let shared = Arc::clone(&self.shared);
        Box::pin(self.shared.runtime.run(apply(shared, ops)))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let shared = Arc::clone(&self.shared);
        self.shared.runtime.block(list(shared, prefix.to_owned()))
    }

    fn scan(&self, start: &str, end: &str, limit: usize) -> Result<Vec<(String, Vec<u8>)>, Error> {
        if start >= end || limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let shared = Arc::clone(&self.shared);
        self.shared
            .runtime
            .block(scan(shared, start.to_owned(), end.to_owned(), limit))
    }

    fn kind(&self) -> &'static str {
        "postgresql"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reduces_to_the_last_op_per_key() {
        let (keys, values, deletes) = reduce(vec![
            Op::put("a", "1"),
            Op::delete("a"),
            Op::put("b", "1"),
            Op::put("b", "2"),
            Op::delete("c"),
            Op::put("c", "3"),
        ]);
        assert_eq!(keys, [b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(values, [b"2".to_vec(), b"3".to_vec()]);
        assert_eq!(deletes, [b"a".to_vec()]);
    }
}
