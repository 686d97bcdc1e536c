//! The SQLite backend: one file, one table `kv(key TEXT PRIMARY KEY, value
//! BLOB NOT NULL) WITHOUT ROWID`. Keys compare with SQLite's default BINARY
//! collation, i.e. `memcmp` over their UTF-8 bytes: the same order as Rust's
//! `str` and the in-memory backend.
//!
//! Writes go through a writer thread ([`super::writer`]) that owns the
//! writer connection: batches that arrive while a commit waits for the disk
//! are committed together in the next transaction, with one fsync for all
//! (a batch that fails is retried alone: see [`commit_group`]).
//! Reads use connections of their own: in WAL mode a reader sees the last
//! committed state and never waits for a commit in progress, so a
//! single-key read is quick enough to run on the async runtime.

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};

use super::listing::{OneLevel, Step};
use super::read_cache::{Forget, Lookup, ReadCache};
use super::writer::Writer;
use super::{Backend, Error, Op, WriteFuture};

/// Reader connections: a few, so concurrent reads rarely wait for each other.
const READERS: usize = 4;
/// Page cache of the writer connection, in KiB (SQLite's default is 2 MiB):
/// inserts that land at random places of the key index (token records,
/// and lease keys before lease ids became time-ordered) read pages back
/// from the OS on every insert, which showed in profiles.
const WRITER_CACHE_KIB: i64 = 16 * 1024;
/// Values kept by the [`ReadCache`]: far more than the records a busy
/// server reads per request (tokens, roles, clusters, databases).
const READ_CACHE_ENTRIES: usize = 4096;

pub struct SqliteBackend {
    /// The writer connection, shared with the writer thread for tests.
    #[cfg(test)]
    conn: Arc<Mutex<Connection>>,
    /// Connections for reads; never used for writes.
    readers: Vec<Mutex<Connection>>,
    /// Sealed values of often-read keys, invalidated by the writer thread.
    cache: Arc<ReadCache>,
    /// The thread that commits batches, several at a time.
    writer: Writer,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend").finish_non_exhaustive()
    }
}

impl SqliteBackend {
    /// Opens (creating if absent, with mode 0600) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, Error> {
        // Create the file ourselves so it is never, even briefly, readable by
        // others. SQLite creates the -wal and -shm files with the database
        // file's permissions.
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "storage file is accessible to other users"
            );
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        // Durability is a product promise: a write acknowledged to a client
        // (a token, a lease) must survive a crash or power loss.
        // - WAL: a commit is one sequential append to the -wal file, readers
        //   never block the writer, and a torn write at crash time is detected
        //   by the WAL checksums and rolled back, never half-applied.
        // - synchronous=FULL: in WAL mode, NORMAL only syncs at checkpoints, so
        //   the last commits before a power loss can vanish; FULL fsyncs the
        //   WAL on every commit, so once `apply` returns the batch is on disk.
        let journal: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !journal.eq_ignore_ascii_case("wal") {
            tracing::warn!(journal_mode = %journal, "sqlite storage could not switch to WAL");
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        // Statement journals (the pages a statement that fails midway must
        // restore, in a transaction of several statements) go to a
        // temporary file once they pass 64 KiB. Kept in memory instead
        // (nothing in them needs to survive a crash: the WAL alone is the
        // durable record).
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (
                 key   TEXT PRIMARY KEY,
                 value BLOB NOT NULL
             ) WITHOUT ROWID;",
        )?;
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                reader.busy_timeout(Duration::from_secs(5))?;
                reader.pragma_update(None, "query_only", true)?;
                Ok(Mutex::new(reader))
            })
            .collect::<Result<_, Error>>()?;
        let conn = Arc::new(Mutex::new(conn));
        let shared = Arc::clone(&conn);
        let cache = Arc::new(ReadCache::new(READ_CACHE_ENTRIES));
        let written = Arc::clone(&cache);
        let writer = Writer::start(
            "pgsecrets-sqlite-writer",
            Box::new(move |batches| {
                let _forget = Forget {
                    cache: &written,
                    batches,
                };
                commit_group(&mut lock(&shared), batches)
            }),
        )?;
        Ok(SqliteBackend {
            #[cfg(test)]
            conn,
            readers,
            cache,
            writer,
        })
    }

    #[cfg(test)]
    fn conn(&self) -> MutexGuard<'_, Connection> {
        lock(&self.conn)
    }

    /// A free reader connection, or the first one once it is free.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        for reader in &self.readers {
            match reader.try_lock() {
                Ok(guard) => return guard,
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        self.readers[0]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The listing walk, also returning how many rows it read.
    fn list_counting(&self, prefix: &str) -> Result<(Vec<String>, usize), Error> {
        let mut reader = self.reader();
        // One read transaction: every seek of the walk sees the same state.
        let conn = reader.transaction()?;
        let mut stmt = conn.prepare_cached("SELECT key FROM kv WHERE key >= ?1 ORDER BY key")?;
        let mut walk = OneLevel::new(prefix);
        let mut from = walk.start().to_owned();
        'seek: loop {
            // Each (re)start is one index seek; rows are then read lazily, so
            // the walk reads only what `OneLevel` asks for.
            let mut rows = stmt.query([&from])?;
            while let Some(row) = rows.next()? {
                let key = row.get_ref(0)?;
                let key = key.as_str().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(0, key.data_type(), Box::new(e))
                })?;
                match walk.visit(key) {
                    Step::Next => {}
                    Step::Seek(to) => {
                        from = to;
                        continue 'seek;
                    }
                    Step::Done => break 'seek,
                }
            }
            break;
        }
        let visited = walk.visited();
        Ok((walk.finish(), visited))
    }
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the connection cannot leave a transaction
    // half-committed (an unfinished transaction rolls back when dropped),
    // so a poisoned lock is still a consistent database.
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes one batch's ops in the current transaction.
fn write(conn: &Connection, ops: &[Op]) -> Result<(), Error> {
    let mut put = conn.prepare_cached(
        "INSERT INTO kv (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?;
    let mut delete = conn.prepare_cached("DELETE FROM kv WHERE key = ?1")?;
    for op in ops {
        match op {
            Op::Put { key, value } => put.execute(params![key, value])?,
            Op::Delete { key } => delete.execute([key])?,
        };
    }
    Ok(())
}

/// Batches in one transaction: on any error the transaction is dropped and
/// rolls back, and a crash before COMMIT leaves nothing of it in the WAL.
fn commit_together(conn: &mut Connection, batches: &[&[Op]]) -> Result<(), Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for ops in batches {
        write(&tx, ops)?;
    }
    tx.commit()?;
    Ok(())
}

