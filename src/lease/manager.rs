//! The lease manager: records leases, renews and revokes them.
//! Revocation on expiry is in [`super::worker`].
//!
//! Revocation always wins. Everything that reads a lease to write it back
//! holds the lease's lock ([`super::lock`]), and a revocation asked for by
//! a request is recorded durably (`revoking`) before it is acknowledged or
//! started: a renewal, a retry or a restart then finds the mark, and no
//! write ever clears it. Revocation on expiry needs no mark: the lease's
//! expiry is already durable, and past it nothing renews the lease.
//!
//! Nothing is deleted from storage until the engine confirms the user is
//! gone, PostgreSQL refused to create it, or `revoke-force` is asked. A failed revocation is retried with
//! capped exponential backoff, forever; after [`IRREVOCABLE_AFTER`] failures
//! in a row the lease is also listed as irrevocable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::lock::{LeaseLock, LeaseLocks};
use super::{keys, ttl, Error, LeaseEntry, Revoker, TtlLimits};
use crate::logical::Clock;
use crate::storage::{Op, Storage};

/// Failures in a row after which a lease is reported as irrevocable.
pub const IRREVOCABLE_AFTER: u32 = 5;
/// Longest wait between two revocation attempts.
pub const MAX_BACKOFF: i64 = 30;
/// Revocations run at once by the expiry worker.
pub const PARALLELISM: usize = 16;
/// Leases (or index entries) read per scan.
pub const BATCH: usize = 512;
/// Due-index entries the expiry worker takes per round. A round waits for
/// its last revocation before the next scan (so it never meets its own
/// revocations in flight), and that tail leaves PostgreSQL part idle: a
/// round of a few thousand makes the tail rare. Entries are keys only, and
/// at most [`PARALLELISM`] leases are loaded at once.
pub const DUE_BATCH: usize = 4096;
/// When the worker takes up a revocation a request has started (seconds
/// from its start): only if that request's process died before finishing
/// it, since the request holds the lease's lock until it is done.
pub const ASKED_GRACE: i64 = 5;

const IRREVOCABLE: &str = "sys/expire/irrevocable/";

pub struct LeaseManager {
    pub(super) storage: Storage,
    revokers: RwLock<HashMap<String, Weak<dyn Revoker>>>,
    pub(super) notify: Notify,
    locks: LeaseLocks,
    /// The time leases are issued, renewed and expired by.
    pub clock: Clock,
    /// Expirations and their failures are counted here.
    pub telemetry: crate::telemetry::Telemetry,
    /// The expiry worker's memory of leases listed in a second that has
    /// begun but whose end has not come: due key -> (its second, the
    /// end in ms). Read before the lease itself, so a second of many
    /// ends is not read again at every wake within it.
    pub(super) not_yet: std::sync::Mutex<HashMap<String, (i64, i64)>>,
}

/// A lease stored before its user was created (see
/// [`LeaseManager::store_pending`]); settle it with what PostgreSQL said.
pub struct Pending<'a> {
    manager: &'a LeaseManager,
    lease_id: String,
    lock: LeaseLock<'a>,
}

impl Pending<'_> {
    /// The user exists: the lease is in force as stored.
    pub fn created(self) {}

    /// The creation certainly did not happen (its transaction rolled
    /// back): the lease goes.
    pub async fn not_created(self) -> Result<(), Error> {
        let manager = self.manager;
        match manager.get(&self.lease_id).await? {
            Some(lease) => manager.forget(&lease).await,
            None => Ok(()),
        }
    }

    /// Whether the user exists is unknown (the connection broke): the
    /// lease is revoked now, which drops the user if it does.
    pub async fn maybe_created(self) -> Result<(), Error> {
        let (manager, lease_id) = (self.manager, self.lease_id);
        drop(self.lock);
        manager.expire_now(&lease_id).await
    }
}

/// Why a lease is being revoked.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cause {
    /// The worker found it due at this time (unix milliseconds: expired,
    /// or a retry). Skipped if someone else works on the lease, or it was
    /// renewed meanwhile.
    Due(i64),
    /// A request asked for it: marked `revoking` first, then revoked,
    /// whatever the lease's times.
    Asked,
}

pub(super) fn backoff(failures: u32) -> i64 {
    2i64.saturating_pow(failures.min(16)).min(MAX_BACKOFF)
}

