//! `database/clone/<cluster>`: a restored copy at another host.

use serde_json::json;

use crate::support::engine::{can_login, register};
use crate::support::pg::{Pg, PgVersion};
use crate::support::server::TestServer;

#[tokio::test]
async fn a_restored_copy_is_registered_with_its_own_passwords() {
    let original = Pg::start(PgVersion::under_test());
    let s = TestServer::start().await;
    let user = register(&s, &original, "orig").await;
    assert_eq!(
        s.write("database/cluster/orig/shop", json!({}))
            .await
            .status,
        200
    );
    assert_eq!(
        s.write("database/cluster/orig/old", json!({})).await.status,
        200
    );
    assert_eq!(s.delete("database/cluster/orig/old").await.status, 204);
    // The backup is taken now; the original rotates afterwards, so the copy
    // only knows an older root password.
    let at_backup = s.read("database/cluster/orig").await.data();
    let copy = original.restored_copy();
    assert_eq!(
        s.write("database/rotate-root/orig", json!({})).await.status,
        204
    );
    let original_now = s.read("database/cluster/orig").await.data();

    let r = s
        .write(
            "database/clone/orig",
            json!({"target": "copy1", "host": copy.host(), "port": copy.port()}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.data()["databases"],
        json!(["shop"]),
        "disabled databases are not inherited by default"
    );
    let cloned = s.read("database/cluster/copy1").await.data();
    assert_eq!(cloned["state"], "active");
    assert_eq!(cloned["port"], copy.port());
    let copy_pw = cloned["password"].as_str().unwrap();
    assert_ne!(copy_pw, at_backup["password"].as_str().unwrap());
    assert_ne!(copy_pw, original_now["password"].as_str().unwrap());
    assert!(
        can_login(&copy, &user, copy_pw, "postgres").await,
        "the copy's new root password works"
    );
    assert!(
        !can_login(
            &copy,
            &user,
            at_backup["password"].as_str().unwrap(),
            "postgres"
        )
        .await
    );
    let manage = cloned["management_role"].as_str().unwrap();
    assert!(
        can_login(
            &copy,
            manage,
            cloned["management_password"].as_str().unwrap(),
            "postgres"
        )
        .await
    );
    // The original is unchanged.
    assert!(
        can_login(
            &original,
            &user,
            original_now["password"].as_str().unwrap(),
            "postgres"
        )
        .await
    );
    assert_eq!(
        s.read("database/cluster/copy1/shop").await.data()["state"],
        "active"
    );

    let r = s
        .write("database/clone/orig", json!({"target": "copy2", "host": copy.host(), "port": copy.port(), "inherit_deleted_db": true}))
        .await;
    assert_eq!(
        r.status, 400,
        "the copy's passwords were rotated by copy1: {}",
        r.text
    );
    let r = s
        .write(
            "database/clone/orig",
            json!({"target": "copy1", "host": copy.host(), "port": copy.port()}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("already registered"), "{}", r.text);
    let r = s
        .write(
            "database/clone/nosuch",
            json!({"target": "x1", "host": copy.host()}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = s
        .write("database/clone/orig", json!({"host": copy.host()}))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("target"), "{}", r.text);
    assert_eq!(s.read("database/cluster/copy2").await.status, 404);
}
