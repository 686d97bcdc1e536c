//! The expiry worker: revokes what falls due from the persisted,
//! time-ordered index, in bounded parallel batches. Tests drive
//! [`LeaseManager::step`] directly with the instant they want.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::manager::{lease_of_due_key, Cause, Slot, BATCH, DUE_BATCH, PARALLELISM};
use super::{keys, Error, LeaseManager};

/// Least time between two rounds woken for a lease's end within a second
/// already begun.
const EARLY_WAKE_MS: i64 = 20;

impl LeaseManager {
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
                if self.drop_stale_due(&key, at, &lease_id).await? {
                    removed += 1;
                }
            }
            if done {
                return Ok(removed);
            }
        }
    }

    /// One round of the expiry worker: revokes what is due at `now`, at most
    /// [`DUE_BATCH`] leases, [`PARALLELISM`] at a time. Returns how many were
    /// handled and when the next lease falls due.
    pub async fn step(self: &Arc<Self>, now_ms: i64) -> Result<(usize, Option<i64>), Error> {
        let now = now_ms.div_euclid(1000);
        // The earliest end (ms) of a lease listed in a second that has
        // begun but not reached yet: the worker wakes for it.
        let mut early: Option<i64> = None;
        let due = self
            .storage
            .scan(keys::DUE, &keys::due_until(now), DUE_BATCH)
            .await?;
        let semaphore = Arc::new(Semaphore::new(PARALLELISM));
        let mut tasks = tokio::task::JoinSet::new();
        let mut handled = 0;
        // Entries of seconds long past are of leases handled since (a
        // renewal or revocation moves or removes their key).
        self.not_yet
            .lock()
            .expect("not_yet")
            .retain(|_, (at, _)| *at >= now - 1);
        for (key, _) in due {
            let Some((at, lease_id)) = lease_of_due_key(&key) else {
                continue;
            };
            // Known not to have ended: its end only moves later (a mark
            // for revocation puts it under another key).
            let remembered = self.not_yet.lock().expect("not_yet").get(&key).copied();
            if let Some((_, end)) = remembered.filter(|(_, end)| *end > now_ms) {
                early = Some(early.map_or(end, |e| e.min(end)));
                continue;
            }
            // Only index keys here: the lease is read under its lock.
            match self.get(&lease_id).await? {
                Some(lease) if lease.due == at && !lease.is_due(now_ms) => {
                    let end = lease.end_ms();
                    early = Some(early.map_or(end, |e| e.min(end)));
                    self.not_yet
                        .lock()
                        .expect("not_yet")
                        .insert(key.clone(), (at, end));
                    continue;
                }
                Some(lease) if lease.due == at => {}
                _ => {
                    self.drop_stale_due(&key, at, &lease_id).await?;
                    continue;
                }
            }
            handled += 1;
            let permit = Arc::clone(&semaphore)
                .acquire_owned()
                .await
                .expect("semaphore open");
            let manager = Arc::clone(self);
            tasks.spawn(async move {
                let slot = Slot {
                    permit,
                    failed: None,
                };
                use crate::telemetry::name;
                let counted = match manager
                    .revoke_entry(&lease_id, Cause::Due(now_ms), Some(slot))
                    .await
                {
                    Ok(()) => name::LEASE_EXPIRATION,
                    Err(_) => name::LEASE_EXPIRATION_ERROR,
                };
                manager.telemetry.count(counted, &[]);
            });
        }
        while tasks.join_next().await.is_some() {}
        let next = self
            .storage
            .scan(keys::DUE, &format!("{}\u{10ffff}", keys::DUE), 1)
            .await?
            .first()
            .and_then(|(k, _)| lease_of_due_key(k))
            .map(|(at, _)| at * 1000)
            // An entry of a second already begun that this round left (its
            // lease locked by a renewal or a revocation in flight): look
            // again shortly.
            .map(|at| if at > now_ms { at } else { now_ms + 50 });
        // Ends within a second come in clusters: waking at most every
        // EARLY_WAKE takes several at once (lag stays in milliseconds).
        let early = early.map(|end| end.max(now_ms + EARLY_WAKE_MS));
        let next = match (next, early) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok((handled, next))
    }

    /// The expiry worker: runs [`LeaseManager::step`] whenever a lease falls
    /// due (or a lease was marked for revocation now), until `shutdown`
    /// resolves.
    pub async fn run(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut shutdown = shutdown;
        loop {
            let now_ms = self.clock.now_ms();
            let wait = match self.step(now_ms).await {
                Ok((handled, next)) if handled < DUE_BATCH => match next {
                    // Wake at the next lease's end (to the millisecond),
                    // not on a tick that could land most of a second later;
                    // at most a second away, so a lease issued meanwhile
                    // is not missed.
                    Some(at) => {
                        let since_step = self.clock.now_ms();
                        Duration::from_millis((at - since_step).clamp(1, 1000) as u64)
                    }
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
                _ = self.clock.moved() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
