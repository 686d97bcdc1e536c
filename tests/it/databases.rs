//! `database/cluster/<cluster>/<database>`: create, adopt, initialise, disable.

use serde_json::json;

use crate::support::engine::{check_database_is_usable, register, role_exists};
use crate::support::pg::Pg;
use crate::support::server::TestServer;

#[tokio::test]
async fn a_database_is_created_and_initialised_for_temporary_users() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    register(&s, pg, "dbc1").await;
    check_database_is_usable(&s, pg, "dbc1", "app-db.v2").await;
    let r = s.list("database/cluster/dbc1").await;
    assert_eq!(r.data()["keys"], json!(["app-db.v2"]));
    assert_eq!(r.data()["key_info"]["app-db.v2"]["state"], "active");
}

#[tokio::test]
async fn existing_databases_are_refused_unless_adopted() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    register(&s, pg, "dbc2").await;
    pg.admin()
        .await
        .batch_execute("CREATE DATABASE preexisting_dbc2")
        .await
        .unwrap();
    let r = s
        .write("database/cluster/dbc2/preexisting_dbc2", json!({}))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("create_db=false"), "{}", r.text);
    assert_eq!(
        s.read("database/cluster/dbc2/preexisting_dbc2")
            .await
            .status,
        404,
        "nothing stored"
    );
    let r = s
        .write(
            "database/cluster/dbc2/preexisting_dbc2",
            json!({"create_db": false, "objects_owner_role": "owner_dbc2"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["objects_owner_role"], "owner_dbc2");
    assert!(role_exists(pg, "owner_dbc2").await);
    let r = s
        .write(
            "database/cluster/dbc2/missing_dbc2",
            json!({"create_db": false}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("does not exist"), "{}", r.text);
}

#[tokio::test]
async fn hostile_or_oversized_database_names_change_nothing() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    register(&s, pg, "dbc3").await;
    let long = "d".repeat(64);
    let r = s
        .write(&format!("database/cluster/dbc3/{long}"), json!({}))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("63"), "{}", r.text);
    let r = s
        .write(
            "database/cluster/dbc3/ok_db",
            json!({"objects_owner_role": "bad\"owner"}),
        )
        .await;
    assert_eq!(r.status, 400);
    for hostile in ["a%22b", "x%3B%20DROP", "%C3%A9"] {
        let r = s
            .write(&format!("database/cluster/dbc3/{hostile}"), json!({}))
            .await;
        assert_eq!(r.status, 404, "{hostile}: {}", r.text);
    }
    let rows = pg
        .admin()
        .await
        .query(
            "SELECT 1 FROM pg_database WHERE datname LIKE 'ddd%' OR datname = 'ok_db'",
            &[],
        )
        .await
        .unwrap();
    assert!(rows.is_empty());
    assert_eq!(s.list("database/cluster/dbc3").await.status, 404);
    assert_eq!(
        s.write("database/cluster/nosuch/db1", json!({}))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn disabling_a_database_keeps_it_and_writing_reactivates_it() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    register(&s, pg, "dbc4").await;
    assert_eq!(
        s.write("database/cluster/dbc4/app4", json!({}))
            .await
            .status,
        200
    );
    assert_eq!(s.delete("database/cluster/dbc4/app4").await.status, 204);
    assert_eq!(
        s.read("database/cluster/dbc4/app4").await.data()["state"],
        "disabled"
    );
    assert_eq!(s.delete("database/cluster/dbc4/nosuch").await.status, 404);
    let r = s.write("database/cluster/dbc4/app4", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        s.read("database/cluster/dbc4/app4").await.data()["state"],
        "active"
    );
}
