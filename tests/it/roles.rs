//! `database/roles/<name>`: TTLs and statement templates.

use serde_json::json;

use crate::support::server::TestServer;

const VAULT_DOCS_ROLE: &str = r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";"#;

#[tokio::test]
async fn roles_are_written_read_listed_and_deleted() {
    let s = TestServer::start().await;
    let r = s
        .write("database/roles/ro", json!({"default_ttl": "1h", "max_ttl": "24h", "creation_statements": [VAULT_DOCS_ROLE]}))
        .await;
    // Accepted, with a warning: per-user table grants bloat pg_class.relacl.
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.json()["warnings"][0]
            .as_str()
            .unwrap()
            .contains("row is too big"),
        "{}",
        r.text
    );
    let d = s.read("database/roles/ro").await.data();
    assert_eq!(d["default_ttl"], 3600);
    assert_eq!(d["max_ttl"], 86400);
    assert_eq!(
        d["creation_statements"],
        json!([VAULT_DOCS_ROLE]),
        "a statement with commas is one statement"
    );
    // The seed's singular forms.
    let r = s
        .write("database/roles/single", json!({"creation_statement": "CREATE ROLE \"{{name}}\" LOGIN", "revocation_statement": "DROP ROLE \"{{name}}\""}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(
        s.read("database/roles/single").await.data()["revocation_statements"],
        json!(["DROP ROLE \"{{name}}\""])
    );
    assert_eq!(
        s.list("database/roles").await.data()["keys"],
        json!(["ro", "single"])
    );
    assert_eq!(s.delete("database/roles/ro").await.status, 204);
    assert_eq!(s.read("database/roles/ro").await.status, 404);
    let r = s.delete("database/roles/ro").await;
    assert_eq!(r.status, 400, "deleting an unknown role is a clear 4xx");
    assert_eq!(r.error(), "unknown role: ro");
}

#[tokio::test]
async fn invalid_roles_are_refused_with_what_to_fix() {
    let s = TestServer::start().await;
    let r = s
        .write(
            "database/roles/bad",
            json!({"default_ttl": "2h", "max_ttl": "1h"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("max_ttl"), "{}", r.text);
    let r = s
        .write(
            "database/roles/bad",
            json!({"creation_statements": ["CREATE ROLE \"{{nmae}}\""]}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("{{nmae}}"), "{}", r.text);
    let r = s
        .write(
            "database/roles/bad",
            json!({"creation_statements": ["CREATE ROLE \"{{name\""]}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = s
        .write(
            "database/roles/bad",
            json!({"creation_statements": ["SELECT 1"]}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("{{name}}"), "{}", r.text);
    let r = s
        .write("database/roles/bad", json!({"default_ttl": "forever"}))
        .await;
    assert_eq!(r.status, 400);
    let r = s
        .write(
            "database/roles/bad",
            json!({"creation_statements": {"a": 1}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        s.read("database/roles/bad").await.status,
        404,
        "nothing stored"
    );
}

#[tokio::test]
async fn username_and_password_settings_are_checked() {
    let s = TestServer::start().await;
    let r = s
        .write("database/roles/tpl", json!({"username_template": "app_{{cluster}}_{{random 10}}", "password_length": 40, "password_scram_iterations": 1}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let d = s.read("database/roles/tpl").await.data();
    assert_eq!(d["password_length"], 40);
    assert_eq!(d["password_scram_iterations"], 1);
    for (body, field) in [
        (json!({"username_template": "{{role}}"}), "random"),
        (json!({"username_template": "x{{random 63}}"}), "63"),
        (
            json!({"username_template": "a\"b{{random 9}}"}),
            "not allowed",
        ),
        (json!({"password_length": 19}), "password_length"),
        (
            json!({"password_scram_iterations": 0}),
            "password_scram_iterations",
        ),
    ] {
        let r = s.write("database/roles/bad2", body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
        assert!(r.error().contains(field), "{body}: {}", r.text);
    }
}
