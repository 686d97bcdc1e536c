//! Limited-use tokens: a token with `num_uses=N` makes N requests, however
//! many it sends at once, and cannot mint children to go on (OpenBao 2.7.2
//! answers the same: concurrent requests past the count get 403, a refused
//! or help request spends a use, a child from a limited token is 400
//! "restricted use token cannot generate child tokens").

use super::policy;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;

use crate::support::engine::setup;
use crate::support::pg::Pg;
use crate::support::server::TestServer;

const TRIALS: usize = 50;
const CONCURRENT: usize = 8;

async fn limited_token(s: &TestServer, policies: &[&str], uses: i64) -> String {
    let r = s
        .write(
            "auth/token/create",
            json!({"policies": policies, "num_uses": uses}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Sends `n` GETs of `path` with `token` at once; returns their statuses.
async fn at_once(s: &TestServer, token: &str, path: &str, n: usize) -> Vec<u16> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        let client = reqwest::Client::new();
        let url = format!("{}/v1/{path}", s.url);
        let token = token.to_string();
        set.spawn(async move {
            client
                .get(url)
                .header("X-Vault-Token", token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = set.join_next().await {
        statuses.push(status.unwrap());
    }
    statuses
}

#[tokio::test]
async fn a_one_use_token_gets_one_credential_from_eight_concurrent_requests() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let creds = setup(&s, pg, "adv-uses", json!({"default_ttl": "1h"})).await;
    policy(
        &s,
        "creds-only",
        r#"path "database/creds/*" { capabilities = ["read"] }"#,
    )
    .await;
    let mut issued = 0;
    for trial in 0..TRIALS {
        let token = limited_token(&s, &["creds-only"], 1).await;
        let statuses = at_once(&s, &token, &creds, CONCURRENT).await;
        let ok = statuses.iter().filter(|s| **s == 200).count();
        assert_eq!(ok, 1, "trial {trial}: statuses {statuses:?}");
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 403),
            "trial {trial}: {statuses:?}"
        );
        issued += ok;
    }
    assert_eq!(issued, TRIALS);
    // The spent tokens are revoked, and their credentials with them: no
    // user of this database outlives its one-use token.
    let admin = pg.admin().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_auth_members m JOIN pg_roles o ON o.oid = m.roleid \
                 JOIN pg_roles u ON u.oid = m.member \
                 WHERE o.rolname LIKE 'v-owner-adv_uses_db-%' AND u.rolname NOT LIKE 'v-manage-%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} users of spent one-use tokens are still in pg_roles"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn concurrent_requests_never_spend_more_uses_than_a_token_has() {
    let s = TestServer::start().await;
    for trial in 0..TRIALS {
        let token = limited_token(&s, &["default"], 3).await;
        let statuses = at_once(&s, &token, "auth/token/lookup-self", CONCURRENT).await;
        let ok = statuses.iter().filter(|s| **s == 200).count();
        assert_eq!(ok, 3, "trial {trial}: statuses {statuses:?}");
        let after = s.read_as(&token, "auth/token/lookup-self").await;
        assert_eq!(after.status, 403, "trial {trial}: the token is spent");
    }
}

#[tokio::test]
async fn a_refused_request_spends_a_use_as_in_vault() {
    let s = TestServer::start().await;
    let token = limited_token(&s, &["default"], 2).await;
    // Not allowed by `default`: refused, and one use gone.
    let r = s.read_as(&token, "sys/policies/acl/default").await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = s.read_as(&token, "auth/token/lookup-self").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["num_uses"], -1, "the last use is being taken");
    let r = s.read_as(&token, "auth/token/lookup-self").await;
    assert_eq!(r.status, 403, "no use left: {}", r.text);
}

#[tokio::test]
async fn a_limited_token_cannot_create_children_to_go_on() {
    let s = TestServer::start().await;
    policy(
        &s,
        "minter",
        r#"path "auth/token/create" { capabilities = ["update"] }"#,
    )
    .await;
    let token = limited_token(&s, &["minter"], 2).await;
    for body in [json!({}), json!({"num_uses": 0}), json!({"num_uses": 1})] {
        let r = s.write_as(&token, "auth/token/create", body).await;
        if r.status == 403 {
            // Its two uses are spent by the attempts themselves.
            break;
        }
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(
            r.error(),
            "restricted use token cannot generate child tokens"
        );
    }
    let r = s.read_as(&token, "auth/token/lookup-self").await;
    assert_eq!(r.status, 403, "two uses, both spent on refused creations");
    let accessors = s.list("auth/token/accessors").await;
    // root + the limited token's accessor at most (it is revoked): no child.
    let keys = accessors.data()["keys"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(keys.len() <= 1, "no child token was created: {keys:?}");
}
