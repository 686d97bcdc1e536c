//! The postgresql storage backend against a real PostgreSQL: the KV
//! conformance suite every backend passes, no plaintext in its table,
//! migrations of nodes starting together, the HA lock's fencing, and
//! errors that never show the password. Each test has a database of its
//! own on the shared server.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use pgsecrets::storage::postgresql::{PgBackend, Settings, SCHEMA_VERSION};
use pgsecrets::storage::{Backend, Error, Op, Storage};

use serde_json::json;

use crate::support::pg::{Pg, PgVersion};
use crate::support::server::TestServer;

/// A fresh, empty database on the shared server; its URL.
async fn fresh_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let pg = Pg::shared();
    let name = format!(
        "pgs_storage_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    pg.admin()
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    url(pg, pg.password(), &name)
}

fn url(pg: &Pg, password: &str, database: &str) -> String {
    format!(
        "postgres://{}:{password}@{}:{}/{database}",
        pg.superuser(),
        pg.host(),
        pg.port()
    )
}

/// A client on the test's database, as an operator would use it.
async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

fn ha(url: &str) -> Settings {
    Settings {
        ha_enabled: true,
        ..Settings::new(url)
    }
}

/// For the synchronous conformance cases: a backend on a fresh database.
fn fresh_backend() -> (PgBackend, ()) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let backend = rt.block_on(async {
        let url = fresh_database().await;
        PgBackend::connect(&Settings::new(url)).await.unwrap()
    });
    (backend, ())
}

mod conformance {
    use super::*;

    pgsecrets::backend_suite!(fresh_backend());
}

