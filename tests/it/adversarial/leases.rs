//! Revocation against renewal, and leases that end early.
//!
//! Found: a revocation (direct, `sync=false` answered 202, by prefix, or by
//! revoking the token that owns the leases) racing renewals of the same
//! leases was lost: the renewal wrote back the lease it had read before the
//! revocation marked it, so up to 6 of 40 users survived in PostgreSQL with
//! their leases renewable again for an hour; a synchronous revoke that
//! overlapped a renewal answered "a revocation of this lease is already
//! running". Once a revocation is accepted, nothing may write the lease
//! back: a renewal that loses answers 400 `lease is being revoked` (or
//! `lease not found` once the lease is gone), a crash does not undo the
//! acceptance, and every revoked user is gone from `pg_roles`.
//!
//! Also found: expiry counted from the issue time rounded down to the
//! second, so a lease of N seconds could end up to a second early (its
//! user's `VALID UNTIL` and its revocation both).

use super::token_for;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::support::engine::setup;
use crate::support::engine::{can_login, role_exists};
use crate::support::pg::{Pg, PgVersion};
use crate::support::process::{
    call, durable_server, register_over_http, start_with_config as start,
    wait_healthy_async as wait_healthy,
};
use crate::support::server::TestServer;

const TRIALS: usize = 50;
/// Leases revoked per trial, each raced by [`RENEWALS`] renewals.
const LEASES: usize = 3;
const RENEWALS: usize = 3;
/// What a renewal that loses to a revocation may answer (400 each).
const LOST_RENEWAL: [&str; 2] = ["lease is being revoked", "lease not found"];

#[derive(Clone)]
struct Issued {
    lease_id: String,
    username: String,
    password: String,
}

async fn issue_as(s: &TestServer, token: &str, path: &str) -> Issued {
    let r = s.read_as(token, path).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    Issued {
        lease_id: body["lease_id"].as_str().unwrap().to_string(),
        username: body["data"]["username"].as_str().unwrap().to_string(),
        password: body["data"]["password"].as_str().unwrap().to_string(),
    }
}

async fn renew_as(s: &TestServer, token: &str, lease_id: &str, increment: &str) -> (u16, String) {
    let r = s
        .write_as(
            token,
            "sys/leases/renew",
            json!({"lease_id": lease_id, "increment": increment}),
        )
        .await;
    let error = if r.status.is_success() {
        String::new()
    } else {
        r.error()
    };
    (r.status.as_u16(), error)
}

/// How the leases of a trial are revoked.
#[derive(Clone, Copy, Debug)]
enum Revocation {
    /// `sys/leases/revoke`, one request per lease, `sync` as given.
    Direct { sync: bool },
    /// `sys/leases/revoke-prefix` over the role's leases, `sync` as given.
    Prefix { sync: bool },
    /// Revoking the token that issued the leases (three routes in turn).
    Token,
}

struct Race {
    s: TestServer,
    pg: Pg,
    creds: String,
    db: String,
    /// Only `update` on `sys/leases/renew` and `sys/leases/lookup`.
    renewer: String,
    /// Only what `how` needs.
    revoker: String,
    how: Revocation,
}

impl Race {
    async fn new(cluster: &str, how: Revocation) -> Race {
        let pg = Pg::start(PgVersion::under_test());
        let s = TestServer::start().await;
        let creds = setup(
            &s,
            &pg,
            cluster,
            json!({"default_ttl": "1m", "max_ttl": "24h", "password_scram_iterations": 1}),
        )
        .await;
        let db = format!("{}_db", cluster.replace('-', "_"));
        let renewer = token_for(
            &s,
            "renewer",
            r#"path "sys/leases/renew" { capabilities = ["update"] }
path "sys/leases/lookup" { capabilities = ["update"] }"#,
        )
        .await;
        let revoker =
            match how {
                Revocation::Direct { .. } => {
                    token_for(
                        &s,
                        "revoker",
                        r#"path "sys/leases/revoke" { capabilities = ["update"] }"#,
                    )
                    .await
                }
                Revocation::Prefix { .. } => token_for(
                    &s,
                    "prefix-revoker",
                    r#"path "sys/leases/revoke-prefix/*" { capabilities = ["update", "sudo"] }"#,
                )
                .await,
                Revocation::Token => {
                    token_for(
                        &s,
                        "token-revoker",
                        r#"path "auth/token/revoke" { capabilities = ["update"] }
path "auth/token/revoke-accessor" { capabilities = ["update"] }"#,
                    )
                    .await
                }
            };
        token_for(
            &s,
            "issuer",
            r#"path "database/creds/*" { capabilities = ["read"] }"#,
        )
        .await;
        Race {
            s,
            pg,
            creds,
            db,
            renewer,
            revoker,
            how,
        }
    }

