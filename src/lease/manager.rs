//! The lease manager: records intents and leases, renews, revokes, and
//! revokes on expiry from the persisted time-ordered index.
//!
//! Nothing is deleted from storage until the engine confirms the user is
//! gone (or `revoke-force` is asked). A failed revocation is retried with
//! capped exponential backoff, forever; after [`IRREVOCABLE_AFTER`] failures
//! in a row the lease is also listed as irrevocable.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use super::{keys, ttl, Error, Intent, LeaseEntry, Revoker, TtlLimits};
use crate::storage::{Op, Storage};

/// Failures in a row after which a lease is reported as irrevocable.
pub const IRREVOCABLE_AFTER: u32 = 5;
/// Longest wait between two revocation attempts.
pub const MAX_BACKOFF: i64 = 30;
/// Revocations run at once by the expiry worker.
pub const PARALLELISM: usize = 16;
/// Due leases read per index scan.
pub const BATCH: usize = 512;

const IRREVOCABLE: &str = "sys/expire/irrevocable/";

pub struct LeaseManager {
    storage: Storage,
    revokers: RwLock<HashMap<String, Weak<dyn Revoker>>>,
    notify: Notify,
    in_flight: Mutex<HashSet<String>>,
    /// Intents older than this (unix seconds) belong to an earlier process
    /// and can be resolved; newer ones may be creations in progress.
    started: i64,
}

/// Marks a lease as being worked on; released on drop.
struct Claim<'a> {
    manager: &'a LeaseManager,
    lease_id: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.manager
            .in_flight
            .lock()
            .expect("in-flight set")
            .remove(&self.lease_id);
    }
}

fn backoff(failures: u32) -> i64 {
    2i64.saturating_pow(failures.min(16)).min(MAX_BACKOFF)
}

/// The lease id encoded in a due-index key.
fn lease_of_due_key(key: &str) -> Option<(i64, String)> {
    let rest = key.strip_prefix(keys::DUE)?;
    let (time, escaped) = rest.split_once('/')?;
    Some((time.parse().ok()?, keys::unescape(escaped)))
}