/// The lease id encoded in a due-index key.
pub(super) fn lease_of_due_key(key: &str) -> Option<(i64, String)> {
    let rest = key.strip_prefix(keys::DUE)?;
    let (time, escaped) = rest.split_once('/')?;
    Some((time.parse().ok()?, keys::unescape(escaped)))
}

/// A place among the revocations run at once ([`PARALLELISM`]), given back
/// as soon as PostgreSQL has answered: removing the lease afterwards is a
/// storage write that needs no connection, and holding the place through
/// it kept PostgreSQL a commit's wait short of busy on every revocation.
/// A failure is flagged before the place is given back, so a caller that
/// stops at the first failure starts nothing after it.
pub(super) struct Slot {
    pub permit: OwnedSemaphorePermit,
    pub failed: Option<Arc<AtomicBool>>,
}

impl Slot {
    fn release(self, ok: bool) {
        if let (false, Some(failed)) = (ok, &self.failed) {
            failed.store(true, Ordering::SeqCst);
        }
        drop(self.permit);
    }
}

impl LeaseManager {
    pub fn new(storage: Storage) -> Arc<LeaseManager> {
        LeaseManager::with_clock(storage, Clock::default())
    }

    /// A manager reading `clock` (tests advance it instead of sleeping).
    pub fn with_clock(storage: Storage, clock: Clock) -> Arc<LeaseManager> {
        LeaseManager::with_telemetry(storage, clock, Default::default())
    }

