//! The HA lock: which node is active, decided in the database, timed by
//! the database clock only (no node's clock is trusted), with a fence every
//! write carries (issue 19, item 2).
//!
//! The lock is the one row of `pgsecrets_ha_lock` (created by the
//! migration, never inserted here).
//! - Acquire: `UPDATE … SET epoch = nextval(…) … WHERE expires_at < now()`,
//!   so at most one node wins, and the winner's epoch is higher than every
//!   earlier one (a sequence never goes back).
//! - Renew: `… WHERE holder = me AND epoch = mine AND expires_at > now()`:
//!   an expired, taken-over or deleted lock is never revived or inserted
//!   (openbao/openbao#2097).
//! - Fence: acquiring sets `(holder, epoch)` as the fence the backend's
//!   writes carry in their own statements (see `FENCE` in the backend).
//! - Fast path: the holder keeps a session advisory lock keyed by its epoch
//!   on the lock connection. A standby that can take that advisory lock
//!   knows the holder's session is gone and may take over at once, with a
//!   compare-and-set on the epoch, instead of waiting out the TTL.
//!
//! The lock has its own connection, never queued behind the data pool, and
//! it must be a real session (not a transaction-mode pooler): the advisory
//! lock lives as long as the session does.
//!
//! This is the storage level only: when to renew, when to step down and
//! what to do on becoming active is the server's HA layer's business.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::Shared;
use crate::storage::Error;

/// First key of the fast path's two-key advisory locks (`pg_advisory_lock(int,
/// int)`, a key space apart from the migration's one-key lock): "pgHA".
const FAST_PATH_SPACE: i32 = 0x7067_4841;

/// How long one lock call (acquire, renew, …) may take (issue 19: a 2 s
/// timeout per renewal attempt). A call that times out drops the session:
/// one in an unknown state cannot prove it still holds the lock.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// What writes carry to prove they come from the lock's current holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub holder: String,
    pub epoch: i64,
}

/// The lock row as read by [`HaLock::current_leader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub holder: String,
    pub epoch: i64,
    /// Unexpired by the database clock.
    pub live: bool,
    /// Since when this holder is active (Unix milliseconds, database clock).
    pub active_since_ms: Option<i64>,
    pub api_addr: String,
    pub cluster_addr: String,
}

/// The lock connection and what this node holds through it.
struct Session {
    client: Option<Client>,
    /// The epoch held; its advisory lock lives in `client`'s session.
    held: Option<i64>,
}

pub struct HaLock {
    shared: Arc<Shared>,
    /// This node's name in the lock row: random per backend, so two nodes
    /// (or two backends in one test) never share one.
    holder: String,
    ttl_seconds: f64,
    session: Arc<tokio::sync::Mutex<Session>>,
}

/// The low 32 bits of the epoch: the advisory lock key is two `int4`s.
/// Epochs 2^32 apart share a key; a node lives through nowhere near that
/// many takeovers.
fn epoch_key(epoch: i64) -> i32 {
    epoch as i32
}

impl HaLock {
    pub(super) fn new(shared: Arc<Shared>, ttl: Duration) -> HaLock {
        HaLock {
            shared,
            holder: uuid::Uuid::new_v4().to_string(),
            ttl_seconds: ttl.as_secs_f64(),
            session: Arc::new(tokio::sync::Mutex::new(Session {
                client: None,
                held: None,
            })),
        }
    }

    /// This node's name in the lock row.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The `application_name` of the lock connection (for operators, and
    /// tests that cut it).
    pub fn application_name(&self) -> String {
        format!("pgsecrets-lock {}", self.holder)
    }

