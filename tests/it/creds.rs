//! `database/creds/...` and `sys/leases/*`: issuing, logging in, renewing,
//! revoking and expiring database users on real PostgreSQL.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::engine::{register, role_exists, setup, wait_until_gone};
use crate::support::pg::{Pg, PgVersion};
use crate::support::server::TestServer;

struct Creds {
    lease_id: String,
    username: String,
    password: String,
    database: String,
    body: Value,
}

async fn issue(s: &TestServer, path: &str) -> Creds {
    let r = s.read(path).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    let d = &body["data"];
    Creds {
        lease_id: body["lease_id"].as_str().unwrap().to_string(),
        username: d["username"].as_str().unwrap().to_string(),
        password: d["password"].as_str().unwrap().to_string(),
        database: d["database"].as_str().unwrap().to_string(),
        body,
    }
}

#[tokio::test]
async fn issued_users_log_in_and_what_one_creates_the_next_can_use() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let path = setup(
        &s,
        pg,
        "cr1",
        json!({"default_ttl": "10m", "max_ttl": "1h"}),
    )
    .await;
    let a = issue(&s, &path).await;
    // The envelope Vault clients read.
    assert_eq!(a.body["renewable"], true);
    assert_eq!(a.body["lease_duration"], 600);
    let suffix = a
        .lease_id
        .strip_prefix(&format!("{path}/"))
        .expect("lease id = path + /random");
    assert_eq!(suffix.len(), 24);
    assert!(
        a.username.starts_with("v-app-") && a.username.len() <= 63,
        "{}",
        a.username
    );
    assert!(a.password.len() >= 32);
    let d = &a.body["data"];
    assert_eq!(d["host"], "127.0.0.1");
    assert_eq!(d["port"], pg.port());
    assert_eq!(
        d["connection_url"],
        format!(
            "postgresql://{}:{}@127.0.0.1:{}/{}?sslmode=disable",
            a.username,
            a.password,
            pg.port(),
            a.database
        )
        .as_str()
    );

    let first = pg
        .connect(&a.username, &a.password, &a.database)
        .await
        .expect("the issued user logs in");
    first
        .batch_execute("CREATE TABLE orders (id int); INSERT INTO orders VALUES (42);")
        .await
        .expect("an issued user can create in schema public");
    let valid_until: Option<String> = pg
        .admin()
        .await
        .query_one(
            "SELECT rolvaliduntil::text FROM pg_roles WHERE rolname = $1",
            &[&a.username],
        )
        .await
        .unwrap()
        .get(0);
    assert!(valid_until.is_some(), "VALID UNTIL is set");

    let b = issue(&s, &path).await;
    assert_ne!(a.username, b.username);
    let second = pg
        .connect(&b.username, &b.password, &b.database)
        .await
        .unwrap();
    let row = second
        .query_one("SELECT id FROM orders", &[])
        .await
        .expect("the next user reads the table");
    assert_eq!(row.get::<_, i32>(0), 42);

    let r = s
        .write("sys/leases/revoke", json!({"lease_id": a.lease_id}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(!role_exists(pg, &a.username).await, "revoked user dropped");
    assert!(
        first.query_one("SELECT 1", &[]).await.is_err(),
        "its open session was terminated"
    );
    let row = second
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .expect("objects survive revocation");
    assert_eq!(row.get::<_, i64>(0), 1);
}

#[tokio::test]
async fn a_role_copied_from_vaults_docs_works_unchanged() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let vault_role = r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";"#;
    let path = setup(
        &s,
        pg,
        "cr2",
        json!({"creation_statements": [vault_role], "default_ttl": "5m"}),
    )
    .await;
    let c = issue(&s, &path).await;
    let client = pg
        .connect(&c.username, &c.password, &c.database)
        .await
        .expect("login works");
    client.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(
        s.write("sys/leases/revoke", json!({"lease_id": c.lease_id}))
            .await
            .status,
        204
    );
    assert!(!role_exists(pg, &c.username).await);
}

