//! The objects-owner role and the databases it is set up in. Every issued
//! user is a member of its database's objects owner and acts as it, and
//! the management role holds it WITH ADMIN OPTION, so an owner carrying
//! privilege hands that privilege to every credential (found:
//! `objects_owner_role=pg_execute_server_program` let an issued user run
//! `COPY … FROM PROGRAM`; a CREATEROLE owner let one create a lasting login
//! role; `postgres` as owner made the management role a member of the
//! superuser). A token holding only `create`/`update` on
//! `database/cluster/+/*` gets only an owner pgsecrets creates; with sudo an
//! existing role may be adopted, never a privileged one, and the rule is
//! checked again on every issue. `template0`/`template1` are never set up
//! (found: adopting template1 spread the owner's ACL into every later
//! database and its pooled connection made every CREATE DATABASE fail);
//! adopting `postgres` needs sudo.

use super::token_for;
use serde_json::json;

use crate::support::engine::{register, role_exists};
use crate::support::pg::{Pg, PgVersion};
use crate::support::server::TestServer;

/// Only what writing a database needs: no sudo, no creds.
const WRITER: &str = r#"path "database/cluster/+/*" { capabilities = ["create", "update"] }"#;
/// The same with sudo: adopting existing roles and `postgres`.
const SUDO_WRITER: &str =
    r#"path "database/cluster/+/*" { capabilities = ["create", "update", "sudo"] }"#;

struct Attack {
    s: TestServer,
    cluster: String,
    root: String,
    management: String,
    /// `create`/`update` on `database/cluster/+/*`.
    writer: String,
    /// The same plus `sudo`.
    sudo: String,
}

