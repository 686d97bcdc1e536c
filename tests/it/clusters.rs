//! `database/cluster/<name>`: registration, rotation, crash safety, updates,
//! disabling, against real PostgreSQL.

use serde_json::json;

use crate::support::engine::{can_login, cluster_body, register, role_exists, root_user};
use crate::support::pg::{Pg, PgOptions, PgVersion};
use crate::support::server::TestServer;

#[tokio::test]
async fn registering_rotates_the_root_password_and_creates_the_management_role() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let (user, password) = root_user(pg, "root_reg1").await;
    let r = s
        .write("database/cluster/reg1", cluster_body(pg, &user, &password))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let manage = r.data()["management_role"].as_str().unwrap().to_string();
    assert!(manage.starts_with("v-manage-"), "{manage}");
    assert!(r.json()["warnings"][0]
        .as_str()
        .unwrap()
        .contains("no longer works"));

    assert!(
        !can_login(pg, &user, &password, "postgres").await,
        "the old root password must be refused"
    );
    let row = pg
        .admin()
        .await
        .query_one(
            "SELECT rolcreaterole, rolinherit, rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&manage],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "management role has CREATEROLE");
    assert!(!row.get::<_, bool>(1), "management role is NOINHERIT");
    assert!(row.get::<_, bool>(2), "management role can log in");

    // With sudo (root token) the passwords are shown, and they work.
    let d = s.read("database/cluster/reg1").await.data();
    assert_eq!(d["state"], "active");
    assert_eq!(d["management_role"], manage.as_str());
    let root_pw = d["password"].as_str().unwrap();
    assert!(root_pw.len() >= 32);
    assert!(can_login(pg, &user, root_pw, "postgres").await);
    assert!(
        can_login(
            pg,
            &manage,
            d["management_password"].as_str().unwrap(),
            "postgres"
        )
        .await
    );

    let r = s.list("database/cluster").await;
    assert_eq!(r.data()["key_info"]["reg1"]["state"], "active");
}