/// One batch in a transaction of its own.
fn commit_alone(conn: &mut Connection, ops: &[Op]) -> Result<(), Error> {
    commit_together(conn, &[ops])
}

/// Commits batches of several callers in one transaction (one fsync). Puts
/// and deletes of a key-value table fail only when the database itself does
/// (disk full, I/O error, corruption), so the group is written optimistically
/// with no savepoint per batch: a savepoint costs SQL statements and a copy
/// of every page it touches, on every commit, for a failure that almost
/// never happens. If anything fails, the whole transaction rolls back and
/// each batch is tried again alone, in order, so every caller still gets the
/// outcome of its own batch and a failing batch takes no other down. Puts
/// and deletes are idempotent, so applying a batch again is harmless even if
/// a failed COMMIT did reach the disk.
fn commit_group(conn: &mut Connection, batches: &[&[Op]]) -> Vec<Result<(), Error>> {
    if let [ops] = batches {
        return vec![commit_alone(conn, ops)];
    }
    match commit_together(conn, batches) {
        Ok(()) => batches.iter().map(|_| Ok(())).collect(),
        Err(e) => {
            tracing::warn!(error = %e, batches = batches.len(), "group commit failed; committing its batches one by one");
            batches.iter().map(|ops| commit_alone(conn, ops)).collect()
        }
    }
}

