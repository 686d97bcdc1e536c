//! Scenario 5 (`storage`): the embedded SQLite backend through the storage
//! barrier, with encryption (as the server runs) and without it
//! ([`Storage::plaintext_for_benchmarks`], the floor): single-key puts
//! (each one a durable write), gets and 100-key range scans, 16 callers at
//! once, each for a fixed window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::load::{self, Op};
use super::report::Row;
use super::{Error, Plan};
use crate::storage::{sqlite::SqliteBackend, Op as Write, Storage};

const CALLERS: usize = 16;
/// About the size of a stored lease.
const VALUE_BYTES: usize = 512;
const SCAN_KEYS: usize = 100;

fn key(i: u64) -> String {
    format!("bench/kv/{i:08}")
}

/// A cheap, well-spread sequence of indexes below `n` (a Weyl sequence).
fn spread(counter: &AtomicU64, n: u64) -> u64 {
    counter
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9)
        % n
}

async fn open(encrypted: bool) -> Result<(Storage, tempfile::TempDir), Error> {
    let dir = tempfile::Builder::new()
        .prefix("pgsecrets-bench-kv-")
        .tempdir()?;
    let backend = Arc::new(SqliteBackend::open(&dir.path().join("kv.db"))?);
    let storage = if encrypted {
        let mut root = [0u8; 32];
        crate::random::fill(&mut root);
        Storage::initialize(backend, &root).await?
    } else {
        Storage::plaintext_for_benchmarks(backend)
    };
    Ok((storage, dir))
}

fn ops<F, Fut>(storage: &Storage, f: F) -> Vec<Op>
where
    F: Fn(Storage, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), crate::storage::Error>> + Send + 'static,
{
    let f = Arc::new(f);
    let counter = Arc::new(AtomicU64::new(1));
    (0..CALLERS)
        .map(|_| {
            let (storage, f, counter) = (storage.clone(), Arc::clone(&f), Arc::clone(&counter));
            let op: Op = Arc::new(move || {
                let fut = f(storage.clone(), counter.fetch_add(1, Ordering::Relaxed));
                Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
            });
            op
        })
        .collect()
}

/// put/s, get/s, scan/s for one mode.
async fn measure(encrypted: bool, plan: &Plan) -> Result<[f64; 3], Error> {
    let (storage, _dir) = open(encrypted).await?;
    let value = vec![0x5a_u8; VALUE_BYTES];
    let n = plan.kv_keys as u64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let batch = chunk
            .iter()
            .map(|i| Write::put(key(*i), value.clone()))
            .collect();
        storage.apply(batch).await?;
    }
    let put_value = value.clone();
    let puts = ops(&storage, move |s, i| {
        let v = put_value.clone();
        async move { s.put(&format!("bench/put/{i:012}"), v).await }
    });
    let picks = Arc::new(AtomicU64::new(7));
    let get_picks = Arc::clone(&picks);
    let gets = ops(&storage, move |s, _| {
        let k = key(spread(&get_picks, n));
        async move {
            match s.get(&k).await? {
                Some(_) => Ok(()),
                None => Err(crate::storage::Error::Corrupt {
                    key: k,
                    reason: "missing".into(),
                }),
            }
        }
    });
    let scans = ops(&storage, move |s, _| {
        let start = key(spread(&picks, n.saturating_sub(SCAN_KEYS as u64).max(1)));
        async move {
            s.scan(&start, "bench/kv/~", SCAN_KEYS).await?;
            Ok(())
        }
    });
    let mut out = [0.0; 3];
    for (slot, ops) in out.iter_mut().zip([puts, gets, scans]) {
        let sample = load::run(ops, plan.warmup, plan.window).await;
        if let Some(e) = sample.first_error {
            return Err(Error::Failed(format!("storage benchmark: {e}")));
        }
        *slot = sample.per_second();
    }
    Ok(out)
}

pub async fn storage(plan: &Plan) -> Result<Vec<Row>, Error> {
    let plain = measure(false, plan).await?;
    let sealed = measure(true, plan).await?;
    let cases = [
        ("put (1 key, durable)", "puts/s"),
        ("get", "gets/s"),
        ("scan (100 keys)", "scans/s"),
    ];
    Ok(cases
        .iter()
        .zip(plain.iter().zip(sealed))
        .map(|((case, metric), (plain, sealed))| {
            Row::new("storage", format!("{case}, floor=plaintext"), metric)
                .floor(*plain)
                .value(sealed)
        })
        .collect())
}