/// Every key and value of `pgsecrets_kv`, by key.
async fn table(client: &tokio_postgres::Client) -> Vec<(Vec<u8>, Vec<u8>)> {
    client
        .query("SELECT key, value FROM pgsecrets_kv ORDER BY key", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_of_the_kv_table_holds_no_plaintext() {
    let url = fresh_database().await;
    let backend = Arc::new(PgBackend::connect(&Settings::new(&url)).await.unwrap());
    let storage = Storage::initialize(backend, &[7u8; 32]).await.unwrap();
    let secret = "hunter2-root-password-5b1e9c";
    storage
        .put(
            "database/config/prod",
            format!("{{\"password\":\"{secret}\"}}").into_bytes(),
        )
        .await
        .unwrap();
    storage
        .apply(vec![Op::put(
            "sys/token/id/abc",
            secret.as_bytes().to_vec(),
        )])
        .await
        .unwrap();
    let back = storage.get("database/config/prod").await.unwrap().unwrap();
    assert!(String::from_utf8(back).unwrap().contains(secret));
    let rows = table(&sql(&url).await).await;
    let keys: Vec<String> = rows
        .iter()
        .map(|(k, _)| String::from_utf8(k.clone()).unwrap())
        .collect();
    assert!(
        keys.contains(&"database/config/prod".to_string()),
        "{keys:?}"
    );
    for (key, value) in &rows {
        assert!(
            !value.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "plaintext under {:?}",
            String::from_utf8_lossy(key)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_migrating_at_once_create_the_schema_once() {
    let url = fresh_database().await;
    let nodes: Vec<_> = (0..4)
        .map(|_| {
            let settings = ha(&url);
            tokio::spawn(async move { PgBackend::connect(&settings).await })
        })
        .collect();
    for node in nodes {
        node.await.unwrap().expect("every node starts");
    }
    let client = sql(&url).await;
    let versions: Vec<i32> = client
        .query("SELECT version FROM pgsecrets_schema_version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [SCHEMA_VERSION], "migrated once");
    let locks: i64 = client
        .query_one("SELECT count(*) FROM pgsecrets_ha_lock", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(locks, 1, "exactly one lock row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_the_binary_is_refused() {
    let url = fresh_database().await;
    drop(PgBackend::connect(&Settings::new(&url)).await.unwrap());
    let newer = SCHEMA_VERSION + 1;
    sql(&url)
        .await
        .execute(
            "INSERT INTO pgsecrets_schema_version (version) VALUES ($1)",
            &[&newer],
        )
        .await
        .unwrap();
    let e = PgBackend::connect(&Settings::new(&url)).await.unwrap_err();
    assert!(matches!(e, Error::SchemaTooNew { .. }), "{e:?}");
    let message = e.to_string();
    assert!(
        message.contains(&format!(
            "schema version {newer}, newer than the {SCHEMA_VERSION}"
        )),
        "{message}"
    );
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_server_but_never_the_password() {
    let pg = Pg::shared();
    let url_ok = fresh_database().await;
    let database = url_ok.rsplit('/').next().unwrap().to_string();
    let wrong = "wrong-pw-3f9d2a";
    let e = PgBackend::connect(&Settings::new(url(pg, wrong, &database)))
        .await
        .unwrap_err();
    let message = e.to_string();
    let addr = format!("{}:{}", pg.host(), pg.port());
    assert!(message.contains(&addr), "{message}");
    assert!(!message.contains(wrong), "{message}");
    assert!(!format!("{e:?}").contains(wrong));

    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret = "unreachable-pw-8c1e";
    let settings = Settings::new(format!("postgres://u:{secret}@127.0.0.1:{port}/x"));
    let e = PgBackend::connect_retrying(&settings, Some(2))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PostgresUnreachable { .. }), "{e:?}");
    let message = e.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(!message.contains(secret), "{message}");
    assert!(!format!("{settings:?}").contains(secret));
}

/// The same server journey as `restart.rs` for SQLite: state written
/// through a real server survives a restart on PostgreSQL storage, and the
/// table holds none of it in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_postgresql_storage_keeps_its_state_across_a_restart() {
    let url = fresh_database().await;
    let key = [9u8; 32];
    let backend = Arc::new(PgBackend::connect(&Settings::new(&url)).await.unwrap());
    let storage = Storage::initialize(backend, &key).await.unwrap();
    let root = pgsecrets::server::initialize(&storage, None).await.unwrap();
    let s = TestServer::start_on(storage, root.clone(), 1 << 20).await;
    let policy = "path \"sys/mounts\" { capabilities = [\"read\"] } # marker-policy-text";
    assert_eq!(
        s.write("sys/policies/acl/keeper", json!({"policy": policy}))
            .await
            .status,
        204
    );
    let token = s.token_with(&["keeper"]).await;
    s.shutdown().await;

    let rows = table(&sql(&url).await).await;
    let contains = |needle: &str| {
        rows.iter()
            .any(|(_, v)| v.windows(needle.len()).any(|w| w == needle.as_bytes()))
    };
    assert!(!contains(&token) && !contains(&root), "a token in clear");
    assert!(!contains("marker-policy-text"), "policy text in clear");

    let backend = Arc::new(PgBackend::connect(&Settings::new(&url)).await.unwrap());
    let storage = Storage::unseal(backend, &key).await.unwrap();
    let s = TestServer::start_on(storage, root, 1 << 20).await;
    assert_eq!(s.read_as(&token, "sys/mounts").await.status, 200);
    assert_eq!(
        s.read("sys/policies/acl/keeper").await.data()["policy"],
        policy
    );
    s.shutdown().await;
}

/// Nodes and their database often start together: an unreachable database
/// is retried (capped backoff) until it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_waits_for_a_database_that_is_not_up_yet() {
    let pg = Arc::new(Pg::start(PgVersion::under_test()));
    let settings = Settings::new(url(&pg, pg.password(), "postgres"));
    pg.stop();
    let e = PgBackend::connect_retrying(&settings, Some(1))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PostgresUnreachable { .. }), "{e:?}");
    let waiting = tokio::spawn(async move { PgBackend::connect_retrying(&settings, None).await });
    let restarted = Arc::clone(&pg);
    tokio::task::spawn_blocking(move || restarted.restart())
        .await
        .unwrap();
    // A bound against hanging the run, not a timing assertion.
    let backend = tokio::time::timeout(std::time::Duration::from_secs(120), waiting)
        .await
        .expect("connected once the database was up")
        .unwrap()
        .unwrap();
    backend.apply(&[Op::put("k", "v")]).unwrap();
    assert_eq!(backend.get("k").unwrap().as_deref(), Some(&b"v"[..]));

    // A database restart while running needs no restart of ours: the pool
    // replaces the connections the restart closed. A request caught by the
    // restart may fail; the next ones succeed.
    pg.restart();
    let outcomes: Vec<bool> = (0..3)
        .map(|i| backend.apply(&[Op::put("k", format!("{i}"))]).is_ok())
        .collect();
    assert!(outcomes[1..].iter().all(|ok| *ok), "{outcomes:?}");
    assert_eq!(backend.get("k").unwrap().as_deref(), Some(&b"2"[..]));
}

/// `operator init` and `server` with `backend = "postgresql"`, the URL
/// taken from `PGSECRETS_PG_CONNECTION_URL` over the file's (whose password
/// is wrong): the environment wins, as Vault's `VAULT_PG_CONNECTION_URL`.
#[test]
fn operator_init_and_server_run_on_postgresql_storage_with_the_url_from_the_environment() {
    use crate::support::process::{binary, curl, free_port, sigterm, wait_exit, wait_healthy};
    use std::process::Stdio;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = rt.block_on(fresh_database());
    let pg = Pg::shared();
    let database = url.rsplit('/').next().unwrap();
    let file_url = self::url(pg, "not-the-password", database);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("pgsecrets.toml");
    std::fs::write(
        &config,
        format!(
            "[listener]\naddress = \"127.0.0.1:{port}\"\n[storage]\nbackend = \"postgresql\"\n\
             connection_url = \"{file_url}\"\n[seal]\nkey_file = \"unseal.key\"\n"
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut command = binary();
        command
            .args(args)
            .arg("--config")
            .arg(&config)
            .env(pgsecrets::storage::postgresql::CONNECTION_URL_ENV, &url);
        command
    };
    let out = run(&["operator", "init"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(pg.password()));
    let root = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Root Token: "))
        .expect("root token printed")
        .to_string();
    let again = run(&["operator", "init"]).output().unwrap();
    assert_eq!(again.status.code(), Some(1));

    let api = format!("http://127.0.0.1:{port}");
    for round in 0..2 {
        let mut child = run(&["server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_healthy(&api);
        if round == 0 {
            let (code, body) = curl(&[
                "-X",
                "POST",
                "-H",
                &format!("X-Vault-Token: {root}"),
                "-d",
                r#"{"policy": "path \"sys/mounts\" { capabilities = [\"read\"] }"}"#,
                &format!("{api}/v1/sys/policies/acl/survivor"),
            ]);
            assert_eq!(code, 204, "{body}");
        }
        let (code, body) = curl(&[
            "-H",
            &format!("X-Vault-Token: {root}"),
            &format!("{api}/v1/sys/policies/acl/survivor"),
        ]);
        assert_eq!(code, 200, "round {round}: {body}");
        sigterm(&child);
        assert!(wait_exit(&mut child).success());
    }

    // Without the environment, the file's wrong password is refused,
    // named by host:port and never shown.
    let out = binary()
        .args(["server", "--config"])
        .arg(&config)
        .env_remove(pgsecrets::storage::postgresql::CONNECTION_URL_ENV)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:{}", pg.host(), pg.port())),
        "{stderr}"
    );
    assert!(
        !stderr.contains("not-the-password") && !stderr.contains(pg.password()),
        "{stderr}"
    );
}