async fn attack(pg: &Pg, cluster: &str) -> Attack {
    let s = TestServer::start().await;
    let root = register(&s, pg, cluster).await;
    let r = s.read(&format!("database/cluster/{cluster}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let management = r.data()["management_role"].as_str().unwrap().to_string();
    let r = s
        .write("database/roles/app", json!({"default_ttl": "1h"}))
        .await;
    assert!(r.status == 204 || r.status == 200, "{}", r.text);
    let writer = token_for(&s, "db-writer", WRITER).await;
    let sudo = token_for(&s, "db-sudo-writer", SUDO_WRITER).await;
    Attack {
        s,
        cluster: cluster.to_string(),
        root,
        management,
        writer,
        sudo,
    }
}

impl Attack {
    async fn write_db(&self, token: &str, db: &str, body: serde_json::Value) -> (u16, String) {
        let r = self
            .s
            .write_as(
                token,
                &format!("database/cluster/{}/{db}", self.cluster),
                body,
            )
            .await;
        (r.status.as_u16(), r.text)
    }

    async fn issue(&self, db: &str) -> (u16, String) {
        let r = self
            .s
            .read(&format!("database/creds/{}/{db}/app", self.cluster))
            .await;
        (r.status.as_u16(), r.text)
    }

    /// Nothing stored for `db`, nor a database created for it.
    async fn nothing_left(&self, pg: &Pg, db: &str) {
        let r = self
            .s
            .read(&format!("database/cluster/{}/{db}", self.cluster))
            .await;
        assert_eq!(r.status, 404, "nothing stored for {db}: {}", r.text);
        assert!(!database_exists(pg, db).await, "database {db} not created");
    }
}

async fn admin(pg: &Pg, sql: &str) {
    pg.admin().await.batch_execute(sql).await.unwrap();
}

/// Whether `member` is a direct member of `role` (pg_auth_members).
async fn is_member(pg: &Pg, member: &str, role: &str) -> bool {
    pg.admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_auth_members m
               JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
              WHERE r.rolname = $1 AND u.rolname = $2",
            &[&role, &member],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
        > 0
}

async fn member_count(pg: &Pg, role: &str) -> i64 {
    pg.admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
              WHERE r.rolname = $1",
            &[&role],
        )
        .await
        .unwrap()
        .get(0)
}

async fn database_exists(pg: &Pg, db: &str) -> bool {
    !pg.admin()
        .await
        .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
        .await
        .unwrap()
        .is_empty()
}

async fn datacl(pg: &Pg, db: &str) -> Option<String> {
    pg.admin()
        .await
        .query_one(
            "SELECT datacl::text FROM pg_database WHERE datname = $1",
            &[&db],
        )
        .await
        .unwrap()
        .get(0)
}

fn assert_refused(status: u16, text: &str, expected: u16, needle: &str) {
    assert_eq!(status, expected, "{text}");
    assert!(text.contains(needle), "names the rule ({needle}): {text}");
}

#[tokio::test]
async fn a_predefined_role_as_owner_is_refused_with_or_without_sudo() {
    let pg = Pg::shared();
    let a = attack(pg, "adv-own-pesp").await;
    for token in [&a.writer, &a.sudo] {
        let (status, text) = a
            .write_db(
                token,
                "adv_own_pesp_db",
                json!({"objects_owner_role": "pg_execute_server_program"}),
            )
            .await;
        assert_refused(status, &text, 400, "predefined");
    }
    assert!(!is_member(pg, &a.management, "pg_execute_server_program").await);
    a.nothing_left(pg, "adv_own_pesp_db").await;
}

#[tokio::test]
async fn a_createrole_role_as_owner_needs_sudo_and_is_refused_with_it() {
    let pg = Pg::shared();
    let a = attack(pg, "adv-own-cr").await;
    admin(pg, "CREATE ROLE adv_own_cr NOLOGIN CREATEROLE").await;
    let body = json!({"objects_owner_role": "adv_own_cr"});
    let (status, text) = a.write_db(&a.writer, "adv_own_cr_db", body.clone()).await;
    assert_refused(status, &text, 403, "needs sudo");
    let (status, text) = a.write_db(&a.sudo, "adv_own_cr_db", body).await;
    assert_refused(status, &text, 400, "CREATEROLE");
    assert!(!is_member(pg, &a.management, "adv_own_cr").await);
    a.nothing_left(pg, "adv_own_cr_db").await;
}

#[tokio::test]
async fn the_superuser_as_owner_is_refused() {
    let pg = Pg::shared();
    let a = attack(pg, "adv-own-su").await;
    let body = json!({"objects_owner_role": pg.superuser()});
    let (status, text) = a.write_db(&a.writer, "adv_own_su_db", body.clone()).await;
    assert_refused(status, &text, 403, "needs sudo");
    let (status, text) = a.write_db(&a.sudo, "adv_own_su_db", body).await;
    assert_refused(status, &text, 400, "SUPERUSER");
    assert!(!is_member(pg, &a.management, pg.superuser()).await);
    a.nothing_left(pg, "adv_own_su_db").await;
}

#[tokio::test]
async fn a_role_two_grants_below_a_privileged_one_is_refused() {
    let pg = Pg::shared();
    let a = attack(pg, "adv-own-chain").await;
    admin(
        pg,
        "CREATE ROLE adv_own_chain_top NOLOGIN CREATEDB;
         CREATE ROLE adv_own_chain_mid NOLOGIN IN ROLE adv_own_chain_top;
         CREATE ROLE adv_own_chain NOLOGIN IN ROLE adv_own_chain_mid;
         CREATE ROLE adv_own_chain_srv NOLOGIN IN ROLE pg_read_server_files;
         CREATE ROLE adv_own_chain2 NOLOGIN IN ROLE adv_own_chain_srv;",
    )
    .await;
    let (status, text) = a
        .write_db(
            &a.sudo,
            "adv_own_chain_db",
            json!({"objects_owner_role": "adv_own_chain"}),
        )
        .await;
    assert_refused(status, &text, 400, "adv_own_chain_top");
    assert!(text.contains("CREATEDB"), "{text}");
    let (status, text) = a
        .write_db(
            &a.sudo,
            "adv_own_chain_db",
            json!({"objects_owner_role": "adv_own_chain2"}),
        )
        .await;
    assert_refused(status, &text, 400, "pg_read_server_files");
    for role in ["adv_own_chain", "adv_own_chain2"] {
        assert!(!is_member(pg, &a.management, role).await);
    }
    a.nothing_left(pg, "adv_own_chain_db").await;
}

#[tokio::test]
async fn the_management_and_root_roles_and_issued_users_are_refused_as_owner() {
    let pg = Pg::shared();
    let a = attack(pg, "adv-own-self").await;
    let r =
        a.s.write("database/cluster/adv-own-self/adv_own_self_db", json!({}))
            .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (status, text) = a.issue("adv_own_self_db").await;
    assert_eq!(status, 200, "{text}");
    let issued: serde_json::Value = serde_json::from_str(&text).unwrap();
    let issued = issued["data"]["username"].as_str().unwrap().to_string();

    for (role, rule) in [
        (a.management.as_str(), "management role"),
        (a.root.as_str(), "root role"),
        (issued.as_str(), "issued user"),
    ] {
        let body = json!({"objects_owner_role": role});
        let (status, text) = a
            .write_db(&a.writer, "adv_own_self_db2", body.clone())
            .await;
        assert_refused(status, &text, 403, "needs sudo");
        let (status, text) = a.write_db(&a.sudo, "adv_own_self_db2", body).await;
        assert_refused(status, &text, 400, rule);
    }
    assert!(!is_member(pg, &a.management, &a.root).await);
    assert!(!is_member(pg, &a.management, &issued).await);
    a.nothing_left(pg, "adv_own_self_db2").await;
}

#[tokio::test]
async fn adopting_a_plain_role_needs_sudo_and_then_gives_no_privilege() {
    let pg = Pg::shared();
    let a = attack(pg, "adv-own-plain").await;
    admin(pg, "CREATE ROLE adv_own_plain NOLOGIN").await;
    let body = json!({"objects_owner_role": "adv_own_plain"});
    let (status, text) = a
        .write_db(&a.writer, "adv_own_plain_db", body.clone())
        .await;
    assert_refused(status, &text, 403, "adopting an existing role");
    assert!(!is_member(pg, &a.management, "adv_own_plain").await);
    a.nothing_left(pg, "adv_own_plain_db").await;

    let (status, text) = a.write_db(&a.sudo, "adv_own_plain_db", body).await;
    assert_eq!(status, 200, "{text}");
    assert!(is_member(pg, &a.management, "adv_own_plain").await);
    let (status, text) = a.issue("adv_own_plain_db").await;
    assert_eq!(status, 200, "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    let (user, password) = (
        body["data"]["username"].as_str().unwrap(),
        body["data"]["password"].as_str().unwrap(),
    );
    assert!(is_member(pg, user, "adv_own_plain").await);
    // The issued user, acting as the owner, can neither run programs as
    // the server's OS user nor create roles.
    let client = pg
        .connect(user, password, "adv_own_plain_db")
        .await
        .unwrap();
    client
        .batch_execute("CREATE TABLE adv_own_out (line text)")
        .await
        .unwrap();
    let e = client
        .batch_execute("COPY adv_own_out FROM PROGRAM 'id'")
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e:?}");
    let e = client
        .batch_execute("CREATE ROLE adv_own_plain_evil LOGIN PASSWORD 'x'")
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e:?}");
    assert!(!role_exists(pg, "adv_own_plain_evil").await);
}

