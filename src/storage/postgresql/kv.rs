//! The key-value statements of the postgresql backend: get, list, scan,
//! and batches applied in one transaction, fenced when HA is on. Each runs
//! on the backend's runtime (see [`super::connection`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Shared;
use crate::storage::listing::{OneLevel, Step};
use crate::storage::{Error, Op};

/// Keys read per round trip while listing.
const LIST_CHUNK: i64 = 1000;

/// A batch as its net effect: what to upsert (keys and values, in step)
/// and what to delete.
#[derive(Debug, Default, PartialEq)]
struct Reduced {
    put_keys: Vec<Vec<u8>>,
    values: Vec<Vec<u8>>,
    deletes: Vec<Vec<u8>>,
}

/// The last op on each key wins, so a batch reduces to one upsert and one
/// delete statement; keys are distinct within each (an upsert may not
/// touch one row twice).
fn reduce(ops: Vec<Op>) -> Reduced {
    let mut last: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Put { key, value } => last.insert(key, Some(value)),
            Op::Delete { key } => last.insert(key, None),
        };
    }
    let mut reduced = Reduced::default();
    for (key, value) in last {
        match value {
            Some(value) => {
                reduced.put_keys.push(key.into_bytes());
                reduced.values.push(value);
            }
            None => reduced.deletes.push(key.into_bytes()),
        }
    }
    reduced
}

/// The fence, in the write's own statement: the lock row is read `FOR KEY
/// SHARE` and held to COMMIT, so a takeover (which changes `epoch`, a key
/// column) waits for this transaction, and a write after the takeover finds
/// no row and writes nothing. A check on another connection, or before
/// the write, would leave a window; this leaves none.
const FENCE: &str = "f AS (SELECT 1 FROM pgsecrets_ha_lock
                           WHERE holder = $1 AND epoch = $2 FOR KEY SHARE)";

fn upsert_sql(fenced: bool) -> String {
    let (with, params, from) = if fenced {
        (format!("WITH {FENCE}, "), ("$3", "$4"), "f, ")
    } else {
        ("WITH ".to_owned(), ("$1", "$2"), "")
    };
    let body = format!(
        "w AS (INSERT INTO pgsecrets_kv (key, value)
               SELECT t.k, t.v FROM {from}unnest({}::bytea[], {}::bytea[]) AS t(k, v)
               ON CONFLICT (key) DO UPDATE SET value = excluded.value
               RETURNING 1)",
        params.0, params.1
    );
    // The count of fence rows tells "fenced out" from "nothing to do".
    let tail = if fenced {
        "SELECT count(*) FROM f"
    } else {
        "SELECT 1::bigint"
    };
    format!("{with}{body} {tail}")
}

fn delete_sql(fenced: bool) -> String {
    if fenced {
        format!(
            "WITH {FENCE}, d AS (DELETE FROM pgsecrets_kv
                 WHERE key = ANY($3::bytea[]) AND EXISTS (SELECT 1 FROM f) RETURNING 1)
             SELECT count(*) FROM f"
        )
    } else {
        "WITH d AS (DELETE FROM pgsecrets_kv WHERE key = ANY($1::bytea[]) RETURNING 1)
         SELECT 1::bigint"
            .to_owned()
    }
}

pub(super) async fn apply(shared: Arc<Shared>, ops: Vec<Op>) -> Result<(), Error> {
    if ops.is_empty() {
        return Ok(());
    }
    let fence = shared.fence()?;
    let reduced = reduce(ops);
    let put_keys: Vec<&[u8]> = reduced.put_keys.iter().map(Vec::as_slice).collect();
    let values: Vec<&[u8]> = reduced.values.iter().map(Vec::as_slice).collect();
    let deletes: Vec<&[u8]> = reduced.deletes.iter().map(Vec::as_slice).collect();
    let pg = |e: tokio_postgres::Error| shared.pg(&e);
    let mut client = shared.data().await?;
    // One transaction: all of the batch or none. A fenced-out statement
    // returns here and the dropped transaction rolls back.
    let tx = client.transaction().await.map_err(pg)?;
    let fenced = fence.is_some();
    let (holder, epoch) = fence.map_or((String::new(), 0), |f| (f.holder, f.epoch));
    if !put_keys.is_empty() {
        let stmt = tx.prepare_cached(&upsert_sql(fenced)).await.map_err(pg)?;
        let row = if fenced {
            tx.query_one(&stmt, &[&holder, &epoch, &put_keys, &values])
                .await
        } else {
            tx.query_one(&stmt, &[&put_keys, &values]).await
        }
        .map_err(pg)?;
        if row.get::<_, i64>(0) == 0 {
            return Err(Error::Fenced);
        }
    }
    if !deletes.is_empty() {
        let stmt = tx.prepare_cached(&delete_sql(fenced)).await.map_err(pg)?;
        let row = if fenced {
            tx.query_one(&stmt, &[&holder, &epoch, &deletes]).await
        } else {
            tx.query_one(&stmt, &[&deletes]).await
        }
        .map_err(pg)?;
        if row.get::<_, i64>(0) == 0 {
            return Err(Error::Fenced);
        }
    }
    tx.commit().await.map_err(pg)
}