impl LeaseManager {
    pub fn new(storage: Storage) -> Arc<LeaseManager> {
        Arc::new(LeaseManager {
            storage,
            revokers: RwLock::new(HashMap::new()),
            notify: Notify::new(),
            in_flight: Mutex::new(HashSet::new()),
            started: chrono::Utc::now().timestamp(),
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

    fn revoker(&self, mount: &str) -> Result<Arc<dyn Revoker>, Error> {
        self.revokers
            .read()
            .expect("revokers")
            .get(mount)
            .and_then(Weak::upgrade)
            .ok_or_else(|| Error::NoBackend(mount.to_string()))
    }

    fn claim(&self, lease_id: &str) -> Option<Claim<'_>> {
        let mut set = self.in_flight.lock().expect("in-flight set");
        if !set.insert(lease_id.to_string()) {
            return None;
        }
        Some(Claim {
            manager: self,
            lease_id: lease_id.to_string(),
        })
    }

    /// Records that a user is about to be created.
    pub async fn begin(&self, intent: &Intent) -> Result<(), Error> {
        Ok(self
            .storage
            .put_json(&keys::intent(&intent.id), intent)
            .await?)
    }

    /// Forgets an intent whose creation certainly did not happen (its
    /// transaction rolled back).
    pub async fn abandon(&self, intent_id: &str) -> Result<(), Error> {
        Ok(self.storage.delete(&keys::intent(intent_id)).await?)
    }

    /// Stores the lease and drops the intent in one atomic write; only then
    /// may the credentials be returned.
    pub async fn commit(&self, intent_id: &str, lease: &LeaseEntry) -> Result<(), Error> {
        let mut ops = vec![
            Op::put(
                keys::lease(&lease.lease_id),
                serde_json::to_vec(lease).expect("lease serialises"),
            ),
            Op::put(keys::due(lease.due, &lease.lease_id), Vec::new()),
            Op::put(
                keys::user(&lease.mount, &lease.cluster, &lease.username),
                lease.lease_id.clone().into_bytes(),
            ),
            Op::delete(keys::intent(intent_id)),
        ];
        if let Some(token) = &lease.token_hash {
            ops.push(Op::put(keys::token(token, &lease.lease_id), Vec::new()));
        }
        self.storage.apply(ops).await?;
        self.notify.notify_one();
        Ok(())
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

    /// Renews a lease from `now` by `increment` (0 = the default TTL).
    /// Returns the lease as renewed, its new TTL and any cap warning.
    pub async fn renew(
        &self,
        lease_id: &str,
        increment: u64,
        now: i64,
    ) -> Result<(LeaseEntry, u64, Option<String>), Error> {
        if lease_id.is_empty() {
            return Err(Error::MissingLeaseId);
        }
        let _claim = self.claim(lease_id).ok_or(Error::NotRenewable)?;
        let mut lease = self.get(lease_id).await?.ok_or(Error::NotFound)?;
        if lease.revoking || lease.expire_time <= now {
            return Err(if Self::is_irrevocable(&lease) {
                Error::Irrevocable
            } else {
                Error::Expired
            });
        }
        if now >= lease.max_end {
            return Err(Error::PastMaxTtl);
        }
        let revoker = self.revoker(&lease.mount)?;
        let limits: TtlLimits = revoker.renew_limits(&lease).await.map_err(Error::Refused)?;
        let (new_ttl, warning) = ttl::renew(&limits, increment, now, lease.max_end);
        if new_ttl == 0 {
            return Err(Error::PastMaxTtl);
        }
        let expire_time = now + new_ttl as i64;
        revoker
            .extend(&lease, expire_time)
            .await
            .map_err(Error::Refused)?;
        let old_due = lease.due;
        lease.expire_time = expire_time;
        lease.last_renewal = Some(now);
        lease.due = expire_time;
        self.storage
            .apply(vec![
                Op::put(
                    keys::lease(&lease.lease_id),
                    serde_json::to_vec(&lease).expect("lease serialises"),
                ),
                Op::delete(keys::due(old_due, &lease.lease_id)),
                Op::put(keys::due(lease.due, &lease.lease_id), Vec::new()),
            ])
            .await?;
        Ok((lease, new_ttl, warning))
    }

    /// Revokes one lease now. Unknown leases count as revoked.
    pub async fn revoke(&self, lease_id: &str) -> Result<(), Error> {
        if lease_id.is_empty() {
            return Err(Error::MissingLeaseId);
        }
        let Some(lease) = self.get(lease_id).await? else {
            return Ok(());
        };
        self.revoke_entry(lease, chrono::Utc::now().timestamp())
            .await
            .map_err(|reason| Error::RevokeFailed {
                lease_id: lease_id.to_string(),
                index: 1,
                total: 1,
                reason,
            })
    }

    /// Marks a lease for revocation by the worker now (`sync: false`).
    pub async fn expire_now(&self, lease_id: &str) -> Result<(), Error> {
        let now = chrono::Utc::now().timestamp();
        if let Some(mut lease) = self.get(lease_id).await? {
            let _claim = self.claim(lease_id);
            let old_due = lease.due;
            lease.revoking = true;
            lease.due = now;
            self.storage
                .apply(vec![
                    Op::put(
                        keys::lease(&lease.lease_id),
                        serde_json::to_vec(&lease).expect("lease serialises"),
                    ),
                    Op::delete(keys::due(old_due, &lease.lease_id)),
                    Op::put(keys::due(now, &lease.lease_id), Vec::new()),
                ])
                .await?;
            self.notify.notify_one();
        }
        Ok(())
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
            for lease in &leases {
                self.expire_now(&lease.lease_id).await?;
            }
            return Ok(total);
        }
        let now = chrono::Utc::now().timestamp();
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
                let _permit = permit;
                let lease_id = lease.lease_id.clone();
                let outcome = manager.revoke_entry(lease, now).await;
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
            self.forget(lease).await?;
        }
        Ok(leases.len())
    }

    async fn forget(&self, lease: &LeaseEntry) -> Result<(), Error> {
        let mut ops = vec![
            Op::delete(keys::lease(&lease.lease_id)),
            Op::delete(keys::due(lease.due, &lease.lease_id)),
            Op::delete(keys::user(&lease.mount, &lease.cluster, &lease.username)),
            Op::delete(format!("{IRREVOCABLE}{}", keys::escape(&lease.lease_id))),
        ];
        if let Some(token) = &lease.token_hash {
            ops.push(Op::delete(keys::token(token, &lease.lease_id)));
        }
        Ok(self.storage.apply(ops).await?)
    }

    /// Revokes one lease through its engine; on failure records it and
    /// schedules the next attempt. Returns the engine's error text.
    async fn revoke_entry(&self, mut lease: LeaseEntry, now: i64) -> Result<(), String> {
        let Some(_claim) = self.claim(&lease.lease_id) else {
            return Err("a revocation of this lease is already running".into());
        };
        // Re-read under the claim: it may be gone or changed since it was listed.
        match self.get(&lease.lease_id).await {
            Ok(Some(current)) => lease = current,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
        let outcome = match self.revoker(&lease.mount) {
            Ok(revoker) => revoker.revoke(&lease).await,
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => self.forget(&lease).await.map_err(|e| e.to_string()),
            Err(reason) => {
                let old_due = lease.due;
                lease.revoking = true;
                lease.failures += 1;
                lease.last_error = Some(reason.clone());
                lease.due = now + backoff(lease.failures);
                let mut ops = vec![
                    Op::put(
                        keys::lease(&lease.lease_id),
                        serde_json::to_vec(&lease).expect("lease serialises"),
                    ),
                    Op::delete(keys::due(old_due, &lease.lease_id)),
                    Op::put(keys::due(lease.due, &lease.lease_id), Vec::new()),
                ];
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

    /// Hands every lease of a token to the worker.
    pub async fn revoke_token(&self, token_hash: &str) -> Result<usize, Error> {
        let folder = keys::token_folder(token_hash);
        let mut count = 0;
        for escaped in self.storage.list(&folder).await? {
            self.expire_now(&keys::unescape(&escaped)).await?;
            count += 1;
        }
        Ok(count)
    }

    /// One level of lease ids below `prefix` (folders end in `/`).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        Ok(self.storage.list(&keys::lease(prefix)).await?)
    }

    /// Usernames with a lease (or an intent) on a cluster of a mount.
    pub async fn tracked_users(
        &self,
        mount: &str,
        cluster: &str,
    ) -> Result<HashSet<String>, Error> {
        let mut users: HashSet<String> = self
            .storage
            .list(&keys::users(mount, cluster))
            .await?
            .into_iter()
            .collect();
        for id in self.storage.list(keys::INTENTS).await? {
            if let Some(intent) = self.storage.get_json::<Intent>(&keys::intent(&id)).await? {
                if intent.mount == mount && intent.cluster == cluster {
                    users.insert(intent.username);
                }
            }
        }
        Ok(users)
    }

    pub async fn irrevocable_count(&self) -> Result<usize, Error> {
        Ok(self.storage.list(IRREVOCABLE).await?.len())
    }

    /// Resolves intents left by an earlier process: the user may or may not
    /// exist; it is dropped if it does. Failures stay for the next call.
    pub async fn recover_intents(&self) -> Result<usize, Error> {
        let mut resolved = 0;
        for id in self.storage.list(keys::INTENTS).await? {
            let Some(intent) = self.storage.get_json::<Intent>(&keys::intent(&id)).await? else {
                continue;
            };
            if intent.created >= self.started {
                continue; // a creation of this process, maybe still running
            }
            let outcome = match self.revoker(&intent.mount) {
                Ok(revoker) => revoker.drop_intent(&intent).await,
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(()) => {
                    self.storage.delete(&keys::intent(&id)).await?;
                    resolved += 1;
                }
                Err(reason) => {
                    tracing::warn!(username = %intent.username, %reason, "cannot resolve a creation intent yet")
                }
            }
        }
        Ok(resolved)
    }

    /// Removes index entries that point at no lease. Returns how many.
    pub async fn tidy(&self) -> Result<usize, Error> {
        let mut removed = 0;
        let mut from = keys::DUE.to_string();
        let end = format!("{}\u{10ffff}", keys::DUE);
        loop {
            let batch = self.storage.scan(&from, &end, BATCH).await?;
            let done = batch.len() < BATCH;
            if let Some((last, _)) = batch.last() {
                from = format!("{last}\0");
            }
            for (key, _) in batch {
                let Some((at, lease_id)) = lease_of_due_key(&key) else {
                    continue;
                };
                let stale = match self.get(&lease_id).await? {
                    None => true,
                    Some(lease) => lease.due != at,
                };
                if stale {
                    self.storage.delete(&key).await?;
                    removed += 1;
                }
            }
            if done {
                return Ok(removed);
            }
        }
    }

    /// One round of the expiry worker: revokes what is due at `now`, at most
    /// [`BATCH`] leases, [`PARALLELISM`] at a time. Returns how many were
    /// handled and when the next lease falls due.
    pub async fn step(self: &Arc<Self>, now: i64) -> Result<(usize, Option<i64>), Error> {
        let due = self
            .storage
            .scan(keys::DUE, &keys::due_until(now), BATCH)
            .await?;
        let semaphore = Arc::new(Semaphore::new(PARALLELISM));
        let mut tasks = tokio::task::JoinSet::new();
        let mut handled = 0;
        for (key, _) in due {
            let Some((at, lease_id)) = lease_of_due_key(&key) else {
                continue;
            };
            let Some(lease) = self.get(&lease_id).await? else {
                self.storage.delete(&key).await?;
                continue;
            };
            if lease.due != at {
                self.storage.delete(&key).await?;
                continue;
            }
            handled += 1;
            let permit = Arc::clone(&semaphore)
                .acquire_owned()
                .await
                .expect("semaphore open");
            let manager = Arc::clone(self);
            tasks.spawn(async move {
                let _permit = permit;
                let _ = manager.revoke_entry(lease, now).await;
            });
        }
        while tasks.join_next().await.is_some() {}
        let next = self
            .storage
            .scan(keys::DUE, &format!("{}\u{10ffff}", keys::DUE), 1)
            .await?
            .first()
            .and_then(|(k, _)| lease_of_due_key(k))
            .map(|(at, _)| at);
        Ok((handled, next))
    }

    /// The expiry worker: runs [`LeaseManager::step`] whenever a lease falls
    /// due (or something new was added), and retries creation intents of
    /// earlier processes, until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut shutdown = shutdown;
        let mut last_intent_check = 0;
        loop {
            let now = chrono::Utc::now().timestamp();
            if now - last_intent_check >= 30 {
                last_intent_check = now;
                if let Err(e) = self.recover_intents().await {
                    tracing::error!(error = %e, "intent recovery failed");
                }
            }
            let wait = match self.step(now).await {
                Ok((handled, next)) if handled < BATCH => match next {
                    Some(at) if at > now => Duration::from_secs((at - now).min(1) as u64),
                    Some(_) => Duration::from_millis(50),
                    None => Duration::from_secs(1),
                },
                Ok(_) => Duration::ZERO,
                Err(e) => {
                    tracing::error!(error = %e, "expiry step failed");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.notify.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