    /// A manager reading `clock` and counting into `telemetry`.
    pub fn with_telemetry(
        storage: Storage,
        clock: Clock,
        telemetry: crate::telemetry::Telemetry,
    ) -> Arc<LeaseManager> {
        Arc::new(LeaseManager {
            storage,
            revokers: RwLock::new(HashMap::new()),
            notify: Notify::new(),
            locks: LeaseLocks::default(),
            clock,
            telemetry,
            not_yet: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Connects a mount's engine (held weakly: the engine owns the manager).
    pub fn register(&self, mount: &str, revoker: Weak<dyn Revoker>) {
        self.revokers
            .write()
            .expect("revokers")
            .insert(mount.to_string(), revoker);
    }

    pub fn unregister(&self, mount: &str) {
        self.revokers.write().expect("revokers").remove(mount);
    }

    pub(super) fn revoker(&self, mount: &str) -> Result<Arc<dyn Revoker>, Error> {
        self.revokers
            .read()
            .expect("revokers")
            .get(mount)
            .and_then(Weak::upgrade)
            .ok_or_else(|| Error::NoBackend(mount.to_string()))
    }

    /// Stores `lease` (with its index entries) durably before its user is
    /// created: the lease is the record of the intent, so a crash at any
    /// later point leaves the user tracked. The lease stays locked until
    /// the returned [`Pending`] is settled, so a revocation or renewal
    /// waits for the creation to finish.
    pub async fn store_pending(&self, lease: &LeaseEntry) -> Result<Pending<'_>, Error> {
        // Lease ids end in fresh random characters: the lock is free.
        let lock = self
            .locks
            .try_lock(&lease.lease_id)
            .ok_or_else(|| Error::IdInUse(lease.lease_id.clone()))?;
        let mut ops = vec![
            Op::put(
                keys::lease(&lease.lease_id),
                serde_json::to_vec(lease).expect("lease serialises"),
            ),
            Op::put(keys::due(lease.due, &lease.lease_id), Vec::new()),
        ];
        if let Some(token) = &lease.token_hash {
            ops.push(Op::put(keys::token(token, &lease.lease_id), Vec::new()));
        }
        // No wake-up for the worker: the lease falls due at least a second
        // from now, and the worker looks at least once a second.
        self.storage.apply(ops).await?;
        Ok(Pending {
            manager: self,
            lease_id: lease.lease_id.clone(),
            lock,
        })
    }

    /// Writes that store `lease` and move its due-index entry from `old_due`.
    pub(super) fn reschedule(lease: &LeaseEntry, old_due: i64) -> Vec<Op> {
        let mut ops = vec![Op::put(
            keys::lease(&lease.lease_id),
            serde_json::to_vec(lease).expect("lease serialises"),
        )];
        if old_due != lease.due {
            ops.push(Op::delete(keys::due(old_due, &lease.lease_id)));
        }
        ops.push(Op::put(keys::due(lease.due, &lease.lease_id), Vec::new()));
        ops
    }

    pub async fn get(&self, lease_id: &str) -> Result<Option<LeaseEntry>, Error> {
        if lease_id.is_empty() || lease_id.ends_with('/') {
            return Ok(None);
        }
        Ok(self.storage.get_json(&keys::lease(lease_id)).await?)
    }

    /// Whether a lease is past its failure threshold.
    pub fn is_irrevocable(lease: &LeaseEntry) -> bool {
        lease.failures >= IRREVOCABLE_AFTER
    }

    /// Renews a lease from now by `increment` (0 = the default TTL).
    /// Returns the lease as renewed, its new TTL and any cap warning.
    pub async fn renew(
        &self,
        lease_id: &str,
        increment: u64,
    ) -> Result<(LeaseEntry, u64, Option<String>), Error> {
        if lease_id.is_empty() {
            return Err(Error::MissingLeaseId);
        }
        let _lock = self.locks.lock(lease_id).await;
        let mut lease = self.get(lease_id).await?.ok_or(Error::NotFound)?;
        // Read after the lock: a wait for it does not count as time left.
        let now_ms = self.clock.now_ms();
        if lease.revoking {
            return Err(if Self::is_irrevocable(&lease) {
                Error::Irrevocable
            } else {
                Error::Revoking
            });
        }
        if lease.end_ms() <= now_ms {
            return Err(Error::Expired);
        }
        if ttl::remaining(lease.max_end, now_ms) == 0 {
            return Err(Error::PastMaxTtl);
        }
        let revoker = self.revoker(&lease.mount)?;
        let limits: TtlLimits = revoker.renew_limits(&lease).await?;
        let (new_ttl, warning) = ttl::renew(&limits, increment, now_ms, lease.max_end);
        if new_ttl == 0 {
            return Err(Error::PastMaxTtl);
        }
        let expire_time = ttl::expiry(now_ms, new_ttl);
        revoker.extend(&lease, expire_time).await?;
        let old_due = lease.due;
        lease.end_at(ttl::end_ms(now_ms, new_ttl));
        lease.last_renewal = Some(now_ms.div_euclid(1000));
        self.storage
            .apply(Self::reschedule(&lease, old_due))
            .await?;
        Ok((lease, new_ttl, warning))
    }

    /// Revokes one lease now. Unknown leases count as revoked.
    pub async fn revoke(&self, lease_id: &str) -> Result<(), Error> {
        if lease_id.is_empty() {
            return Err(Error::MissingLeaseId);
        }
        self.revoke_entry(lease_id, Cause::Asked, None)
            .await
            .map_err(|reason| Error::RevokeFailed {
                lease_id: lease_id.to_string(),
                index: 1,
                total: 1,
                reason,
            })
    }

    /// Marks a lease for revocation by the worker now (`sync: false`); it
    /// is durably `revoking` when this returns.
    pub async fn expire_now(&self, lease_id: &str) -> Result<(), Error> {
        match self.get(lease_id).await? {
            None => return Ok(()),
            // Marked already, and a mark is never undone: nothing to wait
            // for. Only bring its next attempt forward if nobody is on it.
            Some(lease) if lease.revoking => {
                if let Some(_lock) = self.locks.try_lock(lease_id) {
                    self.mark(lease_id, self.clock.now()).await?;
                }
            }
            Some(_) => {
                let _lock = self.locks.lock(lease_id).await;
                self.mark(lease_id, self.clock.now()).await?;
            }
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Marks the lease `revoking`, due at `due` at the latest; the caller
    /// holds its lock. Returns the lease as marked (`None`: it is gone).
    async fn mark(&self, lease_id: &str, due: i64) -> Result<Option<LeaseEntry>, Error> {
        let Some(mut lease) = self.get(lease_id).await? else {
            return Ok(None);
        };
        if !lease.revoking || lease.due > due {
            let old_due = lease.due;
            lease.revoking = true;
            lease.due = due;
            self.storage
                .apply(Self::reschedule(&lease, old_due))
                .await?;
        }
        Ok(Some(lease))
    }

    /// Every lease under `prefix` (a lease id or a folder of them).
    pub async fn leases_under(&self, prefix: &str) -> Result<Vec<LeaseEntry>, Error> {
        let prefix = prefix.trim_start_matches('/');
        if let Some(exact) = self.get(prefix).await? {
            return Ok(vec![exact]);
        }
        let folder = format!("{}/", prefix.trim_end_matches('/'));
        let start = keys::lease(if prefix.is_empty() { "" } else { &folder });
        let end = format!("{start}\u{10ffff}");
        let mut out = Vec::new();
        let mut from = start.clone();
        loop {
            let batch = self.storage.scan(&from, &end, BATCH).await?;
            let done = batch.len() < BATCH;
            if let Some((last, _)) = batch.last() {
                from = format!("{last}\0");
            }
            for (key, value) in batch {
                match serde_json::from_slice::<LeaseEntry>(&value) {
                    Ok(lease) => out.push(lease),
                    Err(e) => tracing::error!(%key, error = %e, "unreadable lease"),
                }
            }
            if done {
                return Ok(out);
            }
        }
    }

    /// Revokes every lease under `prefix`: now (`sync`), or by handing them
    /// to the worker. Now means [`PARALLELISM`] at a time, as the worker
    /// does; after a failure no new revocation starts, and the first failure
    /// in the listing's order is reported.
    pub async fn revoke_prefix(self: &Arc<Self>, prefix: &str, sync: bool) -> Result<usize, Error> {
        let leases = self.leases_under(prefix).await?;
        let total = leases.len();
        if !sync {
            self.expire_all(leases.into_iter().map(|l| l.lease_id).collect())
                .await?;
            return Ok(total);
        }
        let semaphore = Arc::new(Semaphore::new(PARALLELISM));
        let failed = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for (index, lease) in leases.into_iter().enumerate() {
            let permit = Arc::clone(&semaphore)
                .acquire_owned()
                .await
                .expect("semaphore open");
            if failed.load(Ordering::SeqCst) {
                break;
            }
            let (manager, failed) = (Arc::clone(self), Arc::clone(&failed));
            tasks.spawn(async move {
                let slot = Slot {
                    permit,
                    failed: Some(Arc::clone(&failed)),
                };
                let lease_id = lease.lease_id;
                let outcome = manager
                    .revoke_entry(&lease_id, Cause::Asked, Some(slot))
                    .await;
                if outcome.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                (index, lease_id, outcome)
            });
        }
        let mut first: Option<(usize, String, String)> = None;
        while let Some(joined) = tasks.join_next().await {
            let (index, lease_id, outcome) = joined.map_err(|e| Error::RevokeFailed {
                lease_id: String::new(),
                index: 0,
                total,
                reason: format!("revocation task failed: {e}"),
            })?;
            if let Err(reason) = outcome {
                if first.as_ref().map_or(true, |(i, _, _)| index < *i) {
                    first = Some((index, lease_id, reason));
                }
            }
        }
        match first {
            Some((index, lease_id, reason)) => Err(Error::RevokeFailed {
                lease_id,
                index: index + 1,
                total,
                reason,
            }),
            None => Ok(total),
        }
    }

    /// Forgets every lease under `prefix` without revoking its user.
    pub async fn revoke_force(&self, prefix: &str) -> Result<usize, Error> {
        let leases = self.leases_under(prefix).await?;
        for lease in &leases {
            // Under the lock: a renewal in flight must not write it back.
            let _lock = self.locks.lock(&lease.lease_id).await;
            if let Some(current) = self.get(&lease.lease_id).await? {
                self.forget(&current).await?;
            }
        }
        Ok(leases.len())
    }

    async fn forget(&self, lease: &LeaseEntry) -> Result<(), Error> {
        let mut ops = vec![
            Op::delete(keys::lease(&lease.lease_id)),
            Op::delete(keys::due(lease.due, &lease.lease_id)),
            Op::delete(format!("{IRREVOCABLE}{}", keys::escape(&lease.lease_id))),
        ];
        if let Some(token) = &lease.token_hash {
            ops.push(Op::delete(keys::token(token, &lease.lease_id)));
        }
        Ok(self.storage.apply(ops).await?)
    }

    /// Revokes one lease through its engine; on failure records it and
    /// schedules the next attempt. Returns the engine's error text.
    pub(super) async fn revoke_entry(
        &self,
        lease_id: &str,
        cause: Cause,
        slot: Option<Slot>,
    ) -> Result<(), String> {
        let (_lock, mut lease) = match cause {
            Cause::Due(now_ms) => {
                // Whoever holds the lock renews it, revokes it or retries
                // later; the worker never queues behind them.
                let Some(lock) = self.locks.try_lock(lease_id) else {
                    return Ok(());
                };
                match self.get(lease_id).await {
                    Ok(Some(lease)) if lease.is_due(now_ms) => (lock, lease),
                    // Gone, or renewed or rescheduled since it was listed.
                    Ok(_) => return Ok(()),
                    Err(e) => return Err(e.to_string()),
                }
            }
            Cause::Asked => {
                let lock = self.locks.lock(lease_id).await;
                // The mark is durable before PostgreSQL is touched: if this
                // process dies now, the lease is still being revoked.
                let due = self.clock.now() + ASKED_GRACE;
                match self.mark(lease_id, due).await {
                    Ok(Some(lease)) => (lock, lease),
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(e.to_string()),
                }
            }
        };
        let outcome = match self.revoker(&lease.mount) {
            Ok(revoker) => revoker.revoke(&lease).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Some(slot) = slot {
            slot.release(outcome.is_ok());
        }
        match outcome {
            Ok(()) => self.forget(&lease).await.map_err(|e| e.to_string()),
            Err(reason) => {
                let old_due = lease.due;
                lease.revoking = true;
                lease.failures += 1;
                lease.last_error = Some(reason.clone());
                lease.due = self.clock.now() + backoff(lease.failures);
                let mut ops = Self::reschedule(&lease, old_due);
                if Self::is_irrevocable(&lease) {
                    ops.push(Op::put(
                        format!("{IRREVOCABLE}{}", keys::escape(&lease.lease_id)),
                        Vec::new(),
                    ));
                }
                if let Err(e) = self.storage.apply(ops).await {
                    tracing::error!(lease_id = %lease.lease_id, error = %e, "cannot record a failed revocation");
                }
                tracing::warn!(lease_id = %lease.lease_id, failures = lease.failures, %reason, "revocation failed; will retry");
                Err(reason)
            }
        }
    }

    /// Removes the due-index entry `key` (at `at`, for `lease_id`) if it
    /// is stale: no lease, or the lease is due at another time. Under the
    /// lease's lock, so a writer moving the lease to `at` is not undone.
    pub(super) async fn drop_stale_due(
        &self,
        key: &str,
        at: i64,
        lease_id: &str,
    ) -> Result<bool, Error> {
        let Some(_lock) = self.locks.try_lock(lease_id) else {
            return Ok(false);
        };
        match self.get(lease_id).await? {
            Some(lease) if lease.due == at => Ok(false),
            _ => {
                self.storage.delete(key).await?;
                Ok(true)
            }
        }
    }

    /// Hands every lease of a token to the worker; each is durably marked
    /// `revoking` when this returns.
    pub async fn revoke_token(self: &Arc<Self>, token_hash: &str) -> Result<usize, Error> {
        let folder = keys::token_folder(token_hash);
        let ids: Vec<String> = self
            .storage
            .list(&folder)
            .await?
            .iter()
            .map(|escaped| keys::unescape(escaped))
            .collect();
        let count = ids.len();
        self.expire_all(ids).await?;
        Ok(count)
    }

    /// [`LeaseManager::expire_now`] for each lease, [`PARALLELISM`] at a
    /// time, so that their marks share commits. The first error is
    /// returned once every mark has finished.
    async fn expire_all(self: &Arc<Self>, lease_ids: Vec<String>) -> Result<(), Error> {
        let semaphore = Arc::new(Semaphore::new(PARALLELISM));
        let mut tasks = tokio::task::JoinSet::new();
        for lease_id in lease_ids {
            let permit = Arc::clone(&semaphore)
                .acquire_owned()
                .await
                .expect("semaphore open");
            let manager = Arc::clone(self);
            tasks.spawn(async move {
                let _permit = permit;
                manager.expire_now(&lease_id).await
            });
        }
        let mut first = Ok(());
        while let Some(joined) = tasks.join_next().await {
            let outcome = joined.unwrap_or_else(|e| {
                Err(Error::RevokeFailed {
                    lease_id: String::new(),
                    index: 0,
                    total: 0,
                    reason: format!("marking task failed: {e}"),
                })
            });
            if first.is_ok() {
                first = outcome;
            }
        }
        first
    }

    /// One level of lease ids below `prefix` (folders end in `/`).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        Ok(self.storage.list(&keys::lease(prefix)).await?)
    }

    pub async fn irrevocable_count(&self) -> Result<usize, Error> {
        Ok(self.storage.list(IRREVOCABLE).await?.len())
    }

    /// Leases held, from the expiry index (one key a lease): read when
    /// metrics are scraped, so its cost grows with the leases held.
    pub async fn count(&self) -> Result<usize, Error> {
        let end = format!("{}\u{10ffff}", keys::DUE);
        Ok(self.storage.scan(keys::DUE, &end, usize::MAX).await?.len())
    }
}