fn utf8_key(raw: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(raw).map_err(|_| Error::Corrupt {
        key: String::from_utf8_lossy(raw).into_owned(),
        reason: "the stored key is not UTF-8".into(),
    })
}

pub(super) async fn get(shared: Arc<Shared>, key: String) -> Result<Option<Vec<u8>>, Error> {
    let client = shared.data().await?;
    let stmt = client
        .prepare_cached("SELECT value FROM pgsecrets_kv WHERE key = $1")
        .await
        .map_err(|e| shared.pg(&e))?;
    let row = client
        .query_opt(&stmt, &[&key.as_bytes()])
        .await
        .map_err(|e| shared.pg(&e))?;
    Ok(row.map(|r| r.get(0)))
}

pub(super) async fn list(shared: Arc<Shared>, prefix: String) -> Result<Vec<String>, Error> {
    let pg = |e: tokio_postgres::Error| shared.pg(&e);
    let mut client = shared.data().await?;
    let tx = client.transaction().await.map_err(pg)?;
    // One snapshot for every seek of the walk, as the embedded backends.
    tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(pg)?;
    let stmt = tx
        .prepare_cached("SELECT key FROM pgsecrets_kv WHERE key >= $1 ORDER BY key LIMIT $2")
        .await
        .map_err(pg)?;
    let mut walk = OneLevel::new(&prefix);
    let mut from = walk.start().to_owned();
    'seek: loop {
        let rows = tx
            .query(&stmt, &[&from.as_bytes(), &LIST_CHUNK])
            .await
            .map_err(pg)?;
        let full = rows.len() as i64 == LIST_CHUNK;
        for row in &rows {
            let key = utf8_key(row.get(0))?;
            match walk.visit(key) {
                Step::Next => {}
                Step::Seek(to) => {
                    from = to;
                    continue 'seek;
                }
                Step::Done => break 'seek,
            }
        }
        match rows.last() {
            // The next key after the last one read: the same bytes plus NUL.
            Some(last) if full => from = format!("{}\0", utf8_key(last.get(0))?),
            _ => break,
        }
    }
    let out = walk.finish();
    tx.commit().await.map_err(pg)?;
    Ok(out)
}

pub(super) async fn scan(
    shared: Arc<Shared>,
    start: String,
    end: String,
    limit: i64,
) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let client = shared.data().await?;
    let stmt = client
        .prepare_cached(
            "SELECT key, value FROM pgsecrets_kv
             WHERE key >= $1 AND key < $2 ORDER BY key LIMIT $3",
        )
        .await
        .map_err(|e| shared.pg(&e))?;
    let rows = client
        .query(&stmt, &[&start.as_bytes(), &end.as_bytes(), &limit])
        .await
        .map_err(|e| shared.pg(&e))?;
    rows.iter()
        .map(|row| Ok((utf8_key(row.get(0))?.to_owned(), row.get(1))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reduces_to_the_last_op_per_key() {
        let reduced = reduce(vec![
            Op::put("a", "1"),
            Op::delete("a"),
            Op::put("b", "1"),
            Op::put("b", "2"),
            Op::delete("c"),
            Op::put("c", "3"),
        ]);
        assert_eq!(reduced.put_keys, [b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(reduced.values, [b"2".to_vec(), b"3".to_vec()]);
        assert_eq!(reduced.deletes, [b"a".to_vec()]);
    }
}
