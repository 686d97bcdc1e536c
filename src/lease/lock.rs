//! One async lock per lease id, held by whatever reads a lease to write it
//! back (creation, renewal, marking for revocation, revocation): two such
//! operations on one lease never interleave, so none writes back a lease
//! another changed meanwhile. Found without it: a renewal that read a
//! lease before a revocation marked it wrote it back unmarked and with an
//! hour left, and the user survived its revocation.
//!
//! Locks exist only while held or waited for: the map holds no entry for a
//! lease nobody works on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Default)]
pub(super) struct LeaseLocks {
    held: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// A held lease lock; released on drop.
pub(super) struct LeaseLock<'a> {
    locks: &'a LeaseLocks,
    lease_id: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl LeaseLocks {
    fn entry(&self, lease_id: &str) -> Arc<AsyncMutex<()>> {
        let mut held = self.held.lock().expect("lease locks");
        Arc::clone(held.entry(lease_id.to_string()).or_default())
    }

    /// Waits until no one else works on `lease_id`.
    pub async fn lock(&self, lease_id: &str) -> LeaseLock<'_> {
        let guard = self.entry(lease_id).lock_owned().await;
        LeaseLock {
            locks: self,
            lease_id: lease_id.to_string(),
            guard: Some(guard),
        }
    }

    /// The lock if no one else holds it now.
    pub fn try_lock(&self, lease_id: &str) -> Option<LeaseLock<'_>> {
        // Made before trying, so that a failed try tidies what it added.
        let mut lock = LeaseLock {
            locks: self,
            lease_id: lease_id.to_string(),
            guard: None,
        };
        lock.guard = Some(self.entry(lease_id).try_lock_owned().ok()?);
        Some(lock)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.lock().expect("lease locks").len()
    }
}

impl Drop for LeaseLock<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut held = self.locks.held.lock().expect("lease locks");
        // Every holder and waiter has its own handle, taken under the map's
        // lock: the map's alone means nobody else wants this lease.
        if held
            .get(&self.lease_id)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            held.remove(&self.lease_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_waits_and_entries_go_with_the_last_one() {
        let locks = Arc::new(LeaseLocks::default());
        let first = locks.lock("a").await;
        assert!(locks.try_lock("a").is_none());
        assert!(locks.try_lock("b").is_some());
        let waiter = {
            let locks = Arc::clone(&locks);
            tokio::spawn(async move {
                let _second = locks.lock("a").await;
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(first);
        waiter.await.unwrap();
        assert_eq!(locks.len(), 0);
    }
}
