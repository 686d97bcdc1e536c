//! The embedded SQLite backend: state survives restarts, and the file on
//! disk holds nothing readable.

use std::sync::Arc;

use pgsecrets::storage::{sqlite::SqliteBackend, Storage};
use serde_json::json;

use crate::support::server::TestServer;

const POLICY: &str = "path \"sys/mounts\" { capabilities = [\"read\"] } # marker-policy-text";

#[tokio::test]
async fn tokens_policies_and_mounts_survive_a_restart_and_nothing_is_plaintext_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pgsecrets.db");
    let key = [7u8; 32];
    let backend = Arc::new(SqliteBackend::open(&db).unwrap());
    let storage = Storage::initialize(backend, &key).await.unwrap();
    let root = pgsecrets::server::initialize(&storage, None).await.unwrap();
    let s = TestServer::start_on(storage, root.clone(), 1 << 20).await;
    assert_eq!(
        s.write("sys/policies/acl/keeper", json!({"policy": POLICY}))
            .await
            .status,
        204
    );
    assert_eq!(
        s.write("sys/mounts/db2", json!({"type": "database"}))
            .await
            .status,
        204
    );
    let token = s.token_with(&["keeper"]).await;
    s.shutdown().await;

    let raw = {
        let mut bytes = std::fs::read(&db).unwrap();
        if let Ok(wal) = std::fs::read(dir.path().join("pgsecrets.db-wal")) {
            bytes.extend(wal);
        }
        bytes
    };
    let contains = |needle: &str| raw.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!contains(&token), "a token is stored in clear");
    assert!(!contains(&root), "the root token is stored in clear");
    assert!(
        !contains("marker-policy-text"),
        "policy text is stored in clear"
    );
    assert!(
        contains("sys/policy/keeper"),
        "keys are visible (sanity check of the search)"
    );

    let backend = Arc::new(SqliteBackend::open(&db).unwrap());
    let storage = Storage::unseal(backend, &key).await.unwrap();
    let s = TestServer::start_on(storage, root.clone(), 1 << 20).await;
    assert_eq!(s.read_as(&token, "sys/mounts").await.status, 200);
    assert_eq!(
        s.read_as(&token, "auth/token/lookup-self").await.data()["policies"],
        json!(["default", "keeper"])
    );
    assert_eq!(
        s.read("sys/policies/acl/keeper").await.data()["policy"],
        POLICY
    );
    assert_eq!(s.read("sys/mounts/db2").await.data()["type"], "database");
    assert_eq!(s.request("GET", "db2/info", None, None).await.status, 200);
    s.shutdown().await;

    let backend = Arc::new(SqliteBackend::open(&db).unwrap());
    assert!(
        Storage::unseal(backend, &[8u8; 32]).await.is_err(),
        "a wrong key opens nothing"
    );
}
