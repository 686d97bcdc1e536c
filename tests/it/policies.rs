//! ACL policies: storage routes and enforcement.

use serde_json::json;

use crate::support::server::TestServer;

const READER: &str = r#"
path "sys/policies/acl/*" {
  capabilities = ["read", "list"]
}
path "sys/mounts" {
  capabilities = ["read"]
}
path "auth/token/+/x" {
  capabilities = ["read"]
}
"#;

#[tokio::test]
async fn policies_are_written_read_listed_and_deleted() {
    let s = TestServer::start().await;
    let r = s
        .write("sys/policies/acl/Reader", json!({"policy": READER}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = s.read("sys/policies/acl/reader").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.data()["name"], "reader");
    assert_eq!(r.data()["policy"], READER);
    let r = s.list("sys/policies/acl").await;
    assert_eq!(r.data()["keys"], json!(["default", "reader", "root"]));
    let r = s.read("sys/policy").await;
    assert_eq!(r.json()["policies"], json!(["default", "reader", "root"]));
    assert_eq!(r.data()["keys"], json!(["default", "reader", "root"]));
    let r = s.read("sys/policy/reader").await;
    assert_eq!(r.data()["rules"], READER);
    assert_eq!(s.delete("sys/policies/acl/reader").await.status, 204);
    assert_eq!(s.read("sys/policies/acl/reader").await.status, 404);
}

#[tokio::test]
async fn json_policies_are_accepted() {
    let s = TestServer::start().await;
    let text = r#"{"path": {"sys/mounts": {"capabilities": ["read"]}}}"#;
    assert_eq!(
        s.write("sys/policy/j", json!({"policy": text}))
            .await
            .status,
        204
    );
    let t = s.token_with(&["j"]).await;
    assert_eq!(s.read_as(&t, "sys/mounts").await.status, 200);
}

#[tokio::test]
async fn invalid_policies_are_400_and_change_nothing() {
    let s = TestServer::start().await;
    let r = s
        .write(
            "sys/policies/acl/bad",
            json!({"policy": "path \"x\" { capabilities = [\"fly\"] }"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("fly"), "{}", r.text);
    let r = s
        .write("sys/policies/acl/bad", json!({"policy": "path \"x\" {"}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(s.read("sys/policies/acl/bad").await.status, 404);
    let r = s.write("sys/policies/acl/bad", json!({})).await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("policy"), "{}", r.text);
}

#[tokio::test]
async fn root_and_default_are_protected() {
    let s = TestServer::start().await;
    let r = s
        .write("sys/policies/acl/root", json!({"policy": READER}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "cannot update \"root\" policy");
    let r = s.delete("sys/policies/acl/root").await;
    assert_eq!(r.error(), "cannot delete \"root\" policy");
    let r = s.delete("sys/policies/acl/default").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "cannot delete default policy");
}

/// Vault takes any policy name (trimmed, lowercased, trailing slashes
/// dropped): spaces, `/`, `%`, quotes and non-ASCII letters included, and
/// so must pgsecrets, or policies written for Vault cannot be moved over.
/// A name with `/` is one policy, not a folder.
#[tokio::test]
async fn policy_names_are_taken_as_vault_takes_them() {
    let s = TestServer::start().await;
    for (written, read) in [
        ("team/app", "team/app"),
        ("a%20b", "a%20b"),
        ("%25", "%25"),
        ("a%22b", "a%22b"),
        ("%C3%A9", "%C3%A9"),
        ("%20Upper%20", "upper"),
        ("slash", "slash/"),
    ] {
        let r = s
            .write(
                &format!("sys/policies/acl/{written}"),
                json!({"policy": READER}),
            )
            .await;
        assert_eq!(r.status, 204, "{written}: {}", r.text);
        let r = s.read(&format!("sys/policies/acl/{read}")).await;
        assert_eq!(r.status, 200, "{read}: {}", r.text);
    }
    assert_eq!(
        s.list("sys/policies/acl").await.data()["keys"],
        json!(["%", "a b", "a\"b", "default", "root", "slash", "team/app", "upper", "é"])
    );
    // A token holding the slashed name gets its rules.
    let token = s
        .write("auth/token/create", json!({"policies": ["team/app"]}))
        .await
        .json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.read_as(&token, "sys/mounts").await.status, 200);
    assert_eq!(s.delete("sys/policies/acl/team/app/").await.status, 204);
    assert_eq!(s.read_as(&token, "sys/mounts").await.status, 403);
    let r = s.read("sys/policies/acl/a%0Ab").await;
    assert_eq!(r.status, 400, "{}", r.text);
}

#[tokio::test]
async fn policies_decide_what_a_token_may_do() {
    let s = TestServer::start().await;
    s.write("sys/policies/acl/reader", json!({"policy": READER}))
        .await;
    let t = s.token_with(&["reader"]).await;
    assert_eq!(s.read_as(&t, "sys/policies/acl/reader").await.status, 200);
    assert_eq!(
        s.request("LIST", "sys/policies/acl/", Some(&t), None)
            .await
            .status,
        200
    );
    assert_eq!(s.read_as(&t, "sys/mounts").await.status, 200);
    let r = s
        .write_as(&t, "sys/policies/acl/reader", json!({"policy": READER}))
        .await;
    assert_eq!(r.status, 403);
    assert!(r.error().contains("permission denied"), "{}", r.text);
    assert_eq!(
        s.request("DELETE", "sys/policies/acl/reader", Some(&t), None)
            .await
            .status,
        403
    );
    // The default policy lets every token look itself up.
    assert_eq!(s.read_as(&t, "auth/token/lookup-self").await.status, 200);
}

#[tokio::test]
async fn deny_wins_and_policy_updates_apply_at_once() {
    let s = TestServer::start().await;
    s.write("sys/policies/acl/reader", json!({"policy": READER}))
        .await;
    s.write(
        "sys/policies/acl/nomounts",
        json!({"policy": r#"path "sys/mounts" { capabilities = ["deny"] }"#}),
    )
    .await;
    let t = s.token_with(&["reader", "nomounts"]).await;
    assert_eq!(s.read_as(&t, "sys/mounts").await.status, 403);
    s.write(
        "sys/policies/acl/nomounts",
        json!({"policy": r#"path "other" { capabilities = ["read"] }"#}),
    )
    .await;
    assert_eq!(s.read_as(&t, "sys/mounts").await.status, 200);
}

#[tokio::test]
async fn a_policy_written_late_or_deleted_changes_the_next_request() {
    // The compiled ACL of a token's policies is reused between requests;
    // every policy write or delete must still take effect at once.
    let s = TestServer::start().await;
    let t = s.token_with(&["reader", "later"]).await;
    assert_eq!(s.read_as(&t, "sys/mounts").await.status, 403);
    s.write("sys/policies/acl/later", json!({"policy": READER}))
        .await;
    assert_eq!(
        s.read_as(&t, "sys/mounts").await.status,
        200,
        "a policy named by the token but written after its first use"
    );
    s.delete("sys/policies/acl/later").await;
    assert_eq!(s.read_as(&t, "sys/mounts").await.status, 403);
}

#[tokio::test]
async fn capabilities_self_reports_what_the_token_holds() {
    let s = TestServer::start().await;
    s.write("sys/policies/acl/reader", json!({"policy": READER}))
        .await;
    let t = s.token_with(&["reader"]).await;
    let r = s
        .write_as(
            &t,
            "sys/capabilities-self",
            json!({"paths": ["sys/policies/acl/x", "nothing/here"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["sys/policies/acl/x"], json!(["list", "read"]));
    assert_eq!(r.data()["nothing/here"], json!(["deny"]));
    assert_eq!(
        r.json()["nothing/here"],
        json!(["deny"]),
        "also at the top level"
    );
    let r = s
        .write_as(
            &t,
            "sys/capabilities-self",
            json!({"path": "auth/token/abc/x"}),
        )
        .await;
    assert_eq!(r.data()["capabilities"], json!(["read"]));
    let r = s
        .write("sys/capabilities-self", json!({"paths": ["anything"]}))
        .await;
    assert_eq!(r.data()["anything"], json!(["root"]));
    let r = s.write("sys/capabilities-self", json!({})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "paths must be supplied");
}

#[tokio::test]
async fn writes_on_routes_without_an_existence_check_need_update() {
    // sys/policies/acl has no existence check, so writes need `update`.
    let s = TestServer::start().await;
    s.write(
        "sys/policies/acl/creator",
        json!({"policy": r#"path "sys/policies/acl/*" { capabilities = ["create"] }"#}),
    )
    .await;
    let t = s.token_with(&["creator"]).await;
    let r = s
        .write_as(&t, "sys/policies/acl/new", json!({"policy": READER}))
        .await;
    assert_eq!(r.status, 403);
}

/// `sys/capabilities` and `sys/capabilities-accessor` answer for another
/// token as `capabilities-self` answers for the caller (OpenBao 2.7's
/// answers, checked by hand and in the differential suite); the default
/// policy grants neither.
#[tokio::test]
async fn capabilities_of_another_token_by_value_or_accessor() {
    let s = TestServer::start().await;
    s.write("sys/policies/acl/reader", json!({"policy": READER}))
        .await;
    let created = s
        .write("auth/token/create", json!({"policies": ["reader"]}))
        .await
        .json();
    let token = created["auth"]["client_token"].as_str().unwrap();
    let accessor = created["auth"]["accessor"].as_str().unwrap();
    let r = s
        .write(
            "sys/capabilities",
            json!({"token": token, "paths": ["sys/mounts", "/sys/policies/acl/x", "nowhere"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let expected = json!({
        "sys/mounts": ["read"],
        "/sys/policies/acl/x": ["list", "read"],
        "nowhere": ["deny"],
    });
    assert_eq!(r.data(), expected);
    assert_eq!(r.json()["sys/mounts"], json!(["read"]));
    let r = s
        .write(
            "sys/capabilities-accessor",
            json!({"accessor": accessor, "path": "sys/mounts"}),
        )
        .await;
    assert_eq!(
        r.data(),
        json!({"sys/mounts": ["read"], "capabilities": ["read"]})
    );
    let r = s
        .write(
            "sys/capabilities",
            json!({"token": s.root_token, "paths": ["x"]}),
        )
        .await;
    assert_eq!(r.data()["x"], json!(["root"]));
    // Wrong input: Vault's messages.
    for (path, body, message) in [
        (
            "sys/capabilities",
            json!({"token": "nope", "paths": ["x"]}),
            "invalid token",
        ),
        (
            "sys/capabilities",
            json!({"token": token}),
            "paths must be supplied",
        ),
        (
            "sys/capabilities-accessor",
            json!({"accessor": "nope", "paths": ["x"]}),
            "invalid accessor",
        ),
        (
            "sys/capabilities-accessor",
            json!({"paths": ["x"]}),
            "missing accessor",
        ),
        (
            "sys/capabilities-self",
            json!({"paths": ["", "x"]}),
            "missing path",
        ),
    ] {
        let r = s.write(path, body).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        assert!(r.error().contains(message), "{path}: {}", r.text);
    }
    // The holder of a default-policy token cannot look at other tokens.
    for path in ["sys/capabilities", "sys/capabilities-accessor"] {
        let r = s
            .write_as(
                token,
                path,
                json!({"token": token, "accessor": accessor, "paths": ["x"]}),
            )
            .await;
        assert_eq!(r.status, 403, "{path}: {}", r.text);
    }
}
