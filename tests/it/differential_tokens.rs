//! `auth/token/*` against OpenBao (the reference): who may ask for what at
//! creation, how periodic and renewed tokens live, what unknown tokens and
//! accessors answer, and the warnings Vault sends. Each request goes to both
//! servers; a difference is a pgsecrets bug unless noted here.

use serde_json::{json, Value};

use crate::support::differential::{report, sides, sorted, value_difference};

/// What a user sees of a creation: status, error text, policies, orphan,
/// whether the token expires, and the warnings.
fn creation_summary(status: u16, reply: &Value) -> Value {
    if status != 200 {
        return json!({"status": status, "errors": reply["errors"]});
    }
    let auth = &reply["auth"];
    json!({
        "status": status,
        "policies": sorted(&auth["policies"]),
        "orphan": auth["orphan"],
        "expires": auth["lease_duration"].as_u64().unwrap_or(0) > 0,
        "renewable": auth["renewable"],
        "warnings": reply["warnings"],
    })
}

/// Non-root creators: choosing the id, a period, `no_parent`, and policies
/// outside the parent's set need root or sudo on `auth/token/create`;
/// `create-orphan` needs only its own ACL; `default` is only given when
/// the parent has it (or the creator has sudo and names policies).
#[tokio::test(flavor = "multi_thread")]
async fn creation_privileges_match_openbao() {
    let (_bao, _ours, sides) = sides().await;
    let caps = |extra: &str| {
        format!(
            "path \"auth/token/*\" {{\n  capabilities = [\"create\", \"update\", \"read\"{extra}]\n}}\n"
        )
    };
    let parents = [
        ("plain", json!({"policies": ["maker"]})),
        (
            "plain-no-default",
            json!({"policies": ["maker"], "no_default_policy": true}),
        ),
        ("sudo", json!({"policies": ["smaker"]})),
        (
            "sudo-no-default",
            json!({"policies": ["smaker"], "no_default_policy": true}),
        ),
    ];
    let bodies = [
        json!({}),
        json!({"id": "chosen-by-the-creator"}),
        json!({"id": "has.a.dot"}),
        json!({"period": "1h"}),
        json!({"no_parent": true}),
        json!({"policies": ["other"]}),
        json!({"policies": ["default"]}),
        json!({"policies": ["maker", "default"]}),
        json!({"policies": ["smaker", "default"]}),
        json!({"policies": ["maker"]}),
        json!({"policies": ["smaker"]}),
        json!({"policies": ["root"]}),
        json!({"no_default_policy": true}),
    ];
    let mut differences = Vec::new();
    let mut tokens = Vec::new();
    for side in &sides {
        side.policy("maker", &caps("")).await;
        side.policy("smaker", &caps(", \"sudo\"")).await;
        side.policy("other", "path \"secret/*\" { capabilities = [\"read\"] }")
            .await;
        let mut mine = Vec::new();
        for (_, body) in &parents {
            mine.push(side.token(body.clone()).await);
        }
        tokens.push(mine);
    }
    for (p, (parent, _)) in parents.iter().enumerate() {
        for (i, body) in bodies.iter().enumerate() {
            let mut body = body.clone();
            // A chosen id must be new on each try.
            let id = body["id"].as_str().map(String::from);
            for path in ["auth/token/create", "auth/token/create-orphan"] {
                if let Some(id) = &id {
                    body["id"] = json!(format!("{id}-{p}-{i}-{}", path.len()));
                }
                let mut seen = Vec::new();
                let mut warnings = Vec::new();
                for (side, mine) in sides.iter().zip(&tokens) {
                    let (status, reply) =
                        side.call("POST", path, &mine[p], Some(body.clone())).await;
                    let mut summary = creation_summary(status, &reply);
                    // Warnings are compared on their own, so that the
                    // allow-list can accept a warning without the rest.
                    warnings.push(summary.as_object_mut().unwrap().remove("warnings"));
                    seen.push(summary);
                }
                let case = format!("token-creation:{parent} POST {path} {body}");
                differences.extend(value_difference(&case, &seen[0], &seen[1]));
                differences.extend(value_difference(
                    &format!("{case} warnings"),
                    &json!(warnings[0]),
                    &json!(warnings[1]),
                ));
            }
        }
    }
    report("token-creation", &differences);
}

