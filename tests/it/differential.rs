//! The same requests to OpenBao (the reference) and to pgsecrets, compared.
//! Where they disagree, pgsecrets is wrong unless the difference is
//! deliberate and documented; a request pgsecrets allows and OpenBao
//! refuses is never deliberate.

use serde_json::{json, Value};

use crate::support::differential::{report, sides, sides_with_database, value_difference};

/// A policy, and requests a token holding only it sends.
struct Case {
    policy: &'static str,
    text: &'static str,
    requests: Vec<(&'static str, &'static str, Option<Value>)>,
}

fn token_create(body: Value) -> (&'static str, &'static str, Option<Value>) {
    ("POST", "auth/token/create", Some(body))
}

fn cases() -> Vec<Case> {
    let create_caps = r#"capabilities = ["create", "update"]"#;
    let block =
        |extra: &str| format!("path \"auth/token/create\" {{\n  {create_caps}\n  {extra}\n}}\n");
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    vec![
        Case {
            policy: "d-ttl",
            text: leak(block(r#"denied_parameters = { "ttl" = [] }"#)),
            requests: vec![
                token_create(json!({"ttl": "1h"})),
                token_create(json!({"TTL": "1h"})),
                token_create(json!({"display_name": "x"})),
                token_create(json!({})),
            ],
        },
        Case {
            policy: "d-values",
            text: leak(block(r#"denied_parameters = { "display_name" = ["bad*", "*evil", "exact"] }"#)),
            requests: vec![
                token_create(json!({"display_name": "bad-one"})),
                token_create(json!({"display_name": "so-evil"})),
                token_create(json!({"display_name": "exact"})),
                token_create(json!({"display_name": "exactly"})),
                token_create(json!({"display_name": "fine"})),
            ],
        },
        Case {
            policy: "d-star",
            text: leak(block(r#"denied_parameters = { "*" = [] }"#)),
            requests: vec![token_create(json!({"display_name": "x"})), token_create(json!({}))],
        },
        Case {
            policy: "a-some",
            text: leak(block(r#"allowed_parameters = { "display_name" = ["app-*"], "ttl" = [] }"#)),
            requests: vec![
                token_create(json!({"display_name": "app-1", "ttl": "1h"})),
                token_create(json!({"display_name": "other"})),
                token_create(json!({"num_uses": 3})),
                token_create(json!({})),
            ],
        },
        Case {
            policy: "a-star",
            text: leak(block(r#"allowed_parameters = { "*" = [], "display_name" = ["app-*"] }"#)),
            requests: vec![
                token_create(json!({"display_name": "app-1", "num_uses": 2})),
                token_create(json!({"display_name": "other"})),
                token_create(json!({"num_uses": 2})),
            ],
        },
        Case {
            policy: "r-name",
            text: leak(block(r#"required_parameters = ["display_name"]"#)),
            requests: vec![
                token_create(json!({"display_name": "x"})),
                token_create(json!({"ttl": "1h"})),
                token_create(json!({})),
            ],
        },
        Case {
            policy: "w-min",
            text: leak(block(r#"min_wrapping_ttl = "1s""#)),
            requests: vec![token_create(json!({})), token_create(json!({"display_name": "x"}))],
        },
        Case {
            policy: "p-values",
            text: "path \"sys/policies/acl/x-*\" {\n  capabilities = [\"create\", \"update\", \"read\"]\n  allowed_parameters = { \"policy\" = [\"*creds*\"] }\n}\n",
            requests: vec![
                ("PUT", "sys/policies/acl/x-one", Some(json!({"policy": "path \"database/creds/*\" {\n capabilities = [\"read\"]\n}\n"}))),
                ("PUT", "sys/policies/acl/x-two", Some(json!({"policy": "path \"sys/*\" {\n capabilities = [\"sudo\"]\n}\n"}))),
                ("GET", "sys/policies/acl/x-one", None),
            ],
        },
        Case {
            policy: "l-deny",
            text: "path \"sys/policies/*\" {\n  capabilities = [\"read\", \"list\"]\n}\npath \"sys/policies/acl/*\" {\n  capabilities = [\"deny\"]\n}\n",
            requests: vec![
                ("LIST", "sys/policies/acl", None),
                ("GET", "sys/policies/acl?list=true", None),
                ("GET", "sys/policies/acl/default", None),
                ("POST", "sys/capabilities-self", Some(json!({"paths": ["sys/policies/acl/", "sys/policies/acl", "sys/policies/acl/x"]}))),
            ],
        },
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn acl_parameters_and_list_rules_match_openbao() {
    let (_bao, _ours, sides) = sides().await;
    let mut differences = Vec::new();
    for case in cases() {
        let mut tokens = Vec::new();
        for side in &sides {
            tokens.push(side.token_with(case.policy, case.text).await);
        }
        for (method, path, body) in &case.requests {
            let mut answers = Vec::new();
            for (side, token) in sides.iter().zip(&tokens) {
                answers.push(side.call(method, path, token, body.clone()).await);
            }
            // The status, and for capabilities the answer itself.
            let seen: Vec<Value> = answers
                .iter()
                .map(|(status, reply)| {
                    let data = path.contains("capabilities").then(|| reply["data"].clone());
                    json!({"status": status, "data": data})
                })
                .collect();
            let case_id = format!(
                "acl-parameters:{} {method} {path} {}",
                case.policy,
                body.as_ref().map(Value::to_string).unwrap_or_default()
            );
            differences.extend(value_difference(&case_id, &seen[0], &seen[1]));
        }
    }
    report("acl-parameters", &differences);
}

/// A write to an item needs `create` when it is new and `update` when it
/// exists (Vault's existence check), for the engine's roles as in Vault's
/// database engine; `rotate-root` is an action and needs `update`.
#[tokio::test(flavor = "multi_thread")]
async fn create_and_update_are_told_apart_as_openbao_does() {
    let (_bao, _ours, sides) = sides_with_database().await;
    // A role body both servers accept.
    let role = json!({"db_name": "none", "creation_statements": ["CREATE ROLE \"{{name}}\""]});
    let mut differences = Vec::new();
    for capability in ["create", "update"] {
        let policy = format!("only-{capability}");
        let text =
            format!("path \"database/roles/*\" {{\n  capabilities = [\"{capability}\"]\n}}\n");
        let mut tokens = Vec::new();
        for side in &sides {
            tokens.push(side.token_with(&policy, &text).await);
            // An existing role, written by root.
            let (status, body) = side
                .call(
                    "POST",
                    "database/roles/existing",
                    &side.root,
                    Some(role.clone()),
                )
                .await;
            assert!(
                status == 204 || status == 200,
                "{}: {status} {body}",
                side.name
            );
        }
        for path in [
            format!("database/roles/new-{capability}"),
            "database/roles/existing".into(),
        ] {
            let mut answers = Vec::new();
            for (side, token) in sides.iter().zip(&tokens) {
                answers.push(side.call("POST", &path, token, Some(role.clone())).await.0);
            }
            // 200 with warnings and 204 are the same success.
            let ok = |s: u16| if s == 200 { 204 } else { s };
            differences.extend(value_difference(
                &format!("create-update:{policy} POST {path}"),
                &json!({"status": ok(answers[0])}),
                &json!({"status": ok(answers[1])}),
            ));
        }
    }
    report("create-update", &differences);
}
