//! `database/gc/`: disabled clusters and databases, and their purge.

use serde_json::json;

use crate::support::engine::register;
use crate::support::pg::Pg;
use crate::support::server::TestServer;

#[tokio::test]
async fn only_disabled_things_are_listed_read_and_purged() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    register(&s, pg, "gc1").await;
    assert_eq!(
        s.write("database/cluster/gc1/gcdb_a", json!({}))
            .await
            .status,
        200
    );
    assert_eq!(
        s.write("database/cluster/gc1/gcdb_b", json!({}))
            .await
            .status,
        200
    );
    assert_eq!(
        s.list("database/gc/clusters").await.status,
        404,
        "nothing disabled yet"
    );
    let r = s.delete("database/gc/cluster/gc1").await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("disable it"), "{}", r.text);
    let r = s.delete("database/gc/cluster/gc1/gcdb_a").await;
    assert_eq!(r.status, 400);

    // A disabled database is listed, read and purged on its own.
    assert_eq!(s.delete("database/cluster/gc1/gcdb_a").await.status, 204);
    assert_eq!(
        s.list("database/gc/cluster/gc1").await.data()["keys"],
        json!(["gcdb_a"])
    );
    assert_eq!(
        s.read("database/gc/cluster/gc1/gcdb_a").await.data()["state"],
        "disabled"
    );
    assert_eq!(s.delete("database/gc/cluster/gc1/gcdb_a").await.status, 204);
    assert_eq!(s.read("database/cluster/gc1/gcdb_a").await.status, 404);
    assert_eq!(
        s.read("database/cluster/gc1/gcdb_b").await.data()["state"],
        "active"
    );

    // A disabled cluster shows its credentials to sudo callers only.
    assert_eq!(s.delete("database/cluster/gc1").await.status, 204);
    assert_eq!(
        s.list("database/gc/clusters").await.data()["keys"],
        json!(["gc1"])
    );
    let d = s.read("database/gc/cluster/gc1").await.data();
    assert!(d["password"].is_string());
    s.write(
        "sys/policies/acl/gcread",
        json!({"policy": r#"path "database/gc/*" { capabilities = ["read", "list"] }"#}),
    )
    .await;
    let t = s.token_with(&["gcread"]).await;
    assert_eq!(s.read_as(&t, "database/gc/cluster/gc1").await.status, 403);

    assert_eq!(s.delete("database/gc/cluster/gc1").await.status, 204);
    assert_eq!(s.read("database/cluster/gc1").await.status, 404);
    assert_eq!(
        s.read("database/cluster/gc1/gcdb_b").await.status,
        404,
        "databases purged with the cluster"
    );
    assert_eq!(s.list("database/gc/clusters").await.status, 404);
    assert_eq!(s.delete("database/gc/cluster/gc1").await.status, 404);
    // PostgreSQL is untouched.
    let rows = pg
        .admin()
        .await
        .query("SELECT 1 FROM pg_database WHERE datname = 'gcdb_b'", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
}