    /// A token that may only issue credentials, and its accessor.
    async fn issuer(&self) -> (String, String) {
        let r = self
            .s
            .write("auth/token/create", json!({"policies": ["issuer"]}))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let auth = &r.json()["auth"];
        (
            auth["client_token"].as_str().unwrap().to_string(),
            auth["accessor"].as_str().unwrap().to_string(),
        )
    }

    /// The revocation request(s) of trial `trial`: (what was sent, status).
    async fn revoke(
        &self,
        trial: usize,
        leases: &[Issued],
        issuer: &(String, String),
    ) -> Vec<(String, u16, String)> {
        let s = &self.s;
        let mut answers = Vec::new();
        match self.how {
            Revocation::Direct { sync } => {
                let mut set = JoinSet::new();
                for lease in leases {
                    let (url, token, id) =
                        (s.url.clone(), self.revoker.clone(), lease.lease_id.clone());
                    let client = s.client.clone();
                    set.spawn(async move {
                        let r = client
                            .post(format!("{url}/v1/sys/leases/revoke"))
                            .header("X-Vault-Token", token)
                            .json(&json!({"lease_id": id, "sync": sync}))
                            .send()
                            .await
                            .unwrap();
                        let status = r.status().as_u16();
                        (
                            format!("revoke {id}"),
                            status,
                            r.text().await.unwrap_or_default(),
                        )
                    });
                }
                while let Some(answer) = set.join_next().await {
                    answers.push(answer.unwrap());
                }
            }
            Revocation::Prefix { sync } => {
                let prefix = &self.creds;
                let r = s
                    .write_as(
                        &self.revoker,
                        &format!("sys/leases/revoke-prefix/{prefix}"),
                        json!({"sync": sync}),
                    )
                    .await;
                answers.push((format!("revoke-prefix {prefix}"), r.status.as_u16(), r.text));
            }
            Revocation::Token => {
                let (token, accessor) = issuer;
                let r = match trial % 3 {
                    0 => {
                        s.write_as(&self.revoker, "auth/token/revoke", json!({"token": token}))
                            .await
                    }
                    1 => {
                        s.write_as(
                            &self.revoker,
                            "auth/token/revoke-accessor",
                            json!({"accessor": accessor}),
                        )
                        .await
                    }
                    _ => {
                        s.request("POST", "auth/token/revoke-self", Some(token), None)
                            .await
                    }
                };
                answers.push(("token revocation".into(), r.status.as_u16(), r.text));
            }
        }
        answers
    }

    fn accepted(&self) -> u16 {
        match self.how {
            Revocation::Direct { sync: true } | Revocation::Prefix { sync: true } => 204,
            Revocation::Direct { sync: false } | Revocation::Prefix { sync: false } => 202,
            Revocation::Token => 204,
        }
    }

    fn synchronous(&self) -> bool {
        matches!(
            self.how,
            Revocation::Direct { sync: true } | Revocation::Prefix { sync: true }
        )
    }
}

