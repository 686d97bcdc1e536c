//! The ACL matrix: tokens holding one or several of the policies below
//! send every operation to every path, on OpenBao (the reference) and on
//! pgsecrets. Only the decision is compared (403 or not): an allowed
//! request may fail differently in the two handlers. Each token also asks
//! `sys/capabilities-self` about every path, and root asks
//! `sys/capabilities` about each token, compared exactly.

use std::time::Instant;

use serde_json::{json, Value};

use crate::support::differential::{
    compare_allowed, compare_capabilities, report, sides_with_database, sorted, Difference, Side,
};

const POLICIES: &[(&str, &str)] = &[
    ("m-everything-read", r#"path "*" { capabilities = ["read", "list"] }"#),
    ("m-sys-crudl", r#"path "sys/*" { capabilities = ["create", "read", "update", "delete", "list"] }"#),
    ("m-sys-sudo", r#"path "sys/*" { capabilities = ["read", "list", "update", "sudo"] }"#),
    ("m-acl-read", r#"path "sys/policies/acl/*" { capabilities = ["read", "list"] }"#),
    ("m-acl-exact", r#"path "sys/policies/acl/target-a" { capabilities = ["create", "read", "update", "delete"] }"#),
    ("m-acl-list-bare", r#"path "sys/policies/acl" { capabilities = ["list"] }"#),
    ("m-acl-list-slash", r#"path "sys/policies/acl/" { capabilities = ["list"] }"#),
    ("m-plus", r#"path "sys/policies/+/target-b" { capabilities = ["create", "read", "update"] }"#),
    ("m-plus-list", r#"path "sys/policies/+" { capabilities = ["list", "read"] }"#),
    ("m-plus-db", r#"path "database/+/r1" { capabilities = ["create", "read", "update", "delete"] }"#),
    (
        "m-deny-policies",
        "path \"sys/*\" { capabilities = [\"create\", \"read\", \"update\", \"list\"] }\npath \"sys/policies/*\" { capabilities = [\"deny\"] }",
    ),
    ("m-deny-target-a", r#"path "sys/policies/acl/target-a" { capabilities = ["deny"] }"#),
    ("m-token-crudl", r#"path "auth/token/*" { capabilities = ["create", "read", "update", "delete", "list"] }"#),
    ("m-token-sudo", r#"path "auth/token/*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }"#),
    (
        "m-create-allowed",
        r#"path "auth/token/create" {
  capabilities = ["create", "update"]
  allowed_parameters = { "display_name" = ["m*"], "ttl" = [] }
}"#,
    ),
    (
        "m-create-denied",
        r#"path "auth/token/create" {
  capabilities = ["create", "update"]
  denied_parameters = { "ttl" = [] }
}"#,
    ),
    (
        "m-create-required",
        r#"path "auth/token/create" {
  capabilities = ["create", "update"]
  required_parameters = ["num_uses"]
}"#,
    ),
    (
        "m-merge-name",
        r#"path "auth/token/create" {
  capabilities = ["update"]
  allowed_parameters = { "display_name" = ["m*"] }
}"#,
    ),
    (
        "m-merge-ttl",
        r#"path "auth/token/create" {
  capabilities = ["create"]
  allowed_parameters = { "ttl" = [] }
}"#,
    ),
    (
        "m-acl-param",
        r#"path "sys/policies/acl/*" {
  capabilities = ["create", "update"]
  allowed_parameters = { "policy" = [] }
}"#,
    ),
    (
        "m-acl-param-denied",
        r#"path "sys/policies/acl/*" {
  capabilities = ["create", "update", "read"]
  denied_parameters = { "policy" = ["*read*"] }
}"#,
    ),
    ("m-leases", r#"path "sys/leases/*" { capabilities = ["update", "list", "read"] }"#),
    ("m-leases-sudo", r#"path "sys/leases/*" { capabilities = ["update", "list", "read", "sudo"] }"#),
    (
        "m-mounts",
        "path \"sys/mounts\" { capabilities = [\"read\"] }\npath \"sys/mounts/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\"] }",
    ),
    (
        "m-db",
        "path \"database/*\" { capabilities = [\"create\", \"read\", \"update\", \"list\"] }\npath \"database/creds/*\" { capabilities = [\"deny\"] }",
    ),
    ("m-prefix", r#"path "sys/pol*" { capabilities = ["read", "list"] }"#),
    ("m-deny-caps-self", r#"path "sys/capabilities-self" { capabilities = ["deny"] }"#),
    ("m-deny-lookup-self", r#"path "auth/token/lookup-self" { capabilities = ["deny"] }"#),
    ("m-target-b-read", r#"path "sys/policies/acl/target-b" { capabilities = ["read"] }"#),
    ("m-target-b-update", r#"path "sys/policies/acl/target-b" { capabilities = ["update", "create"] }"#),
    (
        "m-read-query",
        r#"path "sys/policies/acl/target-b" {
  capabilities = ["read"]
  allowed_parameters = { "version" = ["1"] }
}"#,
    ),
    ("m-ui", r#"path "sys/internal/ui/mounts/*" { capabilities = ["read"] }"#),
    ("m-remount", r#"path "sys/remount" { capabilities = ["update", "sudo"] }"#),
    (
        "m-caps",
        "path \"sys/capabilities\" { capabilities = [\"update\"] }\npath \"sys/capabilities-accessor\" { capabilities = [\"update\"] }",
    ),
];

/// The tokens: one per policy, then overlapping sets (deny against grant,
/// capabilities and parameters merged across policies, sudo added).
fn token_sets() -> Vec<Vec<&'static str>> {
    let mut sets: Vec<Vec<&str>> = POLICIES.iter().map(|(name, _)| vec![*name]).collect();
    sets.extend([
        vec!["m-acl-exact", "m-deny-target-a"],
        vec!["m-sys-crudl", "m-deny-policies"],
        vec!["m-target-b-read", "m-target-b-update"],
        vec!["m-create-allowed", "m-create-denied"],
        vec!["m-merge-name", "m-merge-ttl"],
        vec![
            "m-everything-read",
            "m-deny-caps-self",
            "m-deny-lookup-self",
        ],
        vec!["m-leases", "m-leases-sudo", "m-sys-sudo"],
        vec!["m-plus", "m-acl-read", "m-acl-param-denied"],
        vec!["m-token-crudl", "m-create-required"],
        vec!["m-read-query", "m-target-b-read"],
    ]);
    sets
}

/// A policy body the matrix may write, and a name it may write it under.
const RULES: &str = "path \"sys/health\" { capabilities = [\"read\"] }";

/// What the matrix sends to each path: the operations (DELETE is left
/// out where it would remove something the run needs) and the body of a
/// POST. No request revokes a token the matrix uses.
struct Target {
    path: &'static str,
    ops: &'static [&'static str],
    body: Value,
}

const ALL_OPS: &[&str] = &["GET", "LIST", "POST", "DELETE"];
const NO_DELETE: &[&str] = &["GET", "LIST", "POST"];

fn targets() -> Vec<Target> {
    let t = |path, ops, body| Target { path, ops, body };
    let policy = json!({ "policy": RULES });
    vec![
        t("sys/health", NO_DELETE, json!({})),
        t("sys/seal-status", NO_DELETE, json!({})),
        t("sys/mounts", NO_DELETE, json!({})),
        t("sys/mounts/database", &["GET"], json!({})),
        t("sys/mounts/acl-m", ALL_OPS, json!({"type": "database"})),
        t("sys/mounts/database/tune", &["GET"], json!({})),
        t("sys/auth", &["GET"], json!({})),
        t("sys/auth/token", &["GET"], json!({})),
        t("sys/auth/token/tune", &["GET"], json!({})),
        t(
            "sys/remount",
            &["POST"],
            json!({"from": "acl-nothing", "to": "acl-elsewhere"}),
        ),
        t(
            "sys/mounts/acl-m/tune",
            &["GET", "POST"],
            json!({"description": "tuned"}),
        ),
        t("sys/internal/ui/mounts", &["GET"], json!({})),
        t("sys/internal/ui/mounts/database", &["GET"], json!({})),
        t("sys/policies/acl", &["GET", "LIST"], json!({})),
        t("sys/policies/acl/target-a", ALL_OPS, policy.clone()),
        t("sys/policies/acl/target-b", ALL_OPS, policy.clone()),
        t("sys/policies/acl/other", ALL_OPS, policy.clone()),
        t("sys/policies/acl/default", &["GET", "DELETE"], json!({})),
        t("sys/policies/acl/team/app", ALL_OPS, policy.clone()),
        t("sys/policies/acl/target-a/", &["GET"], json!({})),
        t("sys/policy", &["GET", "LIST"], json!({})),
        t("sys/policy/target-c", ALL_OPS, json!({ "policy": RULES })),
        t(
            "sys/capabilities-self",
            &["POST"],
            json!({"paths": ["sys/health"]}),
        ),
        t(
            "sys/capabilities",
            &["POST"],
            json!({"token": "nope", "paths": ["sys/health"]}),
        ),
        t(
            "sys/leases/lookup",
            &["POST"],
            json!({"lease_id": "database/creds/x/y"}),
        ),
        t("sys/leases/lookup/database", &["LIST"], json!({})),
        t(
            "sys/leases/renew",
            &["POST"],
            json!({"lease_id": "database/creds/x/y"}),
        ),
        t(
            "sys/leases/revoke",
            &["POST"],
            json!({"lease_id": "database/creds/x/y"}),
        ),
        t(
            "sys/leases/revoke-prefix/database/creds/none",
            &["POST"],
            json!({}),
        ),
        t(
            "sys/leases/revoke-force/database/creds/none",
            &["POST"],
            json!({}),
        ),
        t("auth/token/lookup-self", ALL_OPS, json!({})),
        t("auth/token/lookup", &["GET"], json!({})),
        t("auth/token/renew-self", &["POST"], json!({})),
        t(
            "auth/token/create",
            &["POST"],
            json!({"display_name": "m1", "ttl": "1h"}),
        ),
        t(
            "auth/token/create-orphan",
            &["POST"],
            json!({"num_uses": 5, "display_name": "x"}),
        ),
        t("auth/token/accessors", &["LIST"], json!({})),
        t("auth/token/roles", &["LIST"], json!({})),
        t(
            "auth/token/roles/r1",
            ALL_OPS,
            json!({"allowed_policies": ["default"]}),
        ),
        t(
            "auth/token/revoke-accessor",
            &["POST"],
            json!({"accessor": "nope"}),
        ),
        t("database/roles", &["LIST"], json!({})),
        t(
            "database/roles/r1",
            ALL_OPS,
            json!({"db_name": "none", "creation_statements": ["SELECT 1"]}),
        ),
        t("database/creds/r1", &["GET"], json!({})),
        t("database/creds/c1/d1/r1", &["GET", "POST"], json!({})),
        t("database/config/c1", ALL_OPS, json!({})),
        t("database/rotate-root/c1", &["POST"], json!({})),
    ]
}

/// More requests to paths above, to reach each parameter rule: POST bodies
/// with `num_uses` (required), with a display name no glob allows, and with
/// an extra field no `allowed_parameters` lists; reads whose query a rule
/// constrains, as Vault checks a read's query.
fn extra_requests() -> Vec<(&'static str, &'static str, Value)> {
    let post = |path, body| ("POST", path, body);
    vec![
        ("GET", "sys/policies/acl/target-b?version=1", json!({})),
        ("GET", "sys/policies/acl/target-b?version=2", json!({})),
        ("GET", "sys/policies/acl/target-b?other=1", json!({})),
        post(
            "auth/token/create",
            json!({"num_uses": 3, "display_name": "m2"}),
        ),
        post("auth/token/create", json!({"display_name": "other"})),
        post(
            "sys/policies/acl/target-a",
            json!({"name": "ignored", "policy": RULES}),
        ),
    ]
}

async fn both(
    sides: &[Side; 2],
    tokens: [&str; 2],
    method: &str,
    path: &str,
    body: &Value,
) -> [u16; 2] {
    let body = (method == "POST").then(|| body.clone());
    let (a, b) = tokio::join!(
        sides[0].call(method, path, tokens[0], body.clone()),
        sides[1].call(method, path, tokens[1], body),
    );
    [a.0, b.0]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_acl_matrix_decides_as_openbao_does() {
    let started = Instant::now();
    let (_bao, _ours, sides) = sides_with_database().await;
    for side in &sides {
        for (name, text) in POLICIES {
            side.policy(name, text).await;
        }
    }
    let sets = token_sets();
    // Per token: each side's token and accessor.
    let mut tokens = Vec::new();
    for set in &sets {
        let mut pair = Vec::new();
        for side in &sides {
            pair.push(side.token_and_accessor(json!({ "policies": set })).await);
        }
        tokens.push(pair);
    }
    let targets = targets();
    let mut differences: Vec<Difference> = Vec::new();
    let mut requests = 0;
    // How many decisions were "denied" on OpenBao: a matrix that denies
    // (or allows) everything would prove little.
    let mut denied = 0;
    // Whether pgsecrets has `sys/capabilities` (another engineer is adding it).
    let (status, _) = sides[1]
        .root_call(
            "POST",
            "sys/capabilities",
            Some(json!({"token": sides[1].root, "paths": ["sys/health"]})),
        )
        .await;
    let compare_sys_capabilities = status != 404;
    if !compare_sys_capabilities {
        eprintln!("pgsecrets has no sys/capabilities yet: only sys/capabilities-self is compared");
    }
    let paths: Vec<&str> = targets.iter().map(|t| t.path).collect();
    for (set, pair) in sets.iter().zip(&tokens) {
        let who = set.join("+");
        let mine = [pair[0].0.as_str(), pair[1].0.as_str()];
        for target in &targets {
            for op in target.ops {
                let answers = both(&sides, mine, op, target.path, &target.body).await;
                requests += 2;
                denied += usize::from(answers[0] == 403);
                let case = format!("acl:{who} {op} {}", target.path);
                differences.extend(compare_allowed(&case, answers[0], answers[1]));
            }
        }
        for (op, path, body) in extra_requests() {
            let answers = both(&sides, mine, op, path, &body).await;
            requests += 2;
            denied += usize::from(answers[0] == 403);
            let case = format!("acl:{who} {op} {path} {body}");
            differences.extend(compare_allowed(&case, answers[0], answers[1]));
        }
        // What each token is told it may do, path by path.
        let question = json!({ "paths": paths });
        let mut asked = Vec::new();
        for (side, (token, accessor)) in sides.iter().zip(pair) {
            let mut answers = vec![
                side.call(
                    "POST",
                    "sys/capabilities-self",
                    token,
                    Some(question.clone()),
                )
                .await,
            ];
            if compare_sys_capabilities {
                let about_token = json!({ "token": token, "paths": paths });
                answers.push(
                    side.root_call("POST", "sys/capabilities", Some(about_token))
                        .await,
                );
                let about_accessor = json!({ "accessor": accessor, "paths": paths });
                answers.push(
                    side.root_call("POST", "sys/capabilities-accessor", Some(about_accessor))
                        .await,
                );
            }
            requests += answers.len();
            asked.push(answers);
        }
        let endpoints = [
            "sys/capabilities-self",
            "sys/capabilities",
            "sys/capabilities-accessor",
        ];
        for (endpoint, (a, b)) in endpoints.iter().zip(asked[0].iter().zip(&asked[1])) {
            let case = format!("acl:{who} POST {endpoint}");
            if let Some(d) = compare_allowed(&case, a.0, b.0) {
                differences.push(d);
                continue;
            }
            for path in &paths {
                let (x, y) = (sorted(&a.1["data"][*path]), sorted(&b.1["data"][*path]));
                differences.extend(compare_capabilities(&format!("{case} {path}"), &x, &y));
            }
        }
    }
    let decisions = requests / 2 - sets.len() * if compare_sys_capabilities { 3 } else { 1 };
    eprintln!(
        "ACL matrix: {} policies, {} tokens, {} paths, {decisions} decisions ({denied} denied by OpenBao), {requests} requests in {:?}",
        POLICIES.len(),
        sets.len(),
        targets.len(),
        started.elapsed()
    );
    assert!(
        denied > decisions / 10 && denied < decisions * 9 / 10,
        "{denied} of {decisions} denied: the matrix tells little"
    );
    report("acl", &differences);
}
