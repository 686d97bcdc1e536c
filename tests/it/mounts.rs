//! `sys/mounts`: the mount table.

use serde_json::json;

use crate::support::server::TestServer;

#[tokio::test]
async fn the_database_engine_is_mounted_by_default_with_every_field_clients_need() {
    let s = TestServer::start().await;
    let r = s.read("sys/mounts").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    let db = &body["data"]["database/"];
    assert_eq!(db["type"], "database");
    assert!(db["accessor"].as_str().unwrap().starts_with("database_"));
    for key in [
        "description",
        "uuid",
        "local",
        "seal_wrap",
        "external_entropy_access",
        "options",
        "plugin_version",
        "running_plugin_version",
        "running_sha256",
    ] {
        assert!(db.get(key).is_some(), "mount entry lacks {key}");
    }
    assert_eq!(db["config"]["default_lease_ttl"], 0);
    assert_eq!(db["config"]["max_lease_ttl"], 0);
    assert_eq!(body["data"]["sys/"]["type"], "system");
    assert_eq!(
        body["database/"]["type"], "database",
        "keys repeated at top level"
    );
}

#[tokio::test]
async fn engines_can_be_mounted_tuned_and_unmounted() {
    let s = TestServer::start().await;
    let r = s
        .write("sys/mounts/db2", json!({"type": "database", "description": "second", "config": {"default_lease_ttl": "30m", "max_lease_ttl": "2h"}, "local": null}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = s.read("sys/mounts/db2").await;
    assert_eq!(r.data()["type"], "database");
    assert_eq!(r.data()["description"], "second");
    assert_eq!(r.data()["config"]["default_lease_ttl"], 1800);
    assert_eq!(r.data()["config"]["max_lease_ttl"], 7200);
    // The new mount serves the engine's routes.
    let r = s.request("GET", "db2/info", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.data()["name"], "pgsecrets");

    let r = s
        .write(
            "sys/mounts/db2/tune",
            json!({"default_lease_ttl": 600, "max_lease_ttl": "1h"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = s.read("sys/mounts/db2/tune").await;
    assert_eq!(r.data()["default_lease_ttl"], 600);
    assert_eq!(r.data()["max_lease_ttl"], 3600);
    let r = s
        .write("sys/mounts/db2/tune", json!({"default_lease_ttl": "2h"}))
        .await;
    assert_eq!(r.status, 400, "default above max is refused");
    assert_eq!(
        s.read("sys/mounts/db2/tune").await.data()["default_lease_ttl"],
        600
    );

    assert_eq!(s.delete("sys/mounts/db2").await.status, 204);
    assert!(s.read("sys/mounts").await.data().get("db2/").is_none());
    assert_eq!(s.read("db2/info").await.status, 404);
    // Deleting again is fine.
    assert_eq!(s.delete("sys/mounts/db2").await.status, 204);
}

#[tokio::test]
async fn bad_mount_requests_are_refused_and_change_nothing() {
    let s = TestServer::start().await;
    let r = s.write("sys/mounts/kv", json!({"type": "kv"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "plugin not found in the catalog: kv");
    let r = s
        .write("sys/mounts/database", json!({"type": "database"}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "path is already in use at database/");
    let r = s
        .write("sys/mounts/database/nested", json!({"type": "database"}))
        .await;
    assert_eq!(r.status, 400);
    let r = s.write("sys/mounts/x", json!({})).await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("\"type\""), "{}", r.text);
    let r = s
        .write("sys/mounts/a%22b", json!({"type": "database"}))
        .await;
    assert_eq!(r.status, 400);
    let r = s
        .write(
            "sys/mounts/sys2",
            json!({"type": "database", "config": {"max_lease_ttl": "-1h"}}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = s.read("sys/mounts/nothere").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "No secret engine mount at nothere/");
    let r = s.delete("sys/mounts/sys").await;
    assert_eq!(r.status, 400);
    let keys: Vec<String> = s
        .read("sys/mounts")
        .await
        .data()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, vec!["database/", "sys/"]);
}

#[tokio::test]
async fn sys_auth_lists_the_token_auth_method_as_vault_clients_expect() {
    let s = TestServer::start().await;
    let r = s.read("sys/auth").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    let token = &body["data"]["token/"];
    assert_eq!(token["type"], "token");
    assert!(
        token["accessor"]
            .as_str()
            .unwrap()
            .starts_with("auth_token_"),
        "{token}"
    );
    assert_eq!(token["config"]["token_type"], "default-service");
    for key in ["description", "uuid", "local", "seal_wrap", "options"] {
        assert!(token.get(key).is_some(), "auth entry lacks {key}");
    }
    assert_eq!(
        body["token/"]["type"], "token",
        "keys repeated at top level"
    );
    assert_eq!(
        body["data"].as_object().unwrap().len(),
        1,
        "only auth methods, no secrets engines"
    );
    let plain = s.token_with(&["default"]).await;
    assert_eq!(s.read_as(&plain, "sys/auth").await.status, 403);
}
