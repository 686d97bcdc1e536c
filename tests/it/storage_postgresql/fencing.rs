//! The HA lock at the storage level: an old epoch writes nothing after a
//! takeover, renewals never revive, a takeover waits for writes in flight,
//! a deleted lock row fails writes closed, and the fast path when the
//! holder's session is gone.

use std::sync::Arc;

use pgsecrets::storage::postgresql::PgBackend;
use pgsecrets::storage::{Backend, Error, Op};

use super::{fresh_database, ha, sql, table};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_epoch_writes_nothing_after_a_takeover_and_cannot_renew() {
    let url = fresh_database().await;
    let a = Arc::new(PgBackend::connect(&ha(&url)).await.unwrap());
    let b = Arc::new(PgBackend::connect(&ha(&url)).await.unwrap());
    let (lock_a, lock_b) = (a.ha_lock().unwrap(), b.ha_lock().unwrap());
    let client = sql(&url).await;

    let e = b.apply(&[Op::put("k", "b")]).unwrap_err();
    assert!(
        matches!(e, Error::Fenced),
        "a node not holding the lock writes nothing: {e:?}"
    );
    let n = lock_a
        .acquire("http://a:8200", "https://a:8201")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        lock_b
            .acquire("http://b:8200", "https://b:8201")
            .await
            .unwrap(),
        None
    );
    a.apply(&[Op::put("k", "a1"), Op::put("gone", "x")])
        .unwrap();
    Arc::clone(&a)
        .submit(vec![Op::delete("gone")])
        .await
        .unwrap();
    lock_a.renew().await.unwrap();
    let leader = lock_b.current_leader().await.unwrap().unwrap();
    assert_eq!((leader.holder.as_str(), leader.epoch), (lock_a.holder(), n));
    assert!(leader.live);
    assert_eq!(leader.api_addr, "http://a:8200");
    assert_eq!(leader.cluster_addr, "https://a:8201");
    assert!(leader.active_since_ms.is_some());
    lock_a
        .announce("http://a:8200", "https://a:8201")
        .await
        .unwrap();
    lock_b
        .announce("http://b:8200", "https://b:8201")
        .await
        .unwrap();
    lock_b
        .announce("http://b:8300", "https://b:8301")
        .await
        .unwrap();
    let members: Vec<(String, String)> = client
        .query(
            "SELECT holder, api_addr FROM pgsecrets_ha_members ORDER BY api_addr",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        members,
        [
            (lock_a.holder().to_string(), "http://a:8200".to_string()),
            (lock_b.holder().to_string(), "http://b:8300".to_string())
        ],
        "one row per node, updated in place"
    );

    // A's lock runs out (by the database clock) and B takes over.
    client
        .execute(
            "UPDATE pgsecrets_ha_lock SET expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let m = lock_b
        .acquire("http://b:8200", "https://b:8201")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m, n + 1);
    // A has not renewed, so it still carries epoch n: what refuses its
    // writes is the fence in each statement, in the database.
    let before = table(&client).await;
    for ops in [
        vec![Op::put("k", "a2")],
        vec![Op::put("new", "a2")],
        vec![Op::delete("k")],
        vec![Op::put("k", "a3"), Op::delete("k"), Op::put("other", "a3")],
    ] {
        let e = a.apply(&ops).unwrap_err();
        assert!(matches!(e, Error::Fenced), "{ops:?}: {e:?}");
        assert_eq!(e.to_string(), "leadership lost during the request; retry");
        let e = Arc::clone(&a).submit(ops.clone()).await.unwrap_err();
        assert!(matches!(e, Error::Fenced), "{ops:?}: {e:?}");
    }
    assert_eq!(
        table(&client).await,
        before,
        "the old epoch changed nothing"
    );
    let e = lock_a.renew().await.unwrap_err();
    assert!(matches!(e, Error::LockLost), "{e:?}");
    let row = client
        .query_one("SELECT holder, epoch FROM pgsecrets_ha_lock", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i64>(1)),
        (lock_b.holder().to_string(), m),
        "a failed renewal revives nothing"
    );
    b.apply(&[Op::put("k", "b1")]).unwrap();
    assert_eq!(b.get("k").unwrap().as_deref(), Some(&b"b1"[..]));

    // Released: B's writes stop at once, and A may take the lock again.
    lock_b.release().await.unwrap();
    assert!(matches!(b.apply(&[Op::put("k", "b2")]), Err(Error::Fenced)));
    let again = lock_a.acquire("http://a:8200", "").await.unwrap().unwrap();
    assert!(again > m);
    a.apply(&[Op::put("k", "a4")]).unwrap();
    assert_eq!(a.get("k").unwrap().as_deref(), Some(&b"a4"[..]));
}