impl Backend for SqliteBackend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let epoch = match self.cache.get(key) {
            Lookup::Hit(value) => return Ok(Some(value)),
            Lookup::Miss { epoch } => epoch,
        };
        let conn = self.reader();
        let mut stmt = conn.prepare_cached("SELECT value FROM kv WHERE key = ?1")?;
        let mut rows = stmt.query([key])?;
        let Some(row) = rows.next()? else {
            return Ok(None);
        };
        let value: Vec<u8> = row.get(0)?;
        self.cache.insert(key, &value, epoch);
        Ok(Some(value))
    }

    fn apply(&self, ops: &[Op]) -> Result<(), Error> {
        if ops.is_empty() {
            return Ok(());
        }
        self.writer.apply(ops.to_vec())
    }

    fn submit(self: Arc<Self>, ops: Vec<Op>) -> WriteFuture {
        if ops.is_empty() {
            return Box::pin(std::future::ready(Ok(())));
        }
        self.writer.submit(ops)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        Ok(self.list_counting(prefix)?.0)
    }

    fn scan(&self, start: &str, end: &str, limit: usize) -> Result<Vec<(String, Vec<u8>)>, Error> {
        if start >= end || limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT key, value FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![start, end, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend_suite;

    fn fresh() -> (SqliteBackend, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(&dir.path().join("test.db")).unwrap();
        (backend, dir)
    }

    #[test]
    fn every_acknowledged_write_is_seen_by_later_reads_despite_the_cache() {
        let (b, _dir) = fresh();
        let b = Arc::new(b);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Readers keep the key cached and race each write's invalidation.
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (b, stop) = (Arc::clone(&b), Arc::clone(&stop));
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        b.get("sys/token/id/t").unwrap();
                    }
                })
            })
            .collect();
        for n in 0..300u32 {
            b.apply(&[Op::put("sys/token/id/t", n.to_be_bytes().to_vec())])
                .unwrap();
            let seen = b.get("sys/token/id/t").unwrap().unwrap();
            assert_eq!(
                seen,
                n.to_be_bytes(),
                "write {n} acknowledged, then not read"
            );
        }
        b.apply(&[Op::delete("sys/token/id/t")]).unwrap();
        assert_eq!(b.get("sys/token/id/t").unwrap(), None);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for reader in readers {
            reader.join().unwrap();
        }
    }

    /// Makes any insert of the key `refused` fail with `RAISE(<action>)`:
    /// ABORT fails the statement, ROLLBACK the whole transaction.
    fn refuse_key_refused(b: &SqliteBackend, action: &str) {
        b.conn()
            .execute_batch(&format!(
                "CREATE TRIGGER refuse BEFORE INSERT ON kv WHEN NEW.key = 'refused'
                 BEGIN SELECT RAISE({action}, 'refused by test'); END;"
            ))
            .unwrap();
    }

    backend_suite!(fresh());

    #[test]
    fn data_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let b = SqliteBackend::open(&path).unwrap();
        b.apply(&[Op::put("a/b", "1"), Op::put("c", "2")]).unwrap();
        drop(b);
        let b = SqliteBackend::open(&path).unwrap();
        assert_eq!(b.get("a/b").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(b.list("").unwrap(), ["a/", "c"]);
    }

    #[test]
    fn file_is_private_wal_fully_synchronous_and_journals_statements_in_memory() {
        let (b, dir) = fresh();
        let mode = std::fs::metadata(dir.path().join("test.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let conn = b.conn();
        let journal: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(journal, "wal");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        let temp: i64 = conn
            .query_row("PRAGMA temp_store", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            temp, 2,
            "temp_store=MEMORY: statement journals stay off the disk"
        );
    }

    #[test]
    fn a_failing_batch_leaves_nothing_behind() {
        let (b, _dir) = fresh();
        b.apply(&[Op::put("keep", "old")]).unwrap();
        // Make the third write of the batch fail.
        refuse_key_refused(&b, "ABORT");
        let err = b
            .apply(&[
                Op::put("keep", "new"),
                Op::put("first", "1"),
                Op::put("refused", "x"),
            ])
            .unwrap_err();
        assert!(matches!(err, Error::Sqlite(_)), "{err:?}");
        assert_eq!(b.get("keep").unwrap().as_deref(), Some(&b"old"[..]));
        assert_eq!(b.get("first").unwrap(), None);
        b.apply(&[Op::put("after", "1")]).unwrap();
        assert_eq!(
            b.get("after").unwrap().as_deref(),
            Some(&b"1"[..]),
            "usable afterwards"
        );
    }

    #[test]
    fn a_failing_batch_in_a_group_is_rolled_back_alone() {
        let (b, _dir) = fresh();
        refuse_key_refused(&b, "ABORT");
        let first = [Op::put("a", "1")];
        let failing = [Op::put("b", "1"), Op::put("refused", "x")];
        let last = [Op::put("c", "1"), Op::delete("a")];
        let outcomes = commit_group(&mut b.conn(), &[&first, &failing, &last]);
        assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
        assert!(matches!(outcomes[1], Err(Error::Sqlite(_))), "{outcomes:?}");
        assert_eq!(b.get("b").unwrap(), None, "the failing batch left nothing");
        assert_eq!(b.get("c").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(
            b.get("a").unwrap(),
            None,
            "later batches apply after earlier ones"
        );
    }

    #[test]
    fn a_batch_that_aborts_the_whole_transaction_fails_alone() {
        let (b, _dir) = fresh();
        // RAISE(ROLLBACK) ends the shared transaction itself.
        refuse_key_refused(&b, "ROLLBACK");
        let first = [Op::put("a", "1")];
        let failing = [Op::put("b", "1"), Op::put("refused", "x")];
        let last = [Op::put("c", "1")];
        let outcomes = commit_group(&mut b.conn(), &[&first, &failing, &last]);
        assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
        assert!(outcomes[1].is_err(), "{outcomes:?}");
        assert_eq!(b.get("a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(b.get("b").unwrap(), None);
        assert_eq!(b.get("c").unwrap().as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn concurrent_writers_all_land_through_the_group_commit() {
        let (b, _dir) = fresh();
        let b = std::sync::Arc::new(b);
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let b = std::sync::Arc::clone(&b);
                std::thread::spawn(move || {
                    for i in 0..40 {
                        b.apply(&[
                            Op::put(format!("w/{t:02}/{i:02}"), "v"),
                            Op::put(format!("last/{t:02}"), format!("{i}")),
                        ])
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.scan("w/", "w0", 10_000).unwrap().len(), 16 * 40);
        for t in 0..16 {
            let last = b.get(&format!("last/{t:02}")).unwrap().unwrap();
            assert_eq!(last, b"39", "each writer's batches apply in its order");
        }
    }

    #[test]
    fn list_seeks_past_a_big_subfolder_instead_of_reading_it() {
        let (b, _dir) = fresh();
        let ops: Vec<Op> = (0..10_000)
            .map(|i| Op::put(format!("leases/sub/{i:05}"), "x"))
            .collect();
        b.apply(&ops).unwrap();
        b.apply(&[Op::put("leases/z", "x")]).unwrap();
        let (out, visited) = b.list_counting("leases/").unwrap();
        assert_eq!(out, ["sub/", "z"]);
        assert!(visited < 50, "read {visited} rows to list two children");
    }
}