    /// Runs `work` on the backend's runtime with the lock session.
    async fn with_session<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(Ctx<'a>) -> futures_box::BoxFuture<'a, Result<T, Error>> + Send + 'static,
    {
        let (shared, session) = (Arc::clone(&self.shared), Arc::clone(&self.session));
        let (holder, ttl, app) = (
            self.holder.clone(),
            self.ttl_seconds,
            self.application_name(),
        );
        self.shared
            .runtime
            .run(async move {
                let mut session = session.lock().await;
                connect(&shared, &mut session, &app).await?;
                let ctx = Ctx {
                    shared: &shared,
                    session: &mut session,
                    holder: &holder,
                    ttl,
                };
                match tokio::time::timeout(CALL_TIMEOUT, work(ctx)).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        drop_session(&shared, &mut session);
                        Err(Error::PostgresUnreachable {
                            addr: shared.addr.clone(),
                            message: format!(
                                "the HA lock call took longer than {CALL_TIMEOUT:?}; its session was dropped"
                            ),
                        })
                    }
                }
            })
            .await
    }

    /// Takes the lock if it has expired; `Some(epoch)` when this node now
    /// holds it (or already did), and the backend's writes carry its fence.
    pub async fn acquire(&self, api_addr: &str, cluster_addr: &str) -> Result<Option<i64>, Error> {
        let (api, cluster) = (api_addr.to_owned(), cluster_addr.to_owned());
        self.with_session(move |ctx| Box::pin(ctx.acquire(api, cluster)))
            .await
    }

    /// Extends the held lock by the TTL from the database's now. Fails with
    /// [`Error::LockLost`] (and clears the fence) when the lock expired, was
    /// taken over or removed, or the session holding it was lost.
    pub async fn renew(&self) -> Result<(), Error> {
        self.with_session(|ctx| Box::pin(ctx.renew())).await
    }

    /// Gives the lock up: the fence is cleared first, so no write starts
    /// under it, then the row is left expired for the next node.
    pub async fn release(&self) -> Result<(), Error> {
        self.with_session(|ctx| Box::pin(ctx.release())).await
    }

    /// The lock row, unless nobody ever held it (or it was released or
    /// removed).
    pub async fn current_leader(&self) -> Result<Option<Leader>, Error> {
        self.with_session(|ctx| Box::pin(ctx.current_leader()))
            .await
    }

    /// The fast path: if the holder's session is gone (its advisory lock is
    /// free) the lock is taken over at once, whatever its expiry, by a
    /// compare-and-set on the epoch seen. `Some(epoch)` when taken.
    pub async fn take_over_if_holder_gone(
        &self,
        api_addr: &str,
        cluster_addr: &str,
    ) -> Result<Option<i64>, Error> {
        let (api, cluster) = (api_addr.to_owned(), cluster_addr.to_owned());
        self.with_session(move |ctx| Box::pin(ctx.take_over(api, cluster)))
            .await
    }

    /// Records this node in `pgsecrets_ha_members` (last seen: now).
    pub async fn announce(&self, api_addr: &str, cluster_addr: &str) -> Result<(), Error> {
        let (api, cluster) = (api_addr.to_owned(), cluster_addr.to_owned());
        self.with_session(move |ctx| Box::pin(ctx.announce(api, cluster)))
            .await
    }
}

/// A boxed future borrowing the session (std has no alias for it).
mod futures_box {
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

/// (Re)connects the lock session. A session that was lost while holding the
/// lock lost its advisory lock with it, so the lock counts as lost too.
async fn connect(shared: &Shared, session: &mut Session, app: &str) -> Result<(), Error> {
    if session.client.as_ref().is_some_and(|c| !c.is_closed()) {
        return Ok(());
    }
    drop_session(shared, session);
    let mut config = shared.pg_config.clone();
    config.application_name(app);
    let (client, conn) = config.connect(NoTls).await.map_err(|e| shared.pg(&e))?;
    tokio::spawn(conn);
    session.client = Some(client);
    Ok(())
}

/// Forgets the lock session; if it held the lock, the lock (and the fence)
/// go with it, since its advisory lock ends with the session.
fn drop_session(shared: &Shared, session: &mut Session) {
    session.client = None;
    if session.held.take().is_some() {
        shared.set_fence(None);
        tracing::warn!("the HA lock session was lost: this node no longer holds the lock");
    }
}

struct Ctx<'a> {
    shared: &'a Shared,
    session: &'a mut Session,
    holder: &'a str,
    ttl: f64,
}

