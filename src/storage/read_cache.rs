//! The stored (sealed) bytes of small, often-read keys, kept in memory by
//! the SQLite backend.
//!
//! Every credential request reads the same few records (its token, role,
//! cluster and database). In WAL mode each of those reads opens a read
//! transaction and looks pages up in a WAL that changes with every lease
//! written; profiles showed those reads as a quarter of the request
//! threads' time. The records themselves change rarely.
//!
//! Coherence rests on the backend having one writer (the writer thread)
//! that calls [`ReadCache::invalidate`] after each commit and before any
//! caller learns the commit's outcome, so a write acknowledged to its
//! caller is seen by every later read. A read that raced with a commit
//! must not put the value it read back: the epoch, bumped under the same
//! lock as the removal, tells [`ReadCache::insert`] whether a write to a
//! cached key happened since the read began.
//!
//! Values stay sealed here (the barrier decrypts above the backend), so
//! the cache holds nothing readable. Lease keys are never cached: there
//! are millions, each read a few times, and their writes would keep
//! bumping the epoch.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::Op;

/// Keys not cached: leases and their indexes (the lease manager writes
/// them often and reads each once).
const UNCACHED_PREFIX: &str = "sys/expire/";

pub struct ReadCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

struct Inner {
    entries: HashMap<String, Vec<u8>>,
    /// Bumped by every commit that wrote a cacheable key.
    epoch: u64,
}

/// What [`ReadCache::get`] found: the value, or the epoch to hand back to
/// [`ReadCache::insert`] with what the backend then reads.
pub enum Lookup {
    Hit(Vec<u8>),
    Miss { epoch: u64 },
}

impl ReadCache {
    /// A cache of at most `capacity` entries; when full it starts afresh
    /// (cheap, and the hot records come back on their next read).
    pub fn new(capacity: usize) -> ReadCache {
        ReadCache {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                epoch: 0,
            }),
            capacity,
        }
    }

    fn cacheable(key: &str) -> bool {
        !key.starts_with(UNCACHED_PREFIX)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Entries are whole values inserted under the lock: never torn.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get(&self, key: &str) -> Lookup {
        if !Self::cacheable(key) {
            // Never cached, and `insert` ignores it: no lock to take.
            return Lookup::Miss { epoch: 0 };
        }
        let inner = self.lock();
        match inner.entries.get(key) {
            Some(value) => Lookup::Hit(value.clone()),
            None => Lookup::Miss { epoch: inner.epoch },
        }
    }

    /// Keeps `value`, read from the backend after [`ReadCache::get`] gave
    /// `epoch`, unless a cacheable key was written since.
    pub fn insert(&self, key: &str, value: &[u8], epoch: u64) {
        if !Self::cacheable(key) {
            return;
        }
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        if inner.entries.len() >= self.capacity {
            inner.entries.clear();
        }
        inner.entries.insert(key.to_owned(), value.to_vec());
    }

    /// Forgets every key `batches` wrote (committed or not); called by the
    /// writer after each commit, before replying to its callers (see
    /// [`Forget`]).
    pub fn invalidate(&self, batches: &[&[Op]]) {
        let mut keys = batches
            .iter()
            .flat_map(|ops| ops.iter())
            .map(Op::key)
            .filter(|key| Self::cacheable(key))
            .peekable();
        if keys.peek().is_none() {
            // Lease writes, the common case: nothing cached to forget.
            return;
        }
        let mut inner = self.lock();
        inner.epoch += 1;
        for key in keys {
            inner.entries.remove(key);
        }
    }
}

/// Invalidates a commit's keys when dropped: after the commit returns, or
/// while unwinding from a panic in it (which may have come after COMMIT).
pub struct Forget<'a> {
    pub cache: &'a ReadCache,
    pub batches: &'a [&'a [Op]],
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.cache.invalidate(self.batches);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn miss_epoch(cache: &ReadCache, key: &str) -> u64 {
        match cache.get(key) {
            Lookup::Miss { epoch } => epoch,
            Lookup::Hit(_) => panic!("{key} should not be cached"),
        }
    }

    fn hit(cache: &ReadCache, key: &str) -> Option<Vec<u8>> {
        match cache.get(key) {
            Lookup::Hit(v) => Some(v),
            Lookup::Miss { .. } => None,
        }
    }

    #[test]
    fn a_read_is_kept_and_a_write_forgets_it() {
        let cache = ReadCache::new(16);
        let epoch = miss_epoch(&cache, "database/role/app");
        cache.insert("database/role/app", b"v1", epoch);
        assert_eq!(hit(&cache, "database/role/app"), Some(b"v1".to_vec()));
        cache.invalidate(&[&[Op::put("database/role/app", b"v2".to_vec())]]);
        assert_eq!(hit(&cache, "database/role/app"), None);
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_kept() {
        let cache = ReadCache::new(16);
        // The read began, then a commit wrote the key, then the read ended
        // with what may be the old value: it must not be cached.
        let epoch = miss_epoch(&cache, "sys/token/id/abc");
        cache.invalidate(&[&[Op::delete("sys/token/id/abc")]]);
        cache.insert("sys/token/id/abc", b"old", epoch);
        assert_eq!(hit(&cache, "sys/token/id/abc"), None);
    }

    #[test]
    fn lease_keys_are_never_cached_nor_bump_the_epoch() {
        let cache = ReadCache::new(16);
        let epoch = miss_epoch(&cache, "database/cluster/c1");
        cache.invalidate(&[&[Op::put("sys/expire/id/database/creds/x", vec![1])]]);
        cache.insert("database/cluster/c1", b"c", epoch);
        assert_eq!(hit(&cache, "database/cluster/c1"), Some(b"c".to_vec()));
        let epoch = miss_epoch(&cache, "sys/expire/id/database/creds/x");
        cache.insert("sys/expire/id/database/creds/x", b"l", epoch);
        assert_eq!(hit(&cache, "sys/expire/id/database/creds/x"), None);
    }

    #[test]
    fn a_full_cache_starts_afresh() {
        let cache = ReadCache::new(2);
        for key in ["a", "b", "c"] {
            let epoch = miss_epoch(&cache, key);
            cache.insert(key, key.as_bytes(), epoch);
        }
        assert_eq!(hit(&cache, "a"), None);
        assert_eq!(hit(&cache, "c"), Some(b"c".to_vec()));
    }
}
