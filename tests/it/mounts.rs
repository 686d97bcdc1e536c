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

/// What `bao secrets enable` and `bao secrets tune` send (captured from the
/// CLI): nulls, Go durations, list-valued keys, `""` for "unchanged".
#[tokio::test]
async fn the_vault_cli_mount_config_shape_is_accepted() {
    let s = TestServer::start().await;
    let r = s
        .write(
            "sys/mounts/db2",
            json!({"type": "database", "description": "", "config": {"options": null,
                "default_lease_ttl": "0s", "max_lease_ttl": "0s", "force_no_cache": false},
                "local": false, "seal_wrap": false, "external_entropy_access": false,
                "options": null}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = s
        .write(
            "sys/mounts/db2/tune",
            json!({"options": {"x": "1"}, "default_lease_ttl": "1h0m0s", "description": "y",
                "max_lease_ttl": "2h0m0s", "force_no_cache": false,
                "audit_non_hmac_response_keys": ["a"], "listing_visibility": "hidden",
                "audit_non_hmac_request_keys": "b,c"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let mount = s.read("sys/mounts/db2").await.data();
    assert_eq!(mount["description"], "y");
    assert_eq!(mount["options"], json!({"x": "1"}));
    assert_eq!(
        mount["config"],
        json!({"default_lease_ttl": 3600, "max_lease_ttl": 7200, "force_no_cache": false,
            "listing_visibility": "hidden", "audit_non_hmac_request_keys": ["b", "c"],
            "audit_non_hmac_response_keys": ["a"]})
    );
    // "" leaves a TTL as it is; an empty list clears a setting.
    let r = s
        .write(
            "sys/mounts/db2/tune",
            json!({"default_lease_ttl": "", "max_lease_ttl": "", "audit_non_hmac_request_keys": []}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let tune = s.read("sys/mounts/db2/tune").await.data();
    assert_eq!(
        (
            tune["default_lease_ttl"].clone(),
            tune["max_lease_ttl"].clone()
        ),
        (json!(3600), json!(7200))
    );
    assert!(tune.get("audit_non_hmac_request_keys").is_none(), "{tune}");
    // Wrong values: Vault's words, nothing changed.
    for (path, body, message) in [
        (
            "sys/mounts/db2/tune",
            json!({"listing_visibility": "bogus"}),
            "invalid listing_visibility bogus",
        ),
        (
            "sys/mounts/db5",
            json!({"type": "database", "config": {"default_lease_ttl": true}}),
            "unable to convert",
        ),
        (
            "sys/mounts/db5",
            json!({"type": "database", "config": "x"}),
            "config",
        ),
    ] {
        let r = s.write(path, body).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        assert!(r.error().contains(message), "{path}: {}", r.text);
    }
    assert_eq!(
        s.read("sys/mounts/db2").await.data()["config"]["listing_visibility"],
        "hidden"
    );
    assert_eq!(s.read("sys/mounts/db5").await.status, 400);
}

/// `sys/auth/token` and its tune, as `vault auth list/tune` use them.
#[tokio::test]
async fn the_token_auth_method_is_read_and_tuned_under_sys_auth() {
    let s = TestServer::start().await;
    let r = s.read("sys/auth/token").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["type"], "token");
    assert_eq!(r.json()["type"], "token", "also at the top level");
    let r = s
        .write(
            "sys/auth/token/tune",
            json!({"options": null, "default_lease_ttl": "1h0m0s", "max_lease_ttl": "", "force_no_cache": false}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let tune = s.read("sys/auth/token/tune").await.data();
    assert_eq!(tune["default_lease_ttl"], 3600);
    assert_eq!(tune["max_lease_ttl"], 2_764_800);
    assert_eq!(tune["token_type"], "default-service");
    assert_eq!(
        s.read("sys/mounts/auth/token/tune").await.data()["default_lease_ttl"],
        3600
    );
    assert_eq!(s.read("sys/auth/nope").await.status, 400);
}

/// `sys/internal/ui/mounts`: a token sees the mounts it is granted
/// something under; no token sees only `listing_visibility=unauth` ones.
#[tokio::test]
async fn ui_mounts_show_what_the_caller_can_use() {
    let s = TestServer::start().await;
    for (path, visibility) in [("db2", "unauth"), ("db3", "")] {
        let r = s
            .write(
                &format!("sys/mounts/{path}"),
                json!({"type": "database", "config": {"listing_visibility": visibility}}),
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
    }
    s.write(
        "sys/policies/acl/db3-creds",
        json!({"policy": "path \"db3/creds/*\" { capabilities = [\"read\"] }"}),
    )
    .await;
    let token = s
        .write("auth/token/create", json!({"policies": ["db3-creds"]}))
        .await
        .json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let keys =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    let all = s.read_as(&token, "sys/internal/ui/mounts").await.data();
    // db3/ by its policy, sys/ and token/ by the default policy.
    assert_eq!(keys(&all["secret"]), ["db3/", "sys/"]);
    assert_eq!(keys(&all["auth"]), ["token/"]);
    let anonymous = s.request("GET", "sys/internal/ui/mounts", None, None).await;
    assert_eq!(anonymous.status, 200, "{}", anonymous.text);
    assert_eq!(
        anonymous.data()["secret"],
        json!({"db2/": {"type": "database", "description": "", "options": {}}})
    );
    let one = s
        .read_as(&token, "sys/internal/ui/mounts/db3/creds/x")
        .await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(one.data()["path"], "db3/");
    let no_token = s
        .request("GET", "sys/internal/ui/mounts/db2", None, None)
        .await;
    assert_eq!(no_token.status, 403, "{}", no_token.text);
    let denied = s.read_as(&token, "sys/internal/ui/mounts/database").await;
    assert_eq!(denied.status, 403, "{}", denied.text);
    assert!(
        denied
            .error()
            .contains("preflight capability check returned 403"),
        "{}",
        denied.text
    );
}

/// `?help=1` on a mount's root lists its paths (`vault path-help database/`).
#[tokio::test]
async fn help_on_a_mount_root_lists_its_paths() {
    let s = TestServer::start().await;
    for (root, route) in [
        ("database", "^creds/"),
        ("sys", "^mounts$"),
        ("auth/token", "^create"),
    ] {
        let r = s.read(&format!("{root}?help=1")).await;
        assert_eq!(r.status, 200, "{root}: {}", r.text);
        let help = r.json()["help"].as_str().unwrap().to_string();
        assert!(
            help.contains("## PATHS") && help.contains(route),
            "{root}: {help}"
        );
        assert!(r.json()["openapi"]["paths"].as_object().unwrap().len() > 3);
    }
}

/// `sys/remount` (`vault secrets move`) on real PostgreSQL: the clusters,
/// databases and roles go with the mount and credentials are issued and
/// revoked under the new path; a mount holding leases is not moved (their
/// IDs name it), and bad moves are refused with Vault's words.
#[tokio::test]
async fn a_database_mount_moves_with_its_clusters_but_not_while_it_holds_leases() {
    let pg = crate::support::pg::Pg::shared();
    let s = TestServer::start().await;
    assert_eq!(
        s.write("sys/mounts/db2", json!({"type": "database"}))
            .await
            .status,
        204
    );
    let (user, password) = crate::support::engine::root_user(pg, "root_remount").await;
    let r = s
        .write(
            "db2/cluster/moving",
            crate::support::engine::cluster_body(pg, &user, &password),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        s.write("db2/cluster/moving/movingdb", json!({}))
            .await
            .status,
        200
    );
    let r = s
        .write(
            "db2/roles/app",
            json!({"default_ttl": "1h", "max_ttl": "2h"}),
        )
        .await;
    assert!(r.status == 204 || r.status == 200, "{}", r.text);
    let creds = s.read("db2/creds/moving/movingdb/app").await;
    assert_eq!(creds.status, 200, "{}", creds.text);
    let lease = creds.json()["lease_id"].as_str().unwrap().to_string();

    let r = s
        .write("sys/remount", json!({"from": "db2", "to": "db3"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().contains("1 lease"), "{}", r.text);
    assert_eq!(
        s.read("db2/cluster/moving").await.status,
        200,
        "nothing moved"
    );
    assert_eq!(
        s.write("sys/leases/revoke", json!({"lease_id": lease}))
            .await
            .status,
        204
    );

    let r = s
        .write("sys/remount", json!({"from": "db2/", "to": "db3/"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.data()["migration_id"].as_str().unwrap().to_string();
    let status = s.read(&format!("sys/remount/status/{id}")).await.data();
    assert_eq!(
        status["migration_info"],
        json!({"source_mount": "db2/", "target_mount": "db3/", "status": "success"})
    );
    assert_eq!(s.read("db2/cluster/moving").await.status, 404);
    assert_eq!(s.read("db3/cluster/moving").await.status, 200);
    let creds = s.read("db3/creds/moving/movingdb/app").await;
    assert_eq!(creds.status, 200, "{}", creds.text);
    let lease = creds.json()["lease_id"].as_str().unwrap().to_string();
    let username = creds.data()["username"].as_str().unwrap().to_string();
    assert!(lease.starts_with("db3/creds/"), "{lease}");
    assert!(crate::support::engine::role_exists(pg, &username).await);
    assert_eq!(
        s.write("sys/leases/revoke", json!({"lease_id": lease}))
            .await
            .status,
        204
    );
    assert!(
        !crate::support::engine::role_exists(pg, &username).await,
        "revoked under the new path"
    );

    for (body, message) in [
        (
            json!({"from": "nope/", "to": "x/"}),
            "no matching mount at \"nope/\"",
        ),
        (
            json!({"from": "sys/", "to": "x/"}),
            "cannot remount \"sys/\"",
        ),
        (
            json!({"from": "db3/", "to": "sys/"}),
            "cannot remount to destination sys/",
        ),
        (
            json!({"from": "db3/", "to": "auth/x"}),
            "cannot remount to destination auth/x/",
        ),
        (json!({"from": "db3/", "to": "database/sub"}), "in use"),
        (json!({"from": "db3/"}), "to"),
    ] {
        let r = s.write("sys/remount", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert!(r.error().contains(message), "{body}: {}", r.text);
    }
    assert_eq!(s.delete("sys/mounts/db3").await.status, 204);
}