#[tokio::test]
async fn an_owner_made_privileged_after_the_write_refuses_every_later_issue() {
    let pg = Pg::shared();
    let a = attack(pg, "adv-own-later").await;
    // Without sudo a name that does not exist yet: pgsecrets creates it.
    let (status, text) = a
        .write_db(
            &a.writer,
            "adv_own_later_db",
            json!({"objects_owner_role": "adv_own_later"}),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    assert!(role_exists(pg, "adv_own_later").await);
    let (status, text) = a.issue("adv_own_later_db").await;
    assert_eq!(status, 200, "{text}");

    // Someone makes the owner a member of a predefined role, directly and
    // (on a second database) through another role.
    admin(pg, "GRANT pg_execute_server_program TO adv_own_later").await;
    let members = member_count(pg, "adv_own_later").await;
    let (status, text) = a.issue("adv_own_later_db").await;
    assert_refused(status, &text, 400, "pg_execute_server_program");
    assert_eq!(
        member_count(pg, "adv_own_later").await,
        members,
        "no user created"
    );
    let r =
        a.s.list("sys/leases/lookup/database/creds/adv-own-later/adv_own_later_db/app/")
            .await;
    assert_eq!(r.data()["keys"].as_array().unwrap().len(), 1, "{}", r.text);
    // Disabled and written again, it is checked again and stays disabled.
    let r =
        a.s.delete("database/cluster/adv-own-later/adv_own_later_db")
            .await;
    assert!(r.status == 204 || r.status == 200, "{}", r.text);
    let (status, text) = a.write_db(&a.writer, "adv_own_later_db", json!({})).await;
    assert_refused(status, &text, 400, "pg_execute_server_program");
    let r =
        a.s.read("database/cluster/adv-own-later/adv_own_later_db")
            .await;
    assert_eq!(r.data()["state"], "disabled", "{}", r.text);

    let (status, text) = a
        .write_db(
            &a.writer,
            "adv_own_later_db2",
            json!({"objects_owner_role": "adv_own_later2"}),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    admin(
        pg,
        "CREATE ROLE adv_own_later_mid NOLOGIN CREATEROLE; GRANT adv_own_later_mid TO adv_own_later2",
    )
    .await;
    let members = member_count(pg, "adv_own_later2").await;
    let (status, text) = a.issue("adv_own_later_db2").await;
    assert_refused(status, &text, 400, "adv_own_later_mid");
    assert_eq!(member_count(pg, "adv_own_later2").await, members);
}

#[tokio::test]
async fn template_databases_are_never_set_up_and_postgres_needs_sudo() {
    // A private server: a pooled connection to template1 would make every
    // CREATE DATABASE of the shared one fail.
    let pg = Pg::start(PgVersion::under_test());
    let a = attack(&pg, "adv-own-sys").await;
    let template_acl = datacl(&pg, "template1").await;
    for db in ["template0", "template1"] {
        for (token, body) in [
            (&a.writer, json!({})),
            (&a.writer, json!({"create_db": false})),
            (&a.sudo, json!({"create_db": false})),
        ] {
            let (status, text) = a.write_db(token, db, body).await;
            assert_refused(status, &text, 400, "template databases");
        }
        let r =
            a.s.read(&format!("database/cluster/adv-own-sys/{db}"))
                .await;
        assert_eq!(r.status, 404, "{}", r.text);
    }
    assert_eq!(datacl(&pg, "template1").await, template_acl);
    let owners = pg
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-owner-template%'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(owners, 0);
    // CREATE DATABASE still works.
    let r =
        a.s.write("database/cluster/adv-own-sys/adv_own_after", json!({}))
            .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // `postgres`, where pgsecrets' own connections run: adopting it is a
    // sudo decision.
    let postgres_acl = datacl(&pg, "postgres").await;
    let (status, text) = a
        .write_db(&a.writer, "postgres", json!({"create_db": false}))
        .await;
    assert_refused(status, &text, 403, "maintenance database");
    assert_eq!(datacl(&pg, "postgres").await, postgres_acl);
    let r = a.s.read("database/cluster/adv-own-sys/postgres").await;
    assert_eq!(r.status, 404, "{}", r.text);
    let (status, text) = a
        .write_db(&a.sudo, "postgres", json!({"create_db": false}))
        .await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = a.issue("postgres").await;
    assert_eq!(status, 200, "{text}");
}
