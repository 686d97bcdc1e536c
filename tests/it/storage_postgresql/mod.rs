//! The postgresql storage backend against a real PostgreSQL: the KV
//! conformance suite every backend passes, no plaintext in its table,
//! migrations of nodes starting together and errors that never show the
//! password (here), the HA lock's fencing (`fencing`), and a server and
//! the binary on it (`server`). Each test has a database of its own on the
//! shared server.

mod fencing;
mod server;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use pgsecrets::storage::postgresql::{PgBackend, Settings, SCHEMA_VERSION};
use pgsecrets::storage::{Error, Op, Storage};

use crate::support::pg::Pg;

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