#[tokio::test]
async fn reading_a_cluster_without_sudo_hides_the_passwords() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    register(&s, pg, "nosudo").await;
    s.write(
        "sys/policies/acl/ops",
        json!({"policy": r#"path "database/cluster/*" { capabilities = ["read", "list"] }"#}),
    )
    .await;
    s.write(
        "sys/policies/acl/admin",
        json!({"policy": r#"path "database/cluster/*" { capabilities = ["read", "sudo"] }"#}),
    )
    .await;
    let ops = s.token_with(&["ops"]).await;
    let d = s.read_as(&ops, "database/cluster/nosudo").await.data();
    assert_eq!(d["state"], "active");
    assert!(
        d.get("password").is_none() && d.get("management_password").is_none(),
        "{d}"
    );
    let admin = s.token_with(&["admin"]).await;
    let d = s.read_as(&admin, "database/cluster/nosudo").await.data();
    assert!(d["password"].is_string() && d["management_password"].is_string());
}

#[tokio::test]
async fn server_logs_never_show_a_generated_password() {
    let pg = Pg::start_with(
        PgVersion::V15,
        PgOptions {
            log_statement_all: true,
            ..PgOptions::default()
        },
    );
    let s = TestServer::start().await;
    register(&s, &pg, "logged").await;
    s.write("database/rotate-root/logged", json!({})).await;
    let d = s.read("database/cluster/logged").await.data();
    let log = pg.log_contents();
    assert!(
        log.contains("SCRAM-SHA-256$"),
        "statements were logged with verifiers"
    );
    for secret in [
        d["password"].as_str().unwrap(),
        d["management_password"].as_str().unwrap(),
    ] {
        assert!(
            !log.contains(secret),
            "a generated password reached the server log"
        );
    }
}

#[tokio::test]
async fn rotate_root_changes_both_passwords() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let user = register(&s, pg, "rot1").await;
    let before = s.read("database/cluster/rot1").await.data();
    let r = s.write("database/rotate-root/rot1", json!({})).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let after = s.read("database/cluster/rot1").await.data();
    assert_ne!(before["password"], after["password"]);
    assert_ne!(before["management_password"], after["management_password"]);
    assert!(!can_login(pg, &user, before["password"].as_str().unwrap(), "postgres").await);
    assert!(can_login(pg, &user, after["password"].as_str().unwrap(), "postgres").await);
    let manage = after["management_role"].as_str().unwrap();
    assert!(
        can_login(
            pg,
            manage,
            after["management_password"].as_str().unwrap(),
            "postgres"
        )
        .await
    );
    assert_eq!(
        s.write("database/rotate-root/nosuch", json!({}))
            .await
            .status,
        404
    );
}

/// Runs a registration that stops at `point`, then a new server on the same
/// storage, and returns (server, root user, original password).
async fn crash_during_registration(
    pg: &Pg,
    cluster: &str,
    point: &str,
) -> (TestServer, String, String) {
    let s = TestServer::start().await;
    let (user, password) = root_user(pg, &format!("root_{cluster}")).await;
    pgsecrets::engine::fault::arm(point, cluster);
    let r = s
        .write(
            &format!("database/cluster/{cluster}"),
            cluster_body(pg, &user, &password),
        )
        .await;
    assert_eq!(r.status, 500, "the fault should stop the write: {}", r.text);
    let storage = s.storage.clone();
    let root = s.root_token.clone();
    s.shutdown().await;
    (
        TestServer::start_on(storage, root, 1 << 20).await,
        user,
        password,
    )
}

/// Every management role on the server (the crash tests use a server of
/// their own, so none comes from another test).
async fn manage_roles(pg: &Pg) -> Vec<String> {
    let rows = pg
        .admin()
        .await
        .query(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'v-manage-%'",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn a_crash_before_the_transaction_leaves_the_old_password_working() {
    let pg = &Pg::start(PgVersion::under_test());
    for point in ["rotation.after_intent", "rotation.in_transaction"] {
        let cluster = format!(
            "crash-{}",
            point.rsplit('.').next().unwrap().replace('_', "-")
        );
        assert!(manage_roles(pg).await.is_empty());
        let (s, user, password) = crash_during_registration(pg, &cluster, point).await;
        assert!(
            can_login(pg, &user, &password, "postgres").await,
            "{point}: the original password must still work"
        );
        // The unfinished registration is forgotten and no management role was left behind.
        assert_eq!(
            s.read(&format!("database/cluster/{cluster}")).await.status,
            404,
            "{point}"
        );
        assert!(
            manage_roles(pg).await.is_empty(),
            "{point}: orphaned management role"
        );
        // Registering again works, and then exactly one management role exists.
        let r = s
            .write(
                &format!("database/cluster/{cluster}"),
                cluster_body(pg, &user, &password),
            )
            .await;
        assert_eq!(r.status, 200, "{point}: {}", r.text);
        assert_eq!(
            manage_roles(pg).await,
            vec![r.data()["management_role"].as_str().unwrap().to_string()]
        );
        assert_eq!(
            s.delete(&format!("database/cluster/{cluster}"))
                .await
                .status,
            204
        );
        assert_eq!(
            s.delete(&format!("database/gc/cluster/{cluster}"))
                .await
                .status,
            204
        );
        let manage = r.data()["management_role"].as_str().unwrap().to_string();
        pg.admin()
            .await
            .batch_execute(&format!("DROP ROLE \"{manage}\""))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_crash_after_commit_is_completed_on_restart() {
    let pg = Pg::shared();
    let (s, user, password) =
        crash_during_registration(pg, "crash-after-commit", "rotation.after_commit").await;
    assert!(
        !can_login(pg, &user, &password, "postgres").await,
        "the commit happened"
    );
    let d = s.read("database/cluster/crash-after-commit").await.data();
    assert_eq!(d["state"], "active");
    assert!(
        can_login(pg, &user, d["password"].as_str().unwrap(), "postgres").await,
        "the stored password works"
    );
    let manage = d["management_role"].as_str().unwrap();
    assert!(role_exists(pg, manage).await);
    assert!(
        can_login(
            pg,
            manage,
            d["management_password"].as_str().unwrap(),
            "postgres"
        )
        .await
    );
    // And the cluster is usable: it rotates.
    assert_eq!(
        s.write("database/rotate-root/crash-after-commit", json!({}))
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn a_crash_during_rotate_root_never_loses_the_root_password() {
    let pg = Pg::shared();
    for point in [
        "rotation.after_intent",
        "rotation.in_transaction",
        "rotation.after_commit",
    ] {
        let cluster = format!(
            "rotcrash-{}",
            point.rsplit('.').next().unwrap().replace('_', "-")
        );
        let s = TestServer::start().await;
        let user = register(&s, pg, &cluster).await;
        pgsecrets::engine::fault::arm(point, &cluster);
        let r = s
            .write(&format!("database/rotate-root/{cluster}"), json!({}))
            .await;
        assert_eq!(r.status, 500, "{point}: {}", r.text);
        let storage = s.storage.clone();
        let root = s.root_token.clone();
        s.shutdown().await;
        let s = TestServer::start_on(storage, root, 1 << 20).await;
        let d = s.read(&format!("database/cluster/{cluster}")).await.data();
        assert!(
            can_login(pg, &user, d["password"].as_str().unwrap(), "postgres").await,
            "{point}: stored root password works"
        );
        let manage = d["management_role"].as_str().unwrap();
        assert!(
            can_login(
                pg,
                manage,
                d["management_password"].as_str().unwrap(),
                "postgres"
            )
            .await,
            "{point}: management password works"
        );
    }
}

#[tokio::test]
async fn writing_an_active_cluster_updates_settings_without_rotating() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    register(&s, pg, "upd1").await;
    let before = s.read("database/cluster/upd1").await.data();
    let r = s
        .write("database/cluster/upd1", json!({"max_open_connections": 8, "max_idle_connections": 1, "ssl_mode": "disable", "password": "ignored"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["warnings"][0]
        .as_str()
        .unwrap()
        .contains("password was ignored"));
    let after = s.read("database/cluster/upd1").await.data();
    assert_eq!(after["max_open_connections"], 8);
    assert_eq!(
        before["password"], after["password"],
        "no rotation on update"
    );
    let r = s
        .write(
            "database/cluster/upd1",
            json!({"host": "10.255.255.1", "port": 5432}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("already registered"), "{}", r.text);
}

#[tokio::test]
async fn disabling_keeps_the_configuration_and_refuses_new_work_until_reenabled() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    register(&s, pg, "dis1").await;
    assert_eq!(
        s.write("database/cluster/dis1/appdb", json!({}))
            .await
            .status,
        200
    );
    assert_eq!(s.delete("database/cluster/dis1").await.status, 204);
    let d = s.read("database/cluster/dis1").await.data();
    assert_eq!(d["state"], "disabled");
    assert_eq!(
        s.list("database/cluster").await.data()["key_info"]["dis1"]["state"],
        "disabled"
    );
    assert_eq!(
        s.read("database/cluster/dis1/appdb").await.data()["state"],
        "disabled"
    );
    let r = s.write("database/cluster/dis1/otherdb", json!({})).await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("disabled"), "{}", r.text);
    assert_eq!(
        s.write("database/rotate-root/dis1", json!({})).await.status,
        400
    );
    // Stored credentials still work, so writing re-activates it.
    let r = s
        .write("database/cluster/dis1", json!({"ssl_mode": "disable"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        s.read("database/cluster/dis1").await.data()["state"],
        "active"
    );
    assert_eq!(s.delete("database/cluster/nosuch").await.status, 404);
}

#[tokio::test]
async fn bad_registrations_are_refused_and_change_nothing() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = s
        .write("database/cluster/bad1", json!({"host": "127.0.0.1", "port": closed, "username": "u", "password": "secret-pw-123", "ssl_mode": "disable"}))
        .await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(r.error().contains("127.0.0.1"), "{}", r.text);
    assert!(!r.text.contains("secret-pw-123"));

    let (user, password) = root_user(pg, "root_bad2").await;
    let mut body = cluster_body(pg, &user, "wrong-password");
    let r = s.write("database/cluster/bad2", body.clone()).await;
    assert_eq!(r.status, 400);
    assert!(
        r.error().contains("refused the login")
            && r.error().contains("password authentication failed"),
        "{}",
        r.text
    );
    assert!(can_login(pg, &user, &password, "postgres").await);

    pg.admin()
        .await
        .batch_execute("CREATE ROLE weak_root LOGIN PASSWORD 'weakpw'")
        .await
        .unwrap();
    body = cluster_body(pg, "weak_root", "weakpw");
    let r = s.write("database/cluster/bad3", body).await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("cannot create roles"), "{}", r.text);
    assert!(
        can_login(pg, "weak_root", "weakpw", "postgres").await,
        "nothing rotated"
    );

    let r = s
        .write(
            "database/cluster/bad4",
            json!({"host": pg.host(), "port": pg.port(), "username": user}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("password"), "{}", r.text);
    let r = s
        .write(
            "database/cluster/bad5",
            json!({"host": "a b", "username": "u", "password": "p"}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = s
        .write(
            "database/cluster/bad6",
            json!({"host": "h", "port": 70000, "username": "u", "password": "p"}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = s
        .write(
            "database/cluster/bad7",
            json!({"host": "h", "ssl_mode": "sometimes", "username": "u", "password": "p"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("ssl_mode"), "{}", r.text);
    let long = "c".repeat(64);
    let r = s
        .write(
            &format!("database/cluster/{long}"),
            cluster_body(pg, &user, &password),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    for hostile in ["a%22b", "a%3Bb", "%C3%A9t%C3%A9"] {
        let r = s
            .write(
                &format!("database/cluster/{hostile}"),
                cluster_body(pg, &user, &password),
            )
            .await;
        assert_eq!(r.status, 404, "{hostile}: {}", r.text);
    }
    assert_eq!(
        s.list("database/cluster").await.status,
        404,
        "nothing was stored"
    );
    assert!(can_login(pg, &user, &password, "postgres").await);
}

#[tokio::test]
async fn registration_and_databases_work_on_postgresql_17() {
    let Some(pg) = Pg::shared_17() else {
        eprintln!("PostgreSQL 17 binaries not installed; skipped (CI installs them)");
        return;
    };
    let s = TestServer::start().await;
    let user = register(&s, pg, "pg17").await;
    let d = s.read("database/cluster/pg17").await.data();
    assert!(can_login(pg, &user, d["password"].as_str().unwrap(), "postgres").await);
    crate::support::engine::check_database_is_usable(&s, pg, "pg17", "app17").await;
}

#[tokio::test]
async fn a_disabled_cluster_whose_password_was_changed_by_hand_stays_disabled() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let user = register(&s, pg, "dis2").await;
    assert_eq!(s.delete("database/cluster/dis2").await.status, 204);
    pg.admin()
        .await
        .batch_execute(&format!("ALTER ROLE \"{user}\" PASSWORD 'changed-by-hand'"))
        .await
        .unwrap();
    let r = s
        .write("database/cluster/dis2", json!({"ssl_mode": "disable"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().contains("no longer work"), "{}", r.text);
    assert_eq!(
        s.read("database/cluster/dis2").await.data()["state"],
        "disabled"
    );
}

#[tokio::test]
async fn no_connection_is_left_open_after_disabling() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let user = register(&s, pg, "leak1").await;
    let r = s.write("database/cluster/leak1/leakdb", json!({})).await;
    assert_eq!(r.status, 200);
    assert_eq!(s.write("database/roles/leaky", json!({})).await.status, 204);
    // Issuing uses the management pool; rotation replaces it.
    assert_eq!(
        s.read("database/creds/leak1/leakdb/leaky").await.status,
        200
    );
    let r = s.write("database/rotate-root/leak1", json!({})).await;
    assert_eq!(r.status, 204);
    let issued = s.read("database/creds/leak1/leakdb/leaky").await.data()["username"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.delete("database/cluster/leak1").await;
    assert_eq!(r.status, 200, "{}", r.text);
    crate::support::engine::wait_until_gone(pg, &issued, std::time::Duration::from_secs(15)).await;
    let manage = s.read("database/cluster/leak1").await.data()["management_role"]
        .as_str()
        .unwrap()
        .to_string();
    // Connections close asynchronously; give them a moment, then none may remain.
    let mut open = -1i64;
    for _ in 0..50 {
        open = pg
            .admin()
            .await
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 OR usename = $2",
                &[&user, &manage],
            )
            .await
            .unwrap()
            .get(0);
        if open == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(open, 0, "connections of the disabled cluster remain open");
}

#[tokio::test]
async fn an_update_changes_only_the_fields_it_gives() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    register(&s, pg, "upd2").await;
    let r = s
        .write("database/cluster/upd2", json!({"max_open_connections": 7}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = s.read("database/cluster/upd2").await.data();
    assert_eq!(d["max_open_connections"], 7);
    assert_eq!(
        d["ssl_mode"], "disable",
        "unspecified settings keep their values"
    );
    let r = s
        .write("database/cluster/upd2", json!({"max_idle_connections": 9}))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("max_idle_connections"), "{}", r.text);
}
