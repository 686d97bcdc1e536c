//! `database/metadata`: labels on clusters and databases.

use serde_json::json;

use crate::support::engine::register;
use crate::support::pg::Pg;
use crate::support::server::TestServer;

#[tokio::test]
async fn labels_are_set_looked_up_by_subset_and_removed() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    register(&s, pg, "meta1").await;
    assert_eq!(
        s.write("database/cluster/meta1/metadb", json!({}))
            .await
            .status,
        200
    );
    let r = s
        .write(
            "database/metadata",
            json!({"cluster": "meta1", "labels": {"team": "payments", "env": "prod"}}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = s
        .write("database/metadata", json!({"cluster": "meta1", "database": "metadb", "labels": {"team": "payments", "tier": "gold"}}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);

    let r = s.read("database/metadata?selector=team=payments").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["keys"], json!(["meta1", "meta1/metadb"]));
    let r = s
        .read("database/metadata?selector=team=payments,env=prod")
        .await;
    assert_eq!(r.data()["keys"], json!(["meta1"]));
    assert_eq!(r.data()["key_info"]["meta1"]["env"], "prod");
    assert_eq!(
        s.read("database/metadata?selector=team=other").await.status,
        404
    );
    let r = s.list("database/metadata").await;
    assert_eq!(r.data()["key_info"]["meta1/metadb"]["tier"], "gold");

    assert_eq!(s.delete("database/metadata/meta1/metadb").await.status, 204);
    assert_eq!(
        s.list("database/metadata").await.data()["keys"],
        json!(["meta1"])
    );
    assert_eq!(s.delete("database/metadata/meta1/metadb").await.status, 400);
}

#[tokio::test]
async fn bad_labels_are_refused_and_change_nothing() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    register(&s, pg, "meta2").await;
    let long_key = "k".repeat(65);
    let long_value = "v".repeat(129);
    for (body, expect) in [
        (
            json!({"cluster": "meta2", "labels": {long_key.clone(): "x"}}),
            "64",
        ),
        (
            json!({"cluster": "meta2", "labels": {"k": long_value}}),
            "128",
        ),
        (
            json!({"cluster": "meta2", "labels": {"bad key": "x"}}),
            "bad key",
        ),
        (json!({"cluster": "meta2", "labels": {}}), "at least one"),
        (
            json!({"cluster": "meta2", "labels": {"k": ["list"]}}),
            "labels",
        ),
        (json!({"cluster": "nosuch", "labels": {"k": "v"}}), "nosuch"),
        (
            json!({"cluster": "meta2", "database": "nosuchdb", "labels": {"k": "v"}}),
            "nosuchdb",
        ),
        (json!({"labels": {"k": "v"}}), "cluster"),
    ] {
        let r = s.write("database/metadata", body.clone()).await;
        assert!(r.status == 400 || r.status == 404, "{body}: {}", r.text);
        assert!(r.error().contains(expect), "{body}: {}", r.text);
    }
    assert_eq!(
        s.list("database/metadata").await.status,
        404,
        "nothing stored"
    );
    let r = s.read("database/metadata").await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("selector"), "{}", r.text);
}
