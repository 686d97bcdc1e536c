//! Disabling and purging: the two ways to take a cluster away while its
//! users live. A purge forgets the credentials that revoke them, so it is
//! refused while any lease of the cluster or database exists (found: with
//! PostgreSQL down, disable then purge succeeded, and when PostgreSQL came
//! back the user still logged in under a lease nobody could revoke). And
//! a credential request racing a disable is answered 4xx, never with a
//! gateway error from the pool the disable closed.

use super::token_for;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;

use crate::support::engine::{can_login, role_exists};
use crate::support::engine::{setup, wait_until_gone};
use crate::support::pg::{Pg, PgVersion};
use crate::support::server::TestServer;

const TRIALS: usize = 50;
const CONCURRENT: usize = 8;

async fn delete_as(s: &TestServer, token: &str, path: &str) -> (u16, String) {
    let r = s.request("DELETE", path, Some(token), None).await;
    (r.status.as_u16(), r.text)
}

struct Issued {
    lease_id: String,
    username: String,
    password: String,
}

async fn issue(s: &TestServer, path: &str) -> Issued {
    let r = s.read(path).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    Issued {
        lease_id: body["lease_id"].as_str().unwrap().to_string(),
        username: body["data"]["username"].as_str().unwrap().to_string(),
        password: body["data"]["password"].as_str().unwrap().to_string(),
    }
}

#[tokio::test]
async fn purge_is_refused_while_users_of_the_cluster_await_revocation() {
    // A private server: this test stops it.
    let pg = Pg::start(PgVersion::under_test());
    let s = TestServer::start().await;
    let creds = setup(&s, &pg, "adv-purge", json!({"default_ttl": "1h"})).await;
    let db = "adv_purge_db";
    let user = issue(&s, &creds).await;
    let purger = token_for(
        &s,
        "purger",
        r#"path "database/gc/*" { capabilities = ["read", "list", "delete"] }"#,
    )
    .await;
    let sudo_purger = token_for(
        &s,
        "sudo-purger",
        r#"path "database/gc/*" { capabilities = ["read", "list", "delete", "sudo"] }"#,
    )
    .await;

    // PostgreSQL goes away; the disables are accepted, their revocations fail.
    pg.stop();
    let r = s.delete(&format!("database/cluster/adv-purge/{db}")).await;
    assert!(r.status == 204 || r.status == 200, "{}", r.text);
    let r = s.delete("database/cluster/adv-purge").await;
    assert!(r.status == 204 || r.status == 200, "{}", r.text);

    // The database's purge is refused while its lease exists.
    let (status, text) =
        delete_as(&s, &purger, &format!("database/gc/cluster/adv-purge/{db}")).await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("still has 1 outstanding lease(s)"),
        "names the leases: {text}"
    );
    // Purging the cluster forgets its root password: it needs sudo, and
    // even with sudo it is refused while the lease exists.
    let (status, text) = delete_as(&s, &purger, "database/gc/cluster/adv-purge").await;
    assert_eq!(status, 403, "{text}");
    let (status, text) = delete_as(&s, &sudo_purger, "database/gc/cluster/adv-purge").await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains(r#"cluster \"adv-purge\" still has 1 outstanding lease(s)"#),
        "{text}"
    );

    // PostgreSQL is back: the user is still there, and its lease still
    // revocable because the cluster's credentials were kept.
    pg.restart();
    assert!(can_login(&pg, &user.username, &user.password, db).await);
    let r = s
        .write("sys/leases/revoke", json!({"lease_id": user.lease_id}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(
        !role_exists(&pg, &user.username).await,
        "revoked user dropped"
    );

    // Nothing left to revoke: both purges go through.
    let (status, text) =
        delete_as(&s, &purger, &format!("database/gc/cluster/adv-purge/{db}")).await;
    assert_eq!(status, 204, "{text}");
    let (status, text) = delete_as(&s, &sudo_purger, "database/gc/cluster/adv-purge").await;
    assert_eq!(status, 204, "{text}");
}

#[tokio::test]
async fn credentials_racing_a_disable_are_refused_with_4xx_and_leave_no_user() {
    let pg = Pg::shared();
    let mut issued = Vec::new();
    // One pgsecrets per trial: a mount holds one registration of a server,
    // and a disabled cluster keeps holding it. Each is kept running until
    // its revocations are seen through.
    let mut servers = Vec::new();
    for trial in 0..TRIALS {
        let s = TestServer::start().await;
        let reader = token_for(
            &s,
            "creds-reader",
            r#"path "database/creds/*" { capabilities = ["read"] }"#,
        )
        .await;
        let cluster = format!("adv-dis-{trial}");
        let creds = setup(&s, pg, &cluster, json!({"default_ttl": "1h"})).await;
        let mut set = JoinSet::new();
        for _ in 0..CONCURRENT {
            set.spawn(s.read_request(&reader, &creds));
        }
        // Let the first requests reach their pools, then take them away.
        tokio::time::sleep(Duration::from_millis(trial as u64 % 5)).await;
        let r = s.delete(&format!("database/cluster/{cluster}")).await;
        assert!(r.status == 204 || r.status == 200, "{}", r.text);
        while let Some(answer) = set.join_next().await {
            let (status, text) = answer.unwrap();
            match status {
                200 => {
                    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
                    issued.push(body["data"]["username"].as_str().unwrap().to_string());
                }
                400 => assert!(
                    text.contains("is disabled") || text.contains("was disabled"),
                    "trial {trial}: a refusal that says why: {text}"
                ),
                _ => panic!("trial {trial}: {status} {text}"),
            }
        }
        servers.push(s);
    }
    // Every user issued before a disable is revoked by it.
    for user in &issued {
        wait_until_gone(pg, user, Duration::from_secs(60)).await;
    }
    drop(servers);
}