/// A periodic token made by root lives by its period: it has a TTL, renews
/// to its period (whatever increment is asked), and expires.
#[tokio::test(flavor = "multi_thread")]
async fn a_periodic_root_token_expires_and_renews_by_its_period() {
    let (_bao, ours, sides) = sides().await;
    for side in &sides {
        let (status, reply) = side
            .root_call("POST", "auth/token/create", Some(json!({"period": "1h"})))
            .await;
        assert_eq!(status, 200, "{}: {reply}", side.name);
        assert_eq!(
            reply["auth"]["lease_duration"], 3600,
            "{}: {reply}",
            side.name
        );
        assert_eq!(reply["auth"]["renewable"], true, "{}: {reply}", side.name);
        let token = reply["auth"]["client_token"].as_str().unwrap();
        for increment in [json!({}), json!({"increment": "10s"})] {
            let (status, reply) = side
                .call("POST", "auth/token/renew-self", token, Some(increment))
                .await;
            assert_eq!(status, 200, "{}: renew-self: {reply}", side.name);
            assert_eq!(
                reply["auth"]["lease_duration"], 3600,
                "{}: {reply}",
                side.name
            );
        }
        let (status, reply) = side
            .call("GET", "auth/token/lookup-self", token, None)
            .await;
        assert_eq!(status, 200, "{}: {reply}", side.name);
        assert!(
            reply["data"]["ttl"].as_u64().unwrap() > 0,
            "{}: {reply}",
            side.name
        );
        assert!(
            reply["data"]["expire_time"].is_string(),
            "{}: {reply}",
            side.name
        );
        assert_eq!(reply["data"]["period"], 3600, "{}: {reply}", side.name);
    }
    // And it really goes: a 1s period, not renewed (pgsecrets only, which
    // sweeps expired tokens every second).
    let r = ours
        .write("auth/token/create", json!({"period": "1s"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut status = 200;
    for _ in 0..100 {
        status = ours
            .read_as(&token, "auth/token/lookup-self")
            .await
            .status
            .as_u16();
        if status == 403 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 403, "the periodic root token never expired");
}

/// Renewal without `increment` keeps the TTL of the last renewal; unknown
/// tokens and accessors answer as in Vault; `lookup` with no token looks
/// up the caller.
#[tokio::test(flavor = "multi_thread")]
async fn renewal_and_unknown_tokens_match_openbao() {
    let (_bao, _ours, sides) = sides().await;
    let mut differences = Vec::new();
    let mut compare = |what: &str, a: Value, b: Value| {
        differences.extend(value_difference(&format!("token-renewal:{what}"), &a, &b));
    };
    let mut seen: Vec<Vec<(String, Value)>> = Vec::new();
    for side in &sides {
        let mut mine = Vec::new();
        let token = side
            .token(json!({"ttl": "100s", "policies": ["default"]}))
            .await;
        for body in [
            json!({"increment": "200s"}),
            json!({}),
            json!({"increment": "50s"}),
            json!({}),
        ] {
            let (status, reply) = side
                .call("POST", "auth/token/renew-self", &token, Some(body.clone()))
                .await;
            mine.push((
                format!("renew-self {body}"),
                json!({"status": status, "lease_duration": reply["auth"]["lease_duration"]}),
            ));
        }
        let (status, reply) = side
            .root_call("POST", "auth/token/renew", Some(json!({"token": token})))
            .await;
        mine.push((
            "renew (no increment) after renew-self 50s".into(),
            json!({"status": status, "lease_duration": reply["auth"]["lease_duration"]}),
        ));
        for (path, body) in [
            ("auth/token/renew", json!({"token": "no-such-token"})),
            (
                "auth/token/renew-accessor",
                json!({"accessor": "no-such-accessor"}),
            ),
            (
                "auth/token/revoke-accessor",
                json!({"accessor": "no-such-accessor"}),
            ),
            (
                "auth/token/lookup-accessor",
                json!({"accessor": "no-such-accessor"}),
            ),
            ("auth/token/lookup", json!({"token": "no-such-token"})),
        ] {
            let (status, reply) = side.root_call("POST", path, Some(body.clone())).await;
            mine.push((
                format!("{path} {body}"),
                json!({"status": status, "errors": reply["errors"], "warnings": reply["warnings"]}),
            ));
        }
        for method in ["POST", "GET"] {
            let body = (method == "POST").then(|| json!({}));
            let (status, reply) = side.root_call(method, "auth/token/lookup", body).await;
            mine.push((
                format!("{method} auth/token/lookup, no token"),
                json!({"status": status, "is_caller": reply["data"]["id"] == json!(side.root)}),
            ));
        }
        seen.push(mine);
    }
    for ((what, a), (_, b)) in seen[0].iter().zip(&seen[1]) {
        // Vault wraps some 400s ("1 error occurred: ..."); the text inside is what matters.
        let unwrap = |v: &Value| -> Value {
            let mut v = v.clone();
            if let Some(errors) = v["errors"].as_array_mut() {
                for e in errors {
                    if let Some(s) = e.as_str() {
                        *e = json!(s.trim_start_matches("1 error occurred:\n\t* ").trim_end());
                    }
                }
            }
            v
        };
        compare(what, unwrap(a), unwrap(b));
    }
    report("token-renewal", &differences);
}

/// Warnings Vault sends from the token routes: policies that do not exist,
/// TTLs and periods capped at creation and at renewal.
#[tokio::test(flavor = "multi_thread")]
async fn token_warnings_match_openbao() {
    let (_bao, _ours, sides) = sides().await;
    let creations = [
        json!({"policies": ["nope"]}),
        json!({"policies": ["nope", "default", "x2"], "no_default_policy": true}),
        json!({"ttl": "2h", "explicit_max_ttl": "1h"}),
        json!({"ttl": "10000h"}),
        json!({"period": "2h", "explicit_max_ttl": "1h"}),
        json!({"policies": ["default"], "period": "10000h"}),
        json!({"ttl": "100s", "explicit_max_ttl": "10000h"}),
        json!({"lease": "2h"}),
        json!({"policies": ["default"]}),
    ];
    let mut differences = Vec::new();
    for body in &creations {
        let mut seen = Vec::new();
        for side in &sides {
            let (status, reply) = side
                .root_call("POST", "auth/token/create", Some(body.clone()))
                .await;
            seen.push(json!({
                "status": status,
                "warnings": reply["warnings"],
                "lease_duration": reply["auth"]["lease_duration"],
                "policies": sorted(&reply["auth"]["policies"]),
            }));
        }
        differences.extend(value_difference(
            &format!("token-warnings:create {body}"),
            &seen[0],
            &seen[1],
        ));
    }
    // Renewals capped by explicit_max_ttl or the system maximum: the
    // remaining time in the text moves with the clock, so only the
    // warning's presence and the granted TTL's bound are compared.
    for (create, increment) in [
        (
            json!({"ttl": "100s", "explicit_max_ttl": "150s", "policies": ["default"]}),
            "300s",
        ),
        (json!({"ttl": "100s", "policies": ["default"]}), "10000h"),
    ] {
        let mut seen = Vec::new();
        for side in &sides {
            let token = side.token(create.clone()).await;
            let (status, reply) = side
                .call(
                    "POST",
                    "auth/token/renew-self",
                    &token,
                    Some(json!({ "increment": increment })),
                )
                .await;
            let warnings = reply["warnings"].as_array().cloned().unwrap_or_default();
            seen.push(json!({
                "status": status,
                "capped_warning": warnings.iter().any(|w| w.as_str().unwrap_or("").contains("TTL value is capped")),
            }));
        }
        differences.extend(value_difference(
            &format!("token-warnings:renew-self {increment} of {create}"),
            &seen[0],
            &seen[1],
        ));
    }
    report("token-warnings", &differences);
}

/// A limited-use token pays a use for a request the ACL refuses and for a
/// `?help=1` request, as in Vault (already so before issue 16; this keeps it).
#[tokio::test(flavor = "multi_thread")]
async fn refused_and_help_requests_spend_uses_as_in_openbao() {
    let (_bao, _ours, sides) = sides().await;
    let mut seen = Vec::new();
    for side in &sides {
        let token = side
            .token(json!({"num_uses": 4, "policies": ["default"]}))
            .await;
        let mut answers = Vec::new();
        for path in [
            "auth/token/lookup-self?help=1",
            "sys/policies/acl/default",
            "sys/policies/acl/default?help=1",
            "auth/token/lookup-self",
            "auth/token/lookup-self",
        ] {
            let (status, reply) = side.call("GET", path, &token, None).await;
            answers.push(json!([path, status, reply["data"]["num_uses"]]));
        }
        seen.push(answers);
    }
    let differences: Vec<_> = seen[0]
        .iter()
        .zip(&seen[1])
        .filter_map(|(a, b)| {
            value_difference(&format!("token-uses:GET {}", a[0].as_str().unwrap()), a, b)
        })
        .collect();
    report("token-uses", &differences);
}