impl Ctx<'_> {
    fn client(&mut self) -> &mut Client {
        // `connect` ran before any Ctx is built.
        self.session
            .client
            .as_mut()
            .expect("lock session connected")
    }

    fn lost(&mut self) -> Error {
        self.session.held = None;
        self.shared.set_fence(None);
        Error::LockLost
    }

    /// The UPDATE that claims the lock (`condition` picks which row state
    /// may be claimed) and the advisory lock for its epoch, in one
    /// transaction: no standby can see the new epoch before its advisory
    /// lock is held, so none mistakes a fresh holder for a dead one.
    async fn claim(&mut self, condition: &str, params: Claim) -> Result<Option<i64>, Error> {
        let shared = self.shared;
        let pg = |e: tokio_postgres::Error| shared.pg(&e);
        let sql = format!(
            "UPDATE pgsecrets_ha_lock
                SET holder = $1, epoch = nextval('pgsecrets_ha_epoch'),
                    expires_at = now() + make_interval(secs => $2),
                    active_since = now(), api_addr = $3, cluster_addr = $4
              WHERE {condition}
          RETURNING epoch"
        );
        let (holder, ttl) = (self.holder.to_owned(), self.ttl);
        let tx = self.client().transaction().await.map_err(pg)?;
        let row = match params.seen_epoch {
            None => {
                tx.query_opt(&sql, &[&holder, &ttl, &params.api, &params.cluster])
                    .await
            }
            Some(seen) => {
                tx.query_opt(&sql, &[&holder, &ttl, &params.api, &params.cluster, &seen])
                    .await
            }
        }
        .map_err(pg)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(pg)?;
            return Ok(None);
        };
        let epoch: i64 = row.get(0);
        tx.execute(
            "SELECT pg_advisory_lock($1, $2)",
            &[&FAST_PATH_SPACE, &epoch_key(epoch)],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        self.session.held = Some(epoch);
        self.shared.set_fence(Some(super::Fence { holder, epoch }));
        tracing::info!(epoch, "acquired the HA lock");
        Ok(Some(epoch))
    }

    async fn acquire(mut self, api: String, cluster: String) -> Result<Option<i64>, Error> {
        if let Some(epoch) = self.session.held {
            return match self.renew_held(epoch).await {
                Ok(()) => Ok(Some(epoch)),
                Err(Error::LockLost) => Ok(None),
                Err(e) => Err(e),
            };
        }
        self.claim(
            "expires_at < now()",
            Claim {
                api,
                cluster,
                seen_epoch: None,
            },
        )
        .await
    }

    async fn renew(mut self) -> Result<(), Error> {
        let Some(epoch) = self.session.held else {
            return Err(Error::LockLost);
        };
        self.renew_held(epoch).await
    }

    async fn renew_held(&mut self, epoch: i64) -> Result<(), Error> {
        let shared = self.shared;
        let (holder, ttl) = (self.holder.to_owned(), self.ttl);
        let renewed = self
            .client()
            .execute(
                "UPDATE pgsecrets_ha_lock SET expires_at = now() + make_interval(secs => $3)
                  WHERE holder = $1 AND epoch = $2 AND expires_at > now()",
                &[&holder, &epoch, &ttl],
            )
            .await
            .map_err(|e| shared.pg(&e))?;
        if renewed == 1 {
            return Ok(());
        }
        self.unlock(epoch).await;
        tracing::warn!(
            epoch,
            "the HA lock was lost (expired, taken over or removed)"
        );
        Err(self.lost())
    }

    /// Drops the advisory lock of `epoch`; a failure only means the session
    /// is going, which drops it as well.
    async fn unlock(&mut self, epoch: i64) {
        let _ = self
            .client()
            .execute(
                "SELECT pg_advisory_unlock($1, $2)",
                &[&FAST_PATH_SPACE, &epoch_key(epoch)],
            )
            .await;
    }

    async fn release(mut self) -> Result<(), Error> {
        let Some(epoch) = self.session.held else {
            return Ok(());
        };
        let _ = self.lost();
        let shared = self.shared;
        let holder = self.holder.to_owned();
        self.client()
            .execute(
                "UPDATE pgsecrets_ha_lock SET holder = '', expires_at = '-infinity'
                  WHERE holder = $1 AND epoch = $2",
                &[&holder, &epoch],
            )
            .await
            .map_err(|e| shared.pg(&e))?;
        self.unlock(epoch).await;
        tracing::info!(epoch, "released the HA lock");
        Ok(())
    }

    async fn current_leader(mut self) -> Result<Option<Leader>, Error> {
        let shared = self.shared;
        let row = self
            .client()
            .query_opt(
                "SELECT holder, epoch, expires_at > now(),
                        (extract(epoch FROM active_since) * 1000)::bigint,
                        api_addr, cluster_addr
                   FROM pgsecrets_ha_lock WHERE holder <> ''",
                &[],
            )
            .await
            .map_err(|e| shared.pg(&e))?;
        Ok(row.map(|r| Leader {
            holder: r.get(0),
            epoch: r.get(1),
            live: r.get(2),
            active_since_ms: r.get(3),
            api_addr: r.get(4),
            cluster_addr: r.get(5),
        }))
    }

    async fn take_over(mut self, api: String, cluster: String) -> Result<Option<i64>, Error> {
        if self.session.held.is_some() {
            return Ok(None);
        }
        let shared = self.shared;
        let pg = |e: tokio_postgres::Error| shared.pg(&e);
        let Some(row) = self
            .client()
            .query_opt(
                "SELECT epoch FROM pgsecrets_ha_lock WHERE holder <> ''",
                &[],
            )
            .await
            .map_err(pg)?
        else {
            return Ok(None);
        };
        let seen: i64 = row.get(0);
        let free: bool = self
            .client()
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&FAST_PATH_SPACE, &epoch_key(seen)],
            )
            .await
            .map_err(pg)?
            .get(0);
        if !free {
            return Ok(None);
        }
        // The holder's session is gone. The compare-and-set on the epoch
        // loses to anyone who claimed the lock since it was read.
        let claimed = self
            .claim(
                "epoch = $5",
                Claim {
                    api,
                    cluster,
                    seen_epoch: Some(seen),
                },
            )
            .await;
        self.unlock(seen).await;
        if let Ok(Some(epoch)) = claimed {
            tracing::warn!(
                old_epoch = seen,
                epoch,
                "the HA lock holder's session was gone: took the lock over"
            );
        }
        claimed
    }

    async fn announce(mut self, api: String, cluster: String) -> Result<(), Error> {
        let shared = self.shared;
        let holder = self.holder.to_owned();
        self.client()
            .execute(
                "INSERT INTO pgsecrets_ha_members (holder, api_addr, cluster_addr, last_seen)
                 VALUES ($1, $2, $3, now())
                 ON CONFLICT (holder) DO UPDATE
                    SET api_addr = excluded.api_addr, cluster_addr = excluded.cluster_addr,
                        last_seen = now()",
                &[&holder, &api, &cluster],
            )
            .await
            .map_err(|e| shared.pg(&e))?;
        Ok(())
    }
}

/// What a claim writes into the row, and for the fast path the epoch it
/// must still find there.
struct Claim {
    api: String,
    cluster: String,
    seen_epoch: Option<i64>,
}
