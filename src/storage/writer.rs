//! Group commit on a writer thread of its own.
//!
//! Callers queue their batch and wait for its outcome; the thread takes
//! every batch queued so far and hands them to the backend's commit
//! function in one go, which commits them in one transaction (one fsync).
//! While one commit waits for the disk, the batches arriving meanwhile pile
//! up and go down together in the next one.
//!
//! Why a thread rather than tokio's blocking pool: an async caller then
//! costs one channel send and one wake-up, instead of a blocking-pool task
//! per write and blocking threads contending for the one connection (which
//! profiles showed as most of the credential path's context switches).
//!
//! What callers are promised does not change: each learns the outcome of
//! its own batch only once that batch is durable (or has failed), and each
//! batch stays atomic. A batch whose caller stopped waiting is still
//! written or failed as a whole.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::{Error, Op, WriteFuture};

/// Batches committed together at most: bounds one transaction's size.
const MAX_GROUP: usize = 512;

/// Commits the batches given, in order, and returns one outcome per batch.
pub type Commit = Box<dyn FnMut(&[&[Op]]) -> Vec<Result<(), Error>> + Send>;

pub struct Writer {
    /// `None` only while dropping: closing the queue stops the thread.
    queue: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

struct Job {
    ops: Vec<Op>,
    reply: Reply,
}

enum Reply {
    Async(oneshot::Sender<Result<(), Error>>),
    Blocking(mpsc::SyncSender<Result<(), Error>>),
}

impl Reply {
    fn send(self, outcome: Result<(), Error>) {
        // A caller that stopped waiting does not want the outcome.
        let _ = match self {
            Reply::Async(tx) => tx.send(outcome).map_err(drop),
            Reply::Blocking(tx) => tx.send(outcome).map_err(drop),
        };
    }
}

fn stopped() -> Error {
    Error::TaskJoin("the storage writer has stopped".into())
}

impl Writer {
    /// Starts the thread; `commit` runs on it only.
    pub fn start(name: &str, mut commit: Commit) -> std::io::Result<Writer> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                while let Ok(first) = jobs.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match jobs.try_recv() {
                            Ok(job) => group.push(job),
                            Err(_) => break,
                        }
                    }
                    let batches: Vec<&[Op]> = group.iter().map(|j| j.ops.as_slice()).collect();
                    // A panic fails this group's batches, not every later write.
                    let outcomes = catch_unwind(AssertUnwindSafe(|| commit(&batches)))
                        .unwrap_or_else(|_| Vec::new());
                    let mut outcomes = outcomes.into_iter();
                    for job in group {
                        let outcome = outcomes.next().unwrap_or_else(|| {
                            Err(Error::TaskJoin(
                                "the storage commit gave no outcome for this batch".into(),
                            ))
                        });
                        job.reply.send(outcome);
                    }
                }
            })?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    fn enqueue(&self, ops: Vec<Op>, reply: Reply) -> Result<(), Error> {
        let queue = self.queue.as_ref().ok_or_else(stopped)?;
        queue.send(Job { ops, reply }).map_err(|_| stopped())
    }

    /// Queues `ops`; the future resolves once they are committed or failed.
    pub fn submit(&self, ops: Vec<Op>) -> WriteFuture {
        let (tx, rx) = oneshot::channel();
        let queued = self.enqueue(ops, Reply::Async(tx));
        Box::pin(async move {
            queued?;
            rx.await.map_err(|_| stopped())?
        })
    }

    /// Queues `ops` and blocks the calling thread until they are committed.
    pub fn apply(&self, ops: Vec<Op>) -> Result<(), Error> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.enqueue(ops, Reply::Blocking(tx))?;
        rx.recv().map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    /// Lets the thread commit what is queued, then waits for it: the
    /// connection it holds is closed when this returns.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn recording(written: Arc<Mutex<Vec<String>>>, groups: Arc<Mutex<Vec<usize>>>) -> Commit {
        Box::new(move |batches| {
            groups.lock().unwrap().push(batches.len());
            // A slow disk: batches pile up meanwhile.
            std::thread::sleep(Duration::from_micros(300));
            batches
                .iter()
                .map(|ops| {
                    let key = ops[0].key().to_string();
                    if key.ends_with("/7") {
                        return Err(Error::Random);
                    }
                    written.lock().unwrap().push(key);
                    Ok(())
                })
                .collect()
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_batch_is_committed_once_and_callers_see_their_own_outcome() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let groups = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::new(
            Writer::start(
                "test-writer",
                recording(Arc::clone(&written), Arc::clone(&groups)),
            )
            .unwrap(),
        );
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..16 {
            let writer = Arc::clone(&writer);
            tasks.spawn(async move {
                for i in 0..30 {
                    let key = format!("{t}/{i}");
                    let outcome = writer.submit(vec![Op::put(key.clone(), "v")]).await;
                    assert_eq!(outcome.is_err(), key.ends_with("/7"), "{key}");
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let mut all = written.lock().unwrap().clone();
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count, "no batch is written twice");
        assert_eq!(count, 16 * 29);
        let groups = groups.lock().unwrap();
        assert!(
            groups.iter().any(|&n| n > 1),
            "concurrent batches share commits: {groups:?}"
        );
    }

    #[test]
    fn a_panicking_commit_fails_its_batches_and_the_writer_goes_on() {
        let mut calls = 0;
        let writer = Writer::start(
            "test-writer",
            Box::new(move |batches| {
                calls += 1;
                if calls == 1 {
                    panic!("disk on fire");
                }
                batches.iter().map(|_| Ok(())).collect()
            }),
        )
        .unwrap();
        assert!(writer.apply(vec![Op::put("k", "v")]).is_err());
        assert!(writer.apply(vec![Op::put("k2", "v")]).is_ok());
    }

    #[test]
    fn dropping_the_writer_commits_what_was_queued() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let writer = Writer::start(
            "test-writer",
            recording(Arc::clone(&written), Arc::new(Mutex::new(Vec::new()))),
        )
        .unwrap();
        let pending: Vec<WriteFuture> = (0..5)
            .map(|i| writer.submit(vec![Op::put(format!("k{i}"), "v")]))
            .collect();
        drop(writer);
        assert_eq!(written.lock().unwrap().len(), 5);
        drop(pending);
    }
}