/// What `epoch UNIQUE` and `FOR KEY SHARE` buy: a write in flight (here a
/// transaction holding the fence row as every fenced write does) holds off
/// a takeover until it ends, while the holder's renewal never waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_waits_for_a_write_in_flight_but_a_renewal_does_not() {
    let url = fresh_database().await;
    let a = PgBackend::connect(&ha(&url)).await.unwrap();
    let b = PgBackend::connect(&ha(&url)).await.unwrap();
    let (lock_a, lock_b) = (a.ha_lock().unwrap(), b.ha_lock().unwrap());
    let n = lock_a.acquire("", "").await.unwrap().unwrap();
    assert!(lock_b.current_leader().await.unwrap().is_some());
    let mut writer = sql(&url).await;
    let in_flight = writer.transaction().await.unwrap();
    let fenced = in_flight
        .query(
            "SELECT 1 FROM pgsecrets_ha_lock WHERE holder = $1 AND epoch = $2 FOR KEY SHARE",
            &[&lock_a.holder(), &n],
        )
        .await
        .unwrap();
    assert_eq!(fenced.len(), 1);
    lock_a
        .renew()
        .await
        .expect("a renewal does not wait for writes");
    let client = sql(&url).await;
    client
        .execute(
            "UPDATE pgsecrets_ha_lock SET expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let takeover = {
        let lock_b = Arc::clone(&lock_b);
        tokio::spawn(async move { lock_b.acquire("", "").await })
    };
    // B's claim is queued behind the write's row lock ...
    while client
        .query_opt(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
            &[&lock_b.application_name()],
        )
        .await
        .unwrap()
        .is_none()
    {
        assert!(!takeover.is_finished(), "the takeover did not wait: {:?}", takeover.await);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // ... and goes through once the write commits.
    in_flight.commit().await.unwrap();
    assert_eq!(takeover.await.unwrap().unwrap(), Some(n + 1));
    assert!(matches!(a.apply(&[Op::put("k", "a")]), Err(Error::Fenced)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_lock_row_fails_writes_closed_and_epochs_never_go_back() {
    let url = fresh_database().await;
    let a = Arc::new(PgBackend::connect(&ha(&url)).await.unwrap());
    let lock_a = a.ha_lock().unwrap();
    let client = sql(&url).await;
    let n = lock_a.acquire("", "").await.unwrap().unwrap();
    a.apply(&[Op::put("k", "1")]).unwrap();
    client
        .execute("DELETE FROM pgsecrets_ha_lock", &[])
        .await
        .unwrap();
    let before = table(&client).await;
    for ops in [
        vec![Op::put("k", "2")],
        vec![Op::delete("k")],
        vec![Op::put("x", "1"), Op::delete("k")],
    ] {
        assert!(matches!(a.apply(&ops), Err(Error::Fenced)), "{ops:?}");
    }
    assert_eq!(table(&client).await, before);
    assert!(matches!(lock_a.renew().await, Err(Error::LockLost)));
    let rows: i64 = client
        .query_one("SELECT count(*) FROM pgsecrets_ha_lock", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "neither renew nor acquire inserts the lock row");
    assert_eq!(lock_a.acquire("", "").await.unwrap(), None);

    // The next node to start restores the row; its epoch is still new.
    let b = PgBackend::connect(&ha(&url)).await.unwrap();
    let m = b.ha_lock().unwrap().acquire("", "").await.unwrap().unwrap();
    assert!(m > n, "epoch {m} after {n}");
    b.apply(&[Op::put("k", "b")]).unwrap();
    assert!(matches!(a.apply(&[Op::put("k", "a")]), Err(Error::Fenced)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_session_is_gone_is_taken_over_before_its_lock_expires() {
    let url = fresh_database().await;
    let a = PgBackend::connect(&ha(&url)).await.unwrap();
    let b = PgBackend::connect(&ha(&url)).await.unwrap();
    let (lock_a, lock_b) = (a.ha_lock().unwrap(), b.ha_lock().unwrap());
    let n = lock_a.acquire("", "").await.unwrap().unwrap();
    assert_eq!(
        lock_b.take_over_if_holder_gone("", "").await.unwrap(),
        None,
        "A is alive"
    );
    let client = sql(&url).await;
    let killed: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&lock_a.application_name()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    // Termination is asynchronous: wait until the session is gone.
    while client
        .query_opt(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = $1",
            &[&lock_a.application_name()],
        )
        .await
        .unwrap()
        .is_some()
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let live: bool = client
        .query_one("SELECT expires_at > now() FROM pgsecrets_ha_lock", &[])
        .await
        .unwrap()
        .get(0);
    assert!(live, "A's lock has not expired");
    let m = lock_b
        .take_over_if_holder_gone("", "")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m, n + 1);
    b.apply(&[Op::put("k", "b")]).unwrap();
    assert!(matches!(a.apply(&[Op::put("k", "a")]), Err(Error::Fenced)));
    assert!(matches!(lock_a.renew().await, Err(Error::LockLost)));
}
