//! The in-memory backend: a `BTreeMap` behind a lock. Nothing survives the
//! process; used by dev mode and tests.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock};

use super::listing::{OneLevel, Step};
use super::{Backend, Error, Op, WriteFuture};

#[derive(Debug, Default)]
pub struct InMemBackend {
    map: RwLock<BTreeMap<String, Vec<u8>>>,
}

impl InMemBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// The listing walk, also returning how many keys it read.
    fn list_counting(&self, prefix: &str) -> (Vec<String>, usize) {
        // A panic while holding the lock cannot leave a half-applied batch
        // (apply only inserts/removes, which do not panic), so poisoning is
        // safe to ignore here and below.
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let mut walk = OneLevel::new(prefix);
        let mut from = walk.start().to_owned();
        'seek: loop {
            for key in map.range::<str, _>((Bound::Included(from.as_str()), Bound::Unbounded)) {
                match walk.visit(key.0) {
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
        (walk.finish(), visited)
    }
}

impl Backend for InMemBackend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        Ok(map.get(key).cloned())
    }

    fn apply(&self, ops: &[Op]) -> Result<(), Error> {
        // One write lock for the whole batch: readers see all of it or none.
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        for op in ops {
            match op {
                Op::Put { key, value } => {
                    map.insert(key.clone(), value.clone());
                }
                Op::Delete { key } => {
                    map.remove(key);
                }
            }
        }
        Ok(())
    }

    /// In memory a batch takes microseconds: no thread hand-off.
    fn submit(self: Arc<Self>, ops: Vec<Op>) -> WriteFuture {
        Box::pin(std::future::ready(self.apply(&ops)))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        Ok(self.list_counting(prefix).0)
    }

    fn scan(&self, start: &str, end: &str, limit: usize) -> Result<Vec<(String, Vec<u8>)>, Error> {
        if start >= end || limit == 0 {
            return Ok(Vec::new());
        }
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        Ok(map
            .range::<str, _>((Bound::Included(start), Bound::Excluded(end)))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn kind(&self) -> &'static str {
        "inmem"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend_suite;

    backend_suite!((InMemBackend::new(), ()));

    #[test]
    fn list_skips_a_big_subfolder_instead_of_reading_it() {
        let b = InMemBackend::new();
        let ops: Vec<Op> = (0..10_000)
            .map(|i| Op::put(format!("leases/sub/{i:05}"), b"x".to_vec()))
            .collect();
        b.apply(&ops).unwrap();
        let (out, visited) = b.list_counting("leases/");
        assert_eq!(out, ["sub/"]);
        assert!(visited < 50, "read {visited} keys to list one folder");
    }
}