/// Runs [`TRIALS`] trials of [`LEASES`] leases, each revoked while
/// [`RENEWALS`] renewals of it run; then checks in PostgreSQL that every
/// user is gone and that no lease can be renewed.
async fn race(cluster: &str, how: Revocation) {
    let race = std::sync::Arc::new(Race::new(cluster, how).await);
    let mut failures: Vec<String> = Vec::new();
    let mut revoked: Vec<Issued> = Vec::new();
    let mut lost_renewals = 0;
    for trial in 0..TRIALS {
        let issuer = race.issuer().await;
        let mut issuing = JoinSet::new();
        for _ in 0..LEASES {
            let (race, token) = (std::sync::Arc::clone(&race), issuer.0.clone());
            issuing.spawn(async move { issue_as(&race.s, &token, &race.creds).await });
        }
        let mut leases = Vec::new();
        while let Some(lease) = issuing.join_next().await {
            leases.push(lease.unwrap());
        }

        // Renewals and the revocation, all at once.
        let mut renewals = JoinSet::new();
        for lease in &leases {
            for _ in 0..RENEWALS {
                let (race, id) = (std::sync::Arc::clone(&race), lease.lease_id.clone());
                renewals.spawn(async move {
                    let (status, error) = renew_as(&race.s, &race.renewer, &id, "1h").await;
                    (id, status, error)
                });
            }
        }
        let answers = race.revoke(trial, &leases, &issuer).await;
        for (what, status, text) in &answers {
            if *status != race.accepted() {
                failures.push(format!("trial {trial}: {what} answered {status}: {text}"));
            }
        }
        while let Some(joined) = renewals.join_next().await {
            let (id, status, error) = joined.unwrap();
            match status {
                200 => {}
                400 if LOST_RENEWAL.contains(&error.as_str()) => lost_renewals += 1,
                _ => failures.push(format!(
                    "trial {trial}: a renewal of {id} racing the revocation answered {status} {error:?}"
                )),
            }
        }
        // Accepted means accepted: no renewal from now on succeeds, and a
        // synchronous revocation has dropped the users when it answers.
        for lease in &leases {
            let (status, error) = renew_as(&race.s, &race.renewer, &lease.lease_id, "1h").await;
            if status != 400 || !LOST_RENEWAL.contains(&error.as_str()) {
                failures.push(format!(
                    "trial {trial}: {} renewed after its revocation was accepted: {status} {error:?}",
                    lease.lease_id
                ));
            }
            if race.synchronous() && role_exists(&race.pg, &lease.username).await {
                failures.push(format!(
                    "trial {trial}: {} still exists after its revocation answered",
                    lease.username
                ));
            }
        }
        revoked.extend(leases);
    }

    // Background revocations finish; then nothing of any lease is left.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut survivors: Vec<&Issued> = revoked.iter().collect();
    while !survivors.is_empty() && Instant::now() < deadline {
        let mut left = Vec::new();
        for lease in survivors {
            if role_exists(&race.pg, &lease.username).await {
                left.push(lease);
            }
        }
        survivors = left;
        if !survivors.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    for lease in &survivors {
        let (status, error) = renew_as(&race.s, &race.renewer, &lease.lease_id, "1h").await;
        failures.push(format!(
            "{} survived its revocation (login: {}; renewal now: {status} {error:?})",
            lease.username,
            can_login(&race.pg, &lease.username, &lease.password, &race.db).await
        ));
    }
    for lease in &revoked {
        let r = race
            .s
            .write_as(
                &race.renewer,
                "sys/leases/lookup",
                json!({"lease_id": lease.lease_id}),
            )
            .await;
        if r.status != 400 {
            failures.push(format!(
                "{} is still listed after its revocation: {}",
                lease.lease_id, r.text
            ));
        }
    }
    eprintln!(
        "{how:?}: {} leases revoked in {TRIALS} trials, {lost_renewals} renewals lost the race",
        revoked.len()
    );
    assert!(
        failures.is_empty(),
        "{} failure(s) ({} leases in {TRIALS} trials):\n{}",
        failures.len(),
        revoked.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_racing_renewals_always_wins() {
    race("adv-rr-direct", Revocation::Direct { sync: true }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_revoke_racing_renewals_always_wins() {
    race("adv-rr-async", Revocation::Direct { sync: false }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_revoke_racing_renewals_always_wins() {
    race("adv-rr-prefix", Revocation::Prefix { sync: true }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_prefix_revoke_racing_renewals_always_wins() {
    race("adv-rr-prefix-async", Revocation::Prefix { sync: false }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_owning_token_racing_renewals_always_wins() {
    race("adv-rr-token", Revocation::Token).await;
}

/// Management-role sessions of `pg` waiting for a lock.
async fn waiting_revocations(pg: &Pg) -> i64 {
    pg.admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE 'v-manage-%' AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_a_revocation_was_accepted_does_not_undo_it() {
    let pg = Pg::start(PgVersion::under_test());
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (config, url, root, mut server) = durable_server(dir.path(), &client).await;
    register_over_http(
        &client,
        &url,
        &root,
        &pg,
        "crashrev",
        json!({"default_ttl": "1h", "password_scram_iterations": 1}),
    )
    .await;
    let mut leases: Vec<(String, String)> = Vec::new();
    for _ in 0..2 {
        let (status, body) = call(
            &client,
            "GET",
            &format!("{url}/v1/database/creds/crashrev/crashrevdb/app"),
            &root,
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        leases.push((
            body["lease_id"].as_str().unwrap().to_string(),
            body["data"]["username"].as_str().unwrap().to_string(),
        ));
    }

    // Revocations stall in PostgreSQL: every change to a role waits for
    // this transaction, so the server dies between accepting them and
    // finishing them.
    let blocker = pg.admin().await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE pg_catalog.pg_authid IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let sync_revoke = {
        let (client, url, root, id) = (
            client.clone(),
            url.clone(),
            root.clone(),
            leases[0].0.clone(),
        );
        tokio::spawn(async move {
            let _ = client
                .post(format!("{url}/v1/sys/leases/revoke"))
                .header("X-Vault-Token", root)
                .json(&json!({"lease_id": id}))
                .send()
                .await;
        })
    };
    let (status, body) = call(
        &client,
        "POST",
        &format!("{url}/v1/sys/leases/revoke"),
        &root,
        Some(json!({"lease_id": leases[1].0, "sync": false})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while waiting_revocations(&pg).await < 2 {
        assert!(
            Instant::now() < deadline,
            "the revocations never reached PostgreSQL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::process::Command::new("kill")
        .args(["-KILL", &server.id().to_string()])
        .status()
        .unwrap();
    let _ = server.wait();
    let _ = sync_revoke.await;
    // Their transactions roll back: both users are still there.
    pg.admin()
        .await
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename LIKE 'v-manage-%'",
        )
        .await
        .unwrap();
    blocker.batch_execute("ROLLBACK").await.unwrap();
    for (_, username) in &leases {
        assert!(
            role_exists(&pg, username).await,
            "{username} was dropped before the crash"
        );
    }

    let mut server = start(&config);
    wait_healthy(&client, &url).await;
    for (lease_id, _) in &leases {
        let (status, body) = call(
            &client,
            "POST",
            &format!("{url}/v1/sys/leases/renew"),
            &root,
            Some(json!({"lease_id": lease_id, "increment": "1h"})),
        )
        .await;
        assert_eq!(status, 400, "{lease_id} renewable after the crash: {body}");
        let error = body["errors"][0].as_str().unwrap_or_default();
        assert!(LOST_RENEWAL.contains(&error), "{body}");
        let (status, body) = call(
            &client,
            "POST",
            &format!("{url}/v1/sys/leases/lookup"),
            &root,
            Some(json!({"lease_id": lease_id})),
        )
        .await;
        assert!(
            status == 400 || body["data"]["renewable"] == json!(false),
            "{status} {body}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for (lease_id, username) in &leases {
        while role_exists(&pg, username).await {
            assert!(
                Instant::now() < deadline,
                "{username} ({lease_id}) survived its revocation across a crash"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    let _ = server.wait();
}

/// Polls until `promised` has passed (measured from before the request
/// that made the promise): the user must log in at every check that
/// finished before then.
async fn lives_until(
    pg: &Pg,
    db: &str,
    user: &Issued,
    since: Instant,
    promised: Duration,
) -> Vec<String> {
    let mut failures = Vec::new();
    loop {
        let ok = can_login(pg, &user.username, &user.password, db).await;
        // Measured after the check: a failed check that finished before
        // the promised end saw the user gone before it.
        let elapsed = since.elapsed();
        if elapsed >= promised {
            return failures;
        }
        if !ok {
            failures.push(format!(
                "{} ({}) could not log in {elapsed:?} into a lease of {promised:?}",
                user.username, user.lease_id
            ));
            return failures;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_of_n_seconds_lives_at_least_n_seconds() {
    const ROUNDS: usize = 4;
    const AT_ONCE: usize = 4;
    let pg = Pg::start(PgVersion::under_test());
    let s = std::sync::Arc::new(TestServer::start().await);
    let creds = setup(
        &s,
        &pg,
        "adv-early",
        json!({"default_ttl": "2s", "max_ttl": "1h", "password_scram_iterations": 1}),
    )
    .await;
    let pg = std::sync::Arc::new(pg);
    let db = "adv_early_db";
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let mut set = JoinSet::new();
        for i in 0..AT_ONCE {
            let (s, pg, creds) = (
                std::sync::Arc::clone(&s),
                std::sync::Arc::clone(&pg),
                creds.clone(),
            );
            set.spawn(async move {
                let since = Instant::now();
                let r = s.read(&creds).await;
                assert_eq!(r.status, 200, "{}", r.text);
                let body: Value = r.json();
                assert_eq!(body["lease_duration"], 2, "{body}");
                let user = Issued {
                    lease_id: body["lease_id"].as_str().unwrap().to_string(),
                    username: body["data"]["username"].as_str().unwrap().to_string(),
                    password: body["data"]["password"].as_str().unwrap().to_string(),
                };
                // What lookup shows is a promise too.
                let looked = Instant::now();
                let r = s
                    .write("sys/leases/lookup", json!({"lease_id": user.lease_id}))
                    .await;
                assert_eq!(r.status, 200, "{}", r.text);
                let ttl = r.data()["ttl"].as_u64().unwrap();
                assert!(ttl <= 2, "lookup shows more than the lease's {ttl}");
                let mut promised =
                    (since + Duration::from_secs(2)).max(looked + Duration::from_secs(ttl));
                if (round + i) % 2 == 1 {
                    // A renewal by 2 s promises 2 s from when it was asked.
                    let renewed = Instant::now();
                    let r = s
                        .write(
                            "sys/leases/renew",
                            json!({"lease_id": user.lease_id, "increment": "2s"}),
                        )
                        .await;
                    assert_eq!(r.status, 200, "{}", r.text);
                    assert_eq!(r.json()["lease_duration"], 2, "{}", r.text);
                    promised = promised.max(renewed + Duration::from_secs(2));
                }
                lives_until(&pg, db, &user, since, promised - since).await
            });
        }
        while let Some(f) = set.join_next().await {
            failures.extend(f.unwrap());
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} leases ended early:\n{}",
        failures.len(),
        ROUNDS * AT_ONCE,
        failures.join("\n")
    );
}
