//! Group commit: concurrent writers share one transaction and one fsync.
//!
//! Each caller queues its batch, then takes the writer lock. Whoever holds
//! the lock commits every batch queued so far, in one go; a caller whose
//! batch an earlier holder already committed returns that outcome without
//! writing. So while one commit waits for the disk, the batches arriving
//! meanwhile pile up and go down together in the next one.
//!
//! What callers are promised does not change: each returns only once its
//! own batch is durable (or has failed), and each batch stays atomic (the
//! backend's commit function applies every batch whole or not at all, and
//! gives each its own outcome).

use std::sync::{Arc, Mutex, PoisonError};

use super::{Error, Op};

#[derive(Default)]
pub struct GroupCommit {
    queue: Mutex<Vec<Arc<Slot>>>,
}

struct Slot {
    ops: Vec<Op>,
    outcome: Mutex<Option<Result<(), Error>>>,
}

impl Slot {
    fn take(&self) -> Option<Result<(), Error>> {
        self.outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn set(&self, outcome: Result<(), Error>) {
        *self.outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
    }
}

/// Gives every slot of a group that has no outcome yet an error: runs if
/// the commit function panics, so no caller is told its batch was written.
struct Unfinished<'a>(&'a [Arc<Slot>]);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        for slot in self.0 {
            let mut outcome = slot.outcome.lock().unwrap_or_else(PoisonError::into_inner);
            if outcome.is_none() {
                *outcome = Some(Err(Error::TaskJoin(
                    "a concurrent storage write panicked before committing this batch".into(),
                )));
            }
        }
    }
}

impl GroupCommit {
    /// Applies `ops` through `commit`, called with the writer lock (taken by
    /// `lock`) held and every batch queued so far, in arrival order; it must
    /// return one outcome per batch, in the same order.
    pub fn apply<G>(
        &self,
        ops: &[Op],
        lock: impl FnOnce() -> G,
        commit: impl FnOnce(&mut G, &[&[Op]]) -> Vec<Result<(), Error>>,
    ) -> Result<(), Error> {
        let mine = Arc::new(Slot {
            ops: ops.to_vec(),
            outcome: Mutex::new(None),
        });
        self.queue().push(Arc::clone(&mine));
        let mut guard = lock();
        // A holder of the lock before us took our batch: it set the outcome
        // before letting go of the lock.
        if let Some(outcome) = mine.take() {
            return outcome;
        }
        // Otherwise our batch is still queued, and we commit the queue.
        let group = std::mem::take(&mut *self.queue());
        let unfinished = Unfinished(&group);
        let batches: Vec<&[Op]> = group.iter().map(|slot| slot.ops.as_slice()).collect();
        let outcomes = commit(&mut guard, &batches);
        debug_assert_eq!(outcomes.len(), group.len(), "one outcome per batch");
        for (slot, outcome) in group.iter().zip(outcomes) {
            slot.set(outcome);
        }
        drop(unfinished);
        drop(guard);
        mine.take().unwrap_or_else(|| {
            Err(Error::TaskJoin(
                "the storage commit gave no outcome for this batch".into(),
            ))
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Slot>>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn every_batch_is_committed_once_and_callers_see_their_own_outcome() {
        let group = Arc::new(GroupCommit::default());
        let writer = Arc::new(Mutex::new(Vec::<String>::new()));
        let commits = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let (group, writer, commits) = (
                    Arc::clone(&group),
                    Arc::clone(&writer),
                    Arc::clone(&commits),
                );
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let key = format!("{t}/{i}");
                        let outcome = group.apply(
                            &[Op::put(key.clone(), "v")],
                            || writer.lock().unwrap(),
                            |written, batches| {
                                commits.fetch_add(1, Ordering::SeqCst);
                                // A slow disk: batches pile up meanwhile.
                                std::thread::sleep(Duration::from_micros(200));
                                batches
                                    .iter()
                                    .map(|ops| {
                                        let key = ops[0].key().to_string();
                                        if key.ends_with("/7") {
                                            return Err(Error::Random);
                                        }
                                        written.push(key);
                                        Ok(())
                                    })
                                    .collect()
                            },
                        );
                        assert_eq!(outcome.is_err(), key.ends_with("/7"), "{key}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut written = writer.lock().unwrap().clone();
        let all = written.len();
        written.sort();
        written.dedup();
        assert_eq!(written.len(), all, "no batch is written twice");
        assert_eq!(all, 16 * 49);
        assert!(commits.load(Ordering::SeqCst) <= 16 * 50);
    }

    #[test]
    fn a_panicking_commit_fails_the_batches_it_took() {
        let group = GroupCommit::default();
        let writer = Mutex::new(());
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            group.apply(
                &[Op::put("k", "v")],
                || writer.lock().unwrap_or_else(PoisonError::into_inner),
                |_, _| panic!("disk on fire"),
            )
        }));
        assert!(outcome.is_err(), "the panic reaches its caller");
        // The next writer is not blocked and is not handed a stale outcome.
        let next = group.apply(
            &[Op::put("k2", "v")],
            || writer.lock().unwrap_or_else(PoisonError::into_inner),
            |_, batches| batches.iter().map(|_| Ok(())).collect(),
        );
        assert!(next.is_ok());
    }
}