#[tokio::test]
async fn leases_are_looked_up_renewed_listed_and_revoked() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let path = setup(
        &s,
        pg,
        "cr3",
        json!({"default_ttl": "10m", "max_ttl": "30m"}),
    )
    .await;
    let c = issue(&s, &path).await;

    let r = s
        .write("sys/leases/lookup", json!({"lease_id": c.lease_id}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = r.data();
    assert_eq!(d["id"], c.lease_id.as_str());
    assert_eq!(d["renewable"], true);
    assert!(d["ttl"].as_u64().unwrap() <= 600 && d["ttl"].as_u64().unwrap() >= 595);
    assert!(d["expire_time"].as_str().unwrap().ends_with('Z'));
    assert!(d["last_renewal"].is_null());

    let before: String = valid_until(pg, &c.username).await;
    let r = s
        .write(
            "sys/leases/renew",
            json!({"lease_id": c.lease_id, "increment": "20m"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["lease_id"], c.lease_id.as_str());
    assert_eq!(r.json()["lease_duration"], 1200);
    assert_eq!(r.json()["renewable"], true);
    assert!(r.json()["data"].is_null());
    assert_ne!(
        valid_until(pg, &c.username).await,
        before,
        "VALID UNTIL moved with the renewal"
    );
    // Past the role's max_ttl: capped, with Vault's warning.
    let r = s
        .write(
            &format!("sys/leases/renew/{}", c.lease_id),
            json!({"increment": "2h"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ttl = r.json()["lease_duration"].as_u64().unwrap();
    assert!((1790..=1800).contains(&ttl), "{ttl}");
    assert!(r.json()["warnings"][0]
        .as_str()
        .unwrap()
        .contains("exceeded the effective max_ttl"));
    // Legacy path, hvac-style null increment.
    let r = s
        .write(
            "sys/renew",
            json!({"lease_id": c.lease_id, "increment": null}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let r = s.list(&format!("sys/leases/lookup/{path}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id_part = c.lease_id.rsplit('/').next().unwrap();
    assert_eq!(r.data()["keys"], json!([id_part]));
    let r = s.list("sys/leases/lookup/database/creds/").await;
    assert!(r.data()["keys"]
        .as_array()
        .unwrap()
        .contains(&json!("cr3/")));

    assert_eq!(
        s.write("sys/leases/revoke", json!({"lease_id": c.lease_id}))
            .await
            .status,
        204
    );
    assert!(!role_exists(pg, &c.username).await);
    let r = s
        .write("sys/leases/lookup", json!({"lease_id": c.lease_id}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "invalid lease");
    let r = s
        .write("sys/leases/renew", json!({"lease_id": c.lease_id}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "lease not found");
    assert_eq!(
        s.write("sys/leases/revoke", json!({"lease_id": c.lease_id}))
            .await
            .status,
        204,
        "unknown: 204"
    );
    let r = s.write("sys/leases/renew", json!({})).await;
    assert_eq!(r.error(), "lease_id must be specified");
    let r = s.write("sys/leases/lookup", json!({})).await;
    assert_eq!(r.error(), "lease_id must be specified");
    let r = s
        .write(
            "sys/leases/renew",
            json!({"lease_id": "otherdb/creds/x/y/z/abc"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(s.list("sys/leases/lookup/nothing/here").await.status, 404);
}

async fn valid_until(pg: &Pg, user: &str) -> String {
    pg.admin()
        .await
        .query_one(
            "SELECT rolvaliduntil::text FROM pg_roles WHERE rolname = $1",
            &[&user],
        )
        .await
        .unwrap()
        .get::<_, Option<String>>(0)
        .unwrap()
}

#[tokio::test]
async fn revoke_prefix_force_and_reconcile_account_for_every_user() {
    // Reconcile looks at every `v-` user of the server: use one of our own.
    let pg = &Pg::start(PgVersion::under_test());
    let s = TestServer::start().await;
    let path = setup(&s, pg, "cr4", json!({})).await;
    let a = issue(&s, &path).await;
    let b = issue(&s, &path).await;
    let r = s
        .write(&format!("sys/leases/revoke-prefix/{path}"), json!({}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(!role_exists(pg, &a.username).await && !role_exists(pg, &b.username).await);

    // revoke-force forgets the lease and leaves the user: reconcile finds it,
    // and only it (a user under a live lease is tracked).
    let c = issue(&s, &path).await;
    let d = issue(&s, &path).await;
    assert_eq!(
        s.write(
            &format!("sys/leases/revoke-force/{}", c.lease_id),
            json!({})
        )
        .await
        .status,
        204
    );
    assert!(
        role_exists(pg, &c.username).await,
        "revoke-force does not drop the user"
    );
    let r = s.read("database/reconcile/cr4").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["untracked_users"], json!([c.username]));
    assert!(role_exists(pg, &d.username).await);
    let r = s.write("database/reconcile/cr4", json!({})).await;
    assert_eq!(r.data()["dry_run"], true, "dry_run is the default");
    assert!(role_exists(pg, &c.username).await);
    let r = s
        .write("database/reconcile/cr4", json!({"dry_run": false}))
        .await;
    assert_eq!(r.data()["revoked"], json!([c.username]), "{}", r.text);
    assert!(!role_exists(pg, &c.username).await);
    assert_eq!(
        s.read("database/reconcile/cr4").await.data()["untracked_users"],
        json!([])
    );

    // Non-sudo tokens may not revoke by prefix.
    s.write(
        "sys/policies/acl/lessee",
        json!({"policy": r#"path "sys/leases/*" { capabilities = ["update", "list"] }"#}),
    )
    .await;
    let t = s.token_with(&["lessee"]).await;
    assert_eq!(
        s.write_as(&t, &format!("sys/leases/revoke-prefix/{path}"), json!({}))
            .await
            .status,
        403
    );
}

#[tokio::test]
async fn a_short_lived_user_is_dropped_and_its_session_ended_at_expiry() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let path = setup(&s, pg, "cr5", json!({"default_ttl": "2s"})).await;
    let c = issue(&s, &path).await;
    assert_eq!(c.body["lease_duration"], 2);
    let session = pg
        .connect(&c.username, &c.password, &c.database)
        .await
        .unwrap();
    wait_until_gone(pg, &c.username, Duration::from_secs(15)).await;
    assert!(
        session.query_one("SELECT 1", &[]).await.is_err(),
        "the open session was terminated"
    );
    let r = s
        .write("sys/leases/lookup", json!({"lease_id": c.lease_id}))
        .await;
    assert_eq!(r.status, 400, "the lease is gone once revoked");
}

#[tokio::test]
async fn disabling_a_cluster_or_database_drops_its_users_and_refuses_renewal() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let path = setup(&s, pg, "cr6", json!({})).await;
    let a = issue(&s, &path).await;
    let r = s.delete("database/cluster/cr6/cr6_db").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["warnings"][0]
        .as_str()
        .unwrap()
        .contains("being revoked"));
    let r = s
        .write("sys/leases/renew", json!({"lease_id": a.lease_id}))
        .await;
    assert_eq!(r.status, 400);
    wait_until_gone(pg, &a.username, Duration::from_secs(15)).await;
    let r = s.read(&path).await;
    assert_eq!(
        r.status, 400,
        "a disabled database issues nothing: {}",
        r.text
    );

    assert_eq!(
        s.write("database/cluster/cr6/cr6_db", json!({}))
            .await
            .status,
        200
    );
    let b = issue(&s, &path).await;
    assert_eq!(s.delete("database/cluster/cr6").await.status, 200);
    wait_until_gone(pg, &b.username, Duration::from_secs(15)).await;
    assert_eq!(s.read(&path).await.status, 400);
}

#[tokio::test]
async fn revoking_a_token_drops_the_users_it_created() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let path = setup(&s, pg, "cr7", json!({})).await;
    s.write(
        "sys/policies/acl/app",
        json!({"policy": r#"path "database/creds/*" { capabilities = ["read"] }"#}),
    )
    .await;
    let t = s.token_with(&["app"]).await;
    let r = s.read_as(&t, &path).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let user = r.data()["username"].as_str().unwrap().to_string();
    let root_made = issue(&s, &path).await;
    assert_eq!(
        s.request("POST", "auth/token/revoke-self", Some(&t), None)
            .await
            .status,
        204
    );
    wait_until_gone(pg, &user, Duration::from_secs(15)).await;
    assert!(
        role_exists(pg, &root_made.username).await,
        "another token's user stays"
    );
}

#[tokio::test]
async fn credentials_are_refused_for_missing_or_disabled_things() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let path = setup(&s, pg, "cr8", json!({})).await;
    let r = s.read("database/creds/cr8/cr8_db/nosuchrole").await;
    assert_eq!(r.status, 400, "as Vault answers an unknown role");
    assert_eq!(r.error(), "unknown role: nosuchrole");
    assert_eq!(s.read("database/creds/cr8/nosuchdb/app").await.status, 404);
    assert_eq!(s.read("database/creds/nosuch/cr8_db/app").await.status, 404);
    assert_eq!(s.write(&path, json!({})).await.status, 405);
    let c = issue(&s, &path).await;
    // A deleted role blocks renewal; its lease is still revoked with the defaults.
    assert_eq!(s.delete("database/roles/app").await.status, 204);
    let r = s
        .write("sys/leases/renew", json!({"lease_id": c.lease_id}))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("not renewable"), "{}", r.text);
    assert_eq!(
        s.write("sys/leases/revoke", json!({"lease_id": c.lease_id}))
            .await
            .status,
        204
    );
    assert!(!role_exists(pg, &c.username).await);
}

#[tokio::test]
async fn a_creation_postgresql_refuses_leaves_no_lease_and_no_user() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    // The lease is stored before the statements run; the second statement
    // fails, so the transaction (and the user) rolls back and the lease goes.
    let path = setup(
        &s,
        pg,
        "cr20",
        json!({
            "username_template": "v-refused-{{random 10}}",
            "creation_statements": [
                "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}'",
                "SELECT 1/0"
            ]
        }),
    )
    .await;
    let r = s.read(&path).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().contains("division by zero"), "{}", r.text);
    let listed = s
        .list("sys/leases/lookup/database/creds/cr20/cr20_db/app/")
        .await;
    assert_eq!(listed.status, 404, "no lease is left: {}", listed.text);
    let users: i64 = pg
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-refused-%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 0);
}

#[tokio::test]
async fn unmounting_revokes_the_mounts_users() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    assert_eq!(
        s.write("sys/mounts/db9", json!({"type": "database"}))
            .await
            .status,
        204
    );
    let user = format!("root_{}", "cr9");
    let (user, password) = crate::support::engine::root_user(pg, &user).await;
    let r = s
        .write(
            "db9/cluster/cr9",
            crate::support::engine::cluster_body(pg, &user, &password),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        s.write("db9/cluster/cr9/cr9_db", json!({})).await.status,
        200
    );
    assert_eq!(s.write("db9/roles/app", json!({})).await.status, 204);
    let r = s.read("db9/creds/cr9/cr9_db/app").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["lease_id"]
        .as_str()
        .unwrap()
        .starts_with("db9/creds/cr9/cr9_db/app/"));
    let username = r.data()["username"].as_str().unwrap().to_string();
    assert_eq!(s.delete("sys/mounts/db9").await.status, 204);
    assert!(
        !role_exists(pg, &username).await,
        "unmounting revoked the user"
    );
}

#[tokio::test]
async fn mount_tuning_sets_the_default_ttl() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let path = setup(&s, pg, "cr10", json!({})).await;
    assert_eq!(
        issue(&s, &path).await.body["lease_duration"],
        3600,
        "1h without role or mount TTLs"
    );
    assert_eq!(
        s.write(
            "sys/mounts/database/tune",
            json!({"default_lease_ttl": "15m"})
        )
        .await
        .status,
        204
    );
    assert_eq!(issue(&s, &path).await.body["lease_duration"], 900);
}

#[tokio::test]
async fn a_dead_postgresql_delays_revocation_but_never_loses_it() {
    let pg = Pg::start(PgVersion::under_test());
    let s = TestServer::start().await;
    let path = setup(&s, &pg, "down1", json!({"default_ttl": "2s"})).await;
    let c = issue(&s, &path).await;
    pg.kill();
    // Expiry comes and revocation fails; the lease stays, with its failures.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = s
            .write("sys/leases/lookup", json!({"lease_id": c.lease_id}))
            .await;
        assert_eq!(
            r.status, 200,
            "the lease must stay while PostgreSQL is down: {}",
            r.text
        );
        if r.data()["revoke_failures"].as_u64().unwrap_or(0) >= 2 {
            assert!(r.data()["revoke_error"].is_string());
            assert_eq!(r.data()["renewable"], false);
            break;
        }
        assert!(Instant::now() < deadline, "no failed attempt recorded");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    pg.restart();
    wait_until_gone(&pg, &c.username, Duration::from_secs(40)).await;
    wait_lease_gone(&s, &c.lease_id).await;
}

/// The lease is deleted just after PostgreSQL dropped its user (a separate
/// write), so a test that saw the user go gives the lease a moment.
async fn wait_lease_gone(s: &TestServer, lease_id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = s
            .write("sys/leases/lookup", json!({"lease_id": lease_id}))
            .await;
        if r.status == 400 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease is still there after its user went: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn leases_survive_a_restart_of_the_embedded_storage_and_still_expire() {
    use pgsecrets::storage::{sqlite::SqliteBackend, Storage};
    let pg = Pg::shared();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pgsecrets.db");
    let key = [9u8; 32];
    let storage = Storage::initialize(std::sync::Arc::new(SqliteBackend::open(&db).unwrap()), &key)
        .await
        .unwrap();
    let root = pgsecrets::server::initialize(&storage, None).await.unwrap();
    let s = TestServer::start_on(storage, root.clone(), 1 << 20).await;
    let path = setup(&s, pg, "cr11", json!({"default_ttl": "1h"})).await;
    let c = issue(&s, &path).await;
    s.shutdown().await;
    // Nobody revokes while the server is down...
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        role_exists(pg, &c.username).await,
        "revoked while no server ran?"
    );
    // ...and the server restarted two hours later (by its clock) revokes
    // from its persisted index.
    let storage = Storage::unseal(std::sync::Arc::new(SqliteBackend::open(&db).unwrap()), &key)
        .await
        .unwrap();
    let later = pgsecrets::logical::Clock::default();
    later.advance(Duration::from_secs(2 * 3600));
    let s = TestServer::start_on_clock(storage, root, later).await;
    wait_until_gone(pg, &c.username, Duration::from_secs(15)).await;
    wait_lease_gone(&s, &c.lease_id).await;
}

#[tokio::test]
async fn templated_usernames_and_cheap_verifiers_still_log_in() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let role = json!({"username_template": "v-{{cluster}}-{{database}}-{{random 10}}", "password_length": 24, "password_scram_iterations": 1});
    let path = setup(&s, pg, "cr12", role).await;
    let c = issue(&s, &path).await;
    assert!(c.username.starts_with("v-cr12-cr12_db-"), "{}", c.username);
    assert_eq!(c.password.len(), 24);
    let verifier: String = pg
        .admin()
        .await
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&c.username],
        )
        .await
        .unwrap()
        .get(0);
    assert!(verifier.starts_with("SCRAM-SHA-256$1:"), "{verifier}");
    pg.connect(&c.username, &c.password, &c.database)
        .await
        .expect("login works");
}

#[tokio::test]
async fn pools_follow_a_root_rotation() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let path = setup(&s, pg, "cr13", json!({})).await;
    issue(&s, &path).await;
    assert_eq!(
        s.write("database/rotate-root/cr13", json!({})).await.status,
        204
    );
    // The pool built with the old management password is replaced.
    let c = issue(&s, &path).await;
    pg.connect(&c.username, &c.password, &c.database)
        .await
        .expect("issued after rotation");
}

#[tokio::test]
async fn an_expired_token_takes_its_users_with_it() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let path = setup(&s, pg, "cr14", json!({"default_ttl": "1h"})).await;
    s.write(
        "sys/policies/acl/app",
        json!({"policy": r#"path "database/creds/*" { capabilities = ["read"] }"#}),
    )
    .await;
    let r = s
        .write(
            "auth/token/create",
            json!({"policies": ["app"], "ttl": "2s"}),
        )
        .await;
    let token = r.json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.read_as(&token, &path).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let user = r.data()["username"].as_str().unwrap().to_string();
    // The token's 2 s pass on the server's clock: the token sweep wakes,
    // revokes the token, and its lease with it.
    s.advance(Duration::from_secs(3));
    wait_until_gone(pg, &user, Duration::from_secs(15)).await;
}

/// Expiry driven by the server's clock (the one real-time expiry test is
/// `a_short_lived_user_is_dropped_and_its_session_ended_at_expiry`): an
/// hour's lease is untouched a second before its end and revoked once the
/// clock passes it, with no test waiting an hour; a renewal moves the end
/// on the same clock.
#[tokio::test]
async fn leases_expire_and_renew_by_the_servers_clock() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let path = setup(
        &s,
        pg,
        "cr15",
        json!({"default_ttl": "1h", "max_ttl": "3h"}),
    )
    .await;
    let c = issue(&s, &path).await;
    s.advance(Duration::from_secs(3599));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(role_exists(pg, &c.username).await, "still inside its hour");
    // Renewed for another hour from now: it outlives the first hour.
    let r = s
        .write(
            "sys/leases/renew",
            json!({"lease_id": c.lease_id, "increment": "1h"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    s.advance(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        role_exists(pg, &c.username).await,
        "renewed past the first hour"
    );
    // Past its renewed end the lease is revoked: a renewal is refused and
    // the user goes.
    s.advance(Duration::from_secs(2 * 3600));
    let r = s
        .write("sys/leases/renew", json!({"lease_id": c.lease_id}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    wait_until_gone(pg, &c.username, Duration::from_secs(15)).await;
}

#[tokio::test]
async fn tidy_needs_sudo_and_reports_what_it_removed() {
    let s = TestServer::start().await;
    let r = s.write("sys/leases/tidy", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["removed_index_entries"], 0);
    let t = s.token_with(&["default"]).await;
    assert_eq!(
        s.write_as(&t, "sys/leases/tidy", json!({})).await.status,
        403
    );
}

#[tokio::test]
async fn a_cluster_without_a_free_connection_answers_503_and_creates_nothing() {
    let pg = &Pg::start(PgVersion::under_test());
    let s = TestServer::start().await;
    register(&s, pg, "busy1").await;
    assert_eq!(
        s.write(
            "database/cluster/busy1",
            json!({"max_open_connections": 1, "max_idle_connections": 1})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        s.write("database/cluster/busy1/busydb", json!({}))
            .await
            .status,
        200
    );
    assert_eq!(s.write("database/roles/app", json!({})).await.status, 204);
    let path = "database/creds/busy1/busydb/app";
    // Hold CREATE ROLE up: the first request keeps the only connection busy.
    let locker = pg.admin().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE pg_authid IN EXCLUSIVE MODE;")
        .await
        .unwrap();
    let first = s.spawn_read(path);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let users_before = count_issued(pg).await;
    let r = s.read(path).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.error().contains("no free connection"), "{}", r.text);
    locker.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        first.await.unwrap().0,
        200,
        "the first request completes once unblocked"
    );
    assert_eq!(
        count_issued(pg).await,
        users_before + 1,
        "the refused request created nothing"
    );
    assert_eq!(
        s.read("database/reconcile/busy1").await.data()["untracked_users"],
        json!([])
    );
}

async fn count_issued(pg: &Pg) -> i64 {
    pg.admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-app-%'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}
