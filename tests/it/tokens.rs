//! `auth/token/*`: create, lookup, renew, revoke, expiry, limits.

use serde_json::json;

use crate::support::server::TestServer;

#[tokio::test]
async fn a_created_token_works_and_lookup_self_shows_what_clients_parse() {
    let s = TestServer::start().await;
    let r = s
        .write("auth/token/create", json!({"policies": ["reader"], "ttl": "1h", "display_name": "app", "meta": {"team": "a"}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert!(
        body["data"].is_null(),
        "vaultrs needs data:null on auth responses"
    );
    let auth = &body["auth"];
    let token = auth["client_token"].as_str().unwrap();
    assert_eq!(auth["policies"], json!(["default", "reader"]));
    assert_eq!(auth["token_policies"], json!(["default", "reader"]));
    assert_eq!(auth["token_type"], "service");
    assert_eq!(auth["renewable"], true);
    assert_eq!(auth["orphan"], false);
    let ttl = auth["lease_duration"].as_u64().unwrap();
    assert!((3598..=3600).contains(&ttl), "{ttl}");

    let r = s.read_as(token, "auth/token/lookup-self").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = r.data();
    for key in [
        "accessor",
        "creation_time",
        "creation_ttl",
        "display_name",
        "entity_id",
        "explicit_max_ttl",
        "id",
        "num_uses",
        "orphan",
        "path",
        "policies",
        "ttl",
        "expire_time",
        "issue_time",
        "type",
        "renewable",
        "meta",
    ] {
        assert!(d.get(key).is_some(), "lookup-self lacks {key}: {d}");
    }
    assert_eq!(d["id"], token);
    assert_eq!(d["display_name"], "token-app");
    assert_eq!(d["meta"]["team"], "a");
    assert_eq!(d["creation_ttl"], 3600);
    assert!(d["creation_time"].is_i64());
}

#[tokio::test]
async fn revoke_self_makes_the_token_useless() {
    let s = TestServer::start().await;
    let t = s.token_with(&["default"]).await;
    let r = s
        .request("POST", "auth/token/revoke-self", Some(&t), None)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(s.read_as(&t, "auth/token/lookup-self").await.status, 403);
}

#[tokio::test]
async fn revoking_a_parent_revokes_its_children_but_not_orphans() {
    let s = TestServer::start().await;
    s.write(
        "sys/policies/acl/maker",
        json!({"policy": r#"path "auth/token/create" { capabilities = ["update"] }"#}),
    )
    .await;
    let parent = s.token_with(&["maker"]).await;
    let child = s
        .write_as(&parent, "auth/token/create", json!({}))
        .await
        .json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let orphan = s.write("auth/token/create-orphan", json!({})).await.json()["auth"]
        ["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s.read_as(&child, "auth/token/lookup-self").await.status,
        200
    );
    let r = s.write("auth/token/revoke", json!({"token": parent})).await;
    assert_eq!(r.status, 204);
    assert_eq!(
        s.read_as(&parent, "auth/token/lookup-self").await.status,
        403
    );
    assert_eq!(
        s.read_as(&child, "auth/token/lookup-self").await.status,
        403
    );
    assert_eq!(
        s.read_as(&orphan, "auth/token/lookup-self").await.status,
        200
    );
}

#[tokio::test]
async fn lookup_and_accessor_routes_find_tokens_and_refuse_unknown_ones() {
    let s = TestServer::start().await;
    let r = s.write("auth/token/create", json!({})).await;
    let token = r.json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let accessor = r.json()["auth"]["accessor"].as_str().unwrap().to_string();
    let r = s.write("auth/token/lookup", json!({"token": token})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.data()["accessor"], accessor);
    let r = s
        .write("auth/token/lookup", json!({"token": "pgs.nope"}))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error(), "bad token");
    // No token given: the caller is looked up, as in Vault.
    let r = s.write("auth/token/lookup", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["id"], s.root_token.as_str());
    let r = s
        .write("auth/token/lookup-accessor", json!({"accessor": accessor}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.data()["id"],
        "",
        "accessor lookups never reveal the token"
    );
    let r = s
        .write("auth/token/revoke-accessor", json!({"accessor": accessor}))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        s.read_as(&token, "auth/token/lookup-self").await.status,
        403
    );
}

#[tokio::test]
async fn renewal_counts_from_now_and_respects_the_explicit_max() {
    let s = TestServer::start().await;
    let r = s
        .write(
            "auth/token/create",
            json!({"ttl": "10m", "explicit_max_ttl": "30m"}),
        )
        .await;
    let t = r.json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s
        .write_as(&t, "auth/token/renew-self", json!({"increment": "20m"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["data"].is_null());
    let d = r.json()["auth"]["lease_duration"].as_u64().unwrap();
    assert!((1198..=1200).contains(&d), "{d}");
    let r = s
        .write_as(&t, "auth/token/renew-self", json!({"increment": "2h"}))
        .await;
    let d = r.json()["auth"]["lease_duration"].as_u64().unwrap();
    assert!(
        (1795..=1800).contains(&d),
        "capped at explicit_max_ttl: {d}"
    );
    // hvac sends increment: null
    let r = s
        .write_as(&t, "auth/token/renew-self", json!({"increment": null}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn the_root_token_cannot_be_renewed_and_non_renewable_tokens_say_so() {
    let s = TestServer::start().await;
    let r = s.write("auth/token/renew-self", json!({})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "lease is not renewable");
    let r = s
        .write("auth/token/create", json!({"renewable": false}))
        .await;
    let t = r.json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.write_as(&t, "auth/token/renew-self", json!({})).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let s = TestServer::start().await;
    let r = s.write("auth/token/create", json!({"ttl": "1s"})).await;
    let t = r.json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    // Its second passes on the server's clock, not the test's.
    s.advance(std::time::Duration::from_secs(2));
    let r = s.read_as(&t, "auth/token/lookup-self").await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn limited_use_tokens_stop_after_their_uses() {
    let s = TestServer::start().await;
    let r = s.write("auth/token/create", json!({"num_uses": 2})).await;
    let t = r.json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.read_as(&t, "auth/token/lookup-self").await.status, 200);
    assert_eq!(s.read_as(&t, "auth/token/lookup-self").await.status, 200);
    assert_eq!(s.read_as(&t, "auth/token/lookup-self").await.status, 403);
    let r = s.write("auth/token/create", json!({"num_uses": -1})).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn a_child_cannot_gain_policies_or_root() {
    let s = TestServer::start().await;
    s.write(
        "sys/policies/acl/maker",
        json!({"policy": r#"path "auth/token/create" { capabilities = ["update"] }"#}),
    )
    .await;
    let t = s.token_with(&["maker"]).await;
    let r = s
        .write_as(&t, "auth/token/create", json!({"policies": ["maker"]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s
        .write_as(&t, "auth/token/create", json!({"policies": ["admin"]}))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("subset"), "{}", r.text);
    let r = s
        .write_as(&t, "auth/token/create", json!({"policies": ["root"]}))
        .await;
    assert_eq!(r.status, 400);
    let r = s.write("auth/token/create", json!({"type": "batch"})).await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("batch"));
}

#[tokio::test]
async fn a_chosen_token_id_works_once() {
    let s = TestServer::start().await;
    let r = s
        .write("auth/token/create", json!({"id": "my-fixed-token-1"}))
        .await;
    assert_eq!(r.json()["auth"]["client_token"], "my-fixed-token-1");
    assert_eq!(
        s.read_as("my-fixed-token-1", "auth/token/lookup-self")
            .await
            .status,
        200
    );
    let r = s
        .write("auth/token/create", json!({"id": "my-fixed-token-1"}))
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn a_token_can_be_renewed_by_value() {
    let s = TestServer::start().await;
    let r = s.write("auth/token/create", json!({"ttl": "10m"})).await;
    let t = r.json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s
        .write("auth/token/renew", json!({"token": t, "increment": "1h"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = r.json()["auth"]["lease_duration"].as_u64().unwrap();
    assert!((3598..=3600).contains(&d), "{d}");
    assert_eq!(r.json()["auth"]["client_token"], t.as_str());
    let r = s
        .write("auth/token/renew", json!({"token": "pgs.unknown"}))
        .await;
    // Vault answers 400 here, not 403.
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "token not found");
}

#[tokio::test]
async fn revoke_orphan_revokes_only_the_token_and_its_children_live_on_as_orphans() {
    let s = TestServer::start().await;
    s.write(
        "sys/policies/acl/maker",
        json!({"policy": r#"path "auth/token/create" { capabilities = ["update"] }
path "auth/token/revoke-orphan" { capabilities = ["update"] }"#}),
    )
    .await;
    let parent = s.token_with(&["maker"]).await;
    let child = s
        .write_as(&parent, "auth/token/create", json!({}))
        .await
        .json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    // It needs sudo, which update alone does not give.
    let r = s
        .write_as(
            &parent,
            "auth/token/revoke-orphan",
            json!({"token": parent}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = s
        .write("auth/token/revoke-orphan", json!({"token": parent}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(
        s.read_as(&parent, "auth/token/lookup-self").await.status,
        403
    );
    let r = s.read_as(&child, "auth/token/lookup-self").await;
    assert_eq!(r.status, 200, "the child outlives its parent");
    assert_eq!(r.data()["orphan"], true);
    // Unknown tokens are not an error, as with revoke.
    let r = s
        .write("auth/token/revoke-orphan", json!({"token": "pgs.unknown"}))
        .await;
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn a_token_can_be_renewed_by_accessor_and_accessors_can_be_listed() {
    let s = TestServer::start().await;
    let r = s.write("auth/token/create", json!({"ttl": "10m"})).await;
    let auth = r.json()["auth"].clone();
    let accessor = auth["accessor"].as_str().unwrap();
    let r = s
        .write(
            "auth/token/renew-accessor",
            json!({"accessor": accessor, "increment": "1h"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = r.json()["auth"]["lease_duration"].as_u64().unwrap();
    assert!((3598..=3600).contains(&d), "{d}");
    assert_eq!(r.json()["auth"]["accessor"], accessor);
    assert_eq!(
        r.json()["auth"]["client_token"],
        "",
        "accessor routes never reveal the token"
    );
    let token = auth["client_token"].as_str().unwrap();
    let ttl = s.read_as(token, "auth/token/lookup-self").await.data()["ttl"]
        .as_u64()
        .unwrap();
    assert!(ttl > 600, "the token itself was renewed: {ttl}");
    let r = s
        .write("auth/token/renew-accessor", json!({"accessor": "nope"}))
        .await;
    assert_eq!(r.status, 400);

    let r = s.list("auth/token/accessors").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let keys = r.data()["keys"].clone();
    assert!(
        keys.as_array().unwrap().iter().any(|k| k == accessor),
        "{keys}"
    );
    // Listing accessors needs sudo, which list alone does not give.
    s.write(
        "sys/policies/acl/lister",
        json!({"policy": r#"path "auth/token/accessors/" { capabilities = ["list"] }"#}),
    )
    .await;
    let plain = s.token_with(&["lister"]).await;
    let r = s
        .request("LIST", "auth/token/accessors", Some(&plain), None)
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn token_tidy_removes_index_entries_that_point_at_no_token() {
    let s = TestServer::start().await;
    // What a crash between two writes of an older version could leave.
    s.storage
        .put("auth/token/accessor/dangling123", b"0000".to_vec())
        .await
        .unwrap();
    let r = s.list("auth/token/accessors").await;
    assert!(r.text.contains("dangling123"), "{}", r.text);
    let r = s.write("auth/token/tidy", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["data"], serde_json::Value::Null);
    assert_eq!(
        r.json()["warnings"][0],
        "tidy: revoked 0 expired tokens and removed 1 index entries that pointed at no token"
    );
    let r = s.list("auth/token/accessors").await;
    assert!(!r.text.contains("dangling123"), "{}", r.text);
    assert_eq!(
        s.read("auth/token/lookup-self").await.status,
        200,
        "live tokens stay"
    );
    s.write(
        "sys/policies/acl/tidier",
        json!({"policy": r#"path "auth/token/tidy" { capabilities = ["update"] }"#}),
    )
    .await;
    let t = s.token_with(&["tidier"]).await;
    let r = s.write_as(&t, "auth/token/tidy", json!({})).await;
    assert_eq!(r.status, 403, "tidy needs sudo");
}

/// Vault takes any chosen id without a '.' (so `-dev-root-token-id=root`
/// works); pgsecrets used to demand 8 characters.
#[tokio::test]
async fn a_short_chosen_id_is_accepted_and_a_dotted_one_refused_as_in_vault() {
    let s = TestServer::start().await;
    let r = s.write("auth/token/create", json!({"id": "abc"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(s.read_as("abc", "auth/token/lookup-self").await.status, 200);
    let r = s.write("auth/token/create", json!({"id": "a.b.c"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error(), "custom token ID cannot have a '.' in the value");
}
