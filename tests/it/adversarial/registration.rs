//! One PostgreSQL server, one registration; and registrations that race
//! never lose a root password.
//!
//! Found: the same server registered as `c2` next to `c1` (also through
//! `localhost` instead of `127.0.0.1`); `reconcile/c2 dry_run=false` then
//! dropped `c1`'s live users; registering with `c1`'s root or management
//! role rotated them away from `c1`. And 8 parallel registrations with one
//! root user: 4 succeeded, and 3 of them stored a root password that no
//! longer worked. Outcomes are checked in PostgreSQL: who still logs in,
//! which users `pg_roles` still holds.

use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::support::engine::setup;
use crate::support::engine::{can_login, cluster_body, register, role_exists, root_user};
use crate::support::pg::{Pg, PgVersion};
use crate::support::server::TestServer;

const TRIALS: usize = 50;
const CONCURRENT: usize = 8;

/// The cluster as the root token (sudo) reads it: passwords included.
async fn stored(s: &TestServer, cluster: &str) -> Value {
    let r = s.read(&format!("database/cluster/{cluster}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.data()
}

fn body_at(pg: &Pg, host: &str, user: &str, password: &str) -> Value {
    let mut body = cluster_body(pg, user, password);
    body["host"] = json!(host);
    body
}

#[tokio::test]
async fn the_same_server_is_not_registered_twice_under_other_names() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    register(&s, pg, "adv-one").await;
    let (user, password) = root_user(pg, "adv_one_again").await;
    for host in ["127.0.0.1", "localhost"] {
        let r = s
            .write(
                "database/cluster/adv-two",
                body_at(pg, host, &user, &password),
            )
            .await;
        assert_eq!(r.status, 400, "via {host}: {}", r.text);
        assert!(r.error().contains("\"adv-one\""), "via {host}: {}", r.text);
        assert!(
            can_login(pg, &user, &password, "postgres").await,
            "a refused registration rotates nothing"
        );
        assert_eq!(s.read("database/cluster/adv-two").await.status, 404);
    }
    // A disabled cluster still holds its server until it is purged.
    assert_eq!(s.delete("database/cluster/adv-one").await.status, 204);
    let r = s
        .write(
            "database/cluster/adv-two",
            body_at(pg, "localhost", &user, &password),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().contains("\"adv-one\""), "{}", r.text);
    // Purged, the server is free again.
    assert_eq!(s.delete("database/gc/cluster/adv-one").await.status, 204);
    let r = s
        .write(
            "database/cluster/adv-two",
            body_at(pg, "localhost", &user, &password),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn registering_with_a_role_another_cluster_manages_is_refused() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let root = register(&s, pg, "adv-roles").await;
    let c1 = stored(&s, "adv-roles").await;
    let (root_pw, manage, manage_pw) = (
        c1["password"].as_str().unwrap().to_string(),
        c1["management_role"].as_str().unwrap().to_string(),
        c1["management_password"].as_str().unwrap().to_string(),
    );
    for (user, password) in [(&root, &root_pw), (&manage, &manage_pw)] {
        for host in ["127.0.0.1", "localhost"] {
            let r = s
                .write(
                    "database/cluster/adv-roles2",
                    body_at(pg, host, user, password),
                )
                .await;
            assert_eq!(r.status, 400, "{user} via {host}: {}", r.text);
            assert!(r.error().contains("\"adv-roles\""), "{}", r.text);
            assert!(
                can_login(pg, user, password, "postgres").await,
                "{user} keeps the password adv-roles stored"
            );
        }
    }
    assert_eq!(stored(&s, "adv-roles").await["password"], json!(root_pw));
}

#[tokio::test]
async fn reconcile_of_another_registration_never_drops_the_first_ones_users() {
    // The same server under a second mount (which may hold its own
    // registration of it): its reconcile must not take the first mount's
    // users for orphans.
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let creds = setup(&s, pg, "adv-rec1", json!({"default_ttl": "1h"})).await;
    let r = s.read(&creds).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let issued = r.json();
    let user = issued["data"]["username"].as_str().unwrap().to_string();
    let password = issued["data"]["password"].as_str().unwrap().to_string();
    let r = s
        .write("sys/mounts/adv-db2", json!({"type": "database"}))
        .await;
    assert!(r.status == 204 || r.status == 200, "{}", r.text);
    let (root2, pw2) = root_user(pg, "adv_rec2_root").await;
    let r = s
        .write(
            "adv-db2/cluster/adv-rec2",
            body_at(pg, "localhost", &root2, &pw2),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let r = s.read("adv-db2/reconcile/adv-rec2").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains(&user), "listed as untracked: {}", r.text);
    let r = s
        .write("adv-db2/reconcile/adv-rec2", json!({"dry_run": false}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        role_exists(pg, &user).await,
        "{user} was dropped: {}",
        r.text
    );
    assert!(can_login(pg, &user, &password, "adv_rec1_db").await);
    // Its own reconcile still finds it tracked.
    let r = s.read("database/reconcile/adv-rec1").await;
    assert_eq!(r.data()["untracked_users"], json!([]), "{}", r.text);
}

#[tokio::test]
async fn a_cluster_whose_name_prefixes_another_touches_only_its_own_users() {
    let other = Pg::start(PgVersion::under_test());
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let short = setup(&s, pg, "adv-c1", json!({"default_ttl": "1h"})).await;
    register(&s, &other, "adv-c1adv").await;
    let r = s
        .write("database/cluster/adv-c1adv/adv_c1_db", json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let long = "database/creds/adv-c1adv/adv_c1_db/app";
    let mine = s.read(&short).await.json();
    let theirs = s.read(long).await.json();
    let their_user = theirs["data"]["username"].as_str().unwrap().to_string();
    let their_lease = theirs["lease_id"].as_str().unwrap().to_string();
    let my_user = mine["data"]["username"].as_str().unwrap().to_string();

    // Disabling adv-c1 revokes the leases under creds/adv-c1/ only.
    let r = s.delete("database/cluster/adv-c1").await;
    assert!(r.status == 204 || r.status == 200, "{}", r.text);
    crate::support::engine::wait_until_gone(pg, &my_user, std::time::Duration::from_secs(30)).await;
    let r = s
        .write("sys/leases/lookup", json!({"lease_id": their_lease}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(role_exists(&other, &their_user).await);
    let r = s
        .write("database/reconcile/adv-c1adv", json!({"dry_run": false}))
        .await;
    assert_eq!(r.data()["revoked"], json!([]), "{}", r.text);
    assert!(role_exists(&other, &their_user).await);
}

/// Registers `names` at once on `s`, all with the same root user; returns
/// the status of each.
fn race(
    set: &mut JoinSet<(String, u16, String)>,
    s: &TestServer,
    names: Vec<String>,
    body: &Value,
) {
    for name in names {
        let (client, url, token, body) = (
            s.client.clone(),
            s.url.clone(),
            s.root_token.clone(),
            body.clone(),
        );
        set.spawn(async move {
            let r = client
                .post(format!("{url}/v1/database/cluster/{name}"))
                .header("X-Vault-Token", token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (name, status, r.text().await.unwrap())
        });
    }
}

#[tokio::test]
async fn concurrent_registrations_of_one_server_let_one_through_with_a_working_password() {
    let pg = Pg::start(PgVersion::under_test());
    for trial in 0..TRIALS {
        let s = TestServer::start().await;
        let (user, password) = root_user(&pg, &format!("race_root_{trial}")).await;
        let body = cluster_body(&pg, &user, &password);
        let mut set = JoinSet::new();
        let names = (0..CONCURRENT)
            .map(|i| format!("race{trial}-{i}"))
            .collect();
        race(&mut set, &s, names, &body);
        let mut won = Vec::new();
        while let Some(joined) = set.join_next().await {
            let (name, status, text) = joined.unwrap();
            assert!(
                status == 200 || (400..500).contains(&status),
                "trial {trial}: {name} answered {status}: {text}"
            );
            if status == 200 {
                won.push(name);
            }
        }
        assert_eq!(won.len(), 1, "trial {trial}: {won:?} all succeeded");
        let record = stored(&s, &won[0]).await;
        let current = record["password"].as_str().unwrap();
        assert!(
            can_login(&pg, &user, current, "postgres").await,
            "trial {trial}: the root password {} stored does not log in",
            won[0]
        );
        let listed = s.list("database/cluster").await.data()["keys"].clone();
        assert_eq!(listed, json!([won[0]]), "trial {trial}");
    }
}

#[tokio::test]
async fn two_pgsecrets_racing_on_one_server_each_keep_a_working_password() {
    let pg = Pg::start(PgVersion::under_test());
    for trial in 0..TRIALS {
        let a = TestServer::start().await;
        let b = TestServer::start().await;
        let (user, password) = root_user(&pg, &format!("xrace_root_{trial}")).await;
        let body = cluster_body(&pg, &user, &password);
        let mut set = JoinSet::new();
        let half = CONCURRENT / 2;
        race(
            &mut set,
            &a,
            (0..half).map(|i| format!("a{i}")).collect(),
            &body,
        );
        race(
            &mut set,
            &b,
            (0..half).map(|i| format!("b{i}")).collect(),
            &body,
        );
        let mut won = Vec::new();
        while let Some(joined) = set.join_next().await {
            let (name, status, text) = joined.unwrap();
            assert!(
                status == 200 || (400..500).contains(&status),
                "trial {trial}: {name} answered {status}: {text}"
            );
            if status == 200 {
                won.push(name);
            }
        }
        assert!(!won.is_empty(), "trial {trial}: nobody registered");
        for name in &won {
            let server = if name.starts_with('a') { &a } else { &b };
            let record = stored(server, name).await;
            let current = record["password"].as_str().unwrap();
            assert!(
                can_login(&pg, &user, current, "postgres").await,
                "trial {trial}: {name} (of {won:?}) stored a root password that does not log in"
            );
        }
    }
}

#[tokio::test]
async fn a_clone_onto_the_originals_own_server_is_refused() {
    let pg = Pg::start(PgVersion::under_test());
    let s = TestServer::start().await;
    register(&s, &pg, "adv-orig").await;
    let before = stored(&s, "adv-orig").await;
    let r = s
        .write(
            "database/clone/adv-orig",
            json!({"target": "adv-copy", "host": "localhost", "port": pg.port()}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().contains("\"adv-orig\""), "{}", r.text);
    let user = before["username"].as_str().unwrap();
    assert!(
        can_login(&pg, user, before["password"].as_str().unwrap(), "postgres").await,
        "the original keeps its root password"
    );
    assert_eq!(s.read("database/cluster/adv-copy").await.status, 404);
}

#[tokio::test]
async fn a_stuck_rotation_of_the_same_user_answers_4xx_and_changes_nothing() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let user = register(&s, pg, "adv-stuck").await;
    let before = stored(&s, "adv-stuck").await;
    // Someone holds the rotation lock of this user in the server (the
    // namespace key pgsecrets uses, "pgsr").
    let holder = pg.admin().await;
    holder
        .execute(
            "SELECT pg_advisory_lock(1885827954, hashtext($1))",
            &[&user],
        )
        .await
        .unwrap();
    let r = s.write("database/rotate-root/adv-stuck", json!({})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.error().contains("another password rotation"),
        "{}",
        r.text
    );
    drop(holder);
    let after = stored(&s, "adv-stuck").await;
    assert_eq!(after["password"], before["password"]);
    assert!(can_login(pg, &user, after["password"].as_str().unwrap(), "postgres").await);
    let r = s.write("database/rotate-root/adv-stuck", json!({})).await;
    assert_eq!(r.status, 204, "{}", r.text);
}
