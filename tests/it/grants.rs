//! Roles whose creation statements grant on tables, as in Vault's docs: the
//! grants run as the database's objects-owner role, so they work on the
//! tables it owns, and a table it may not grant on is named in the refusal.
//! On PostgreSQL 15, and on 17 with `PGSECRETS_TEST_PG=17`.

use serde_json::json;

use crate::support::engine::role_exists;
use crate::support::engine::setup;
use crate::support::pg::Pg;
use crate::support::server::TestServer;

/// The role from Vault's PostgreSQL docs, unchanged.
const VAULT_DOCS_ROLE: &str = r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";"#;

/// A managed database of a fresh cluster with the Vault docs role under
/// `template`: the creds path, the database and its objects-owner role.
async fn managed(
    s: &TestServer,
    pg: &Pg,
    cluster: &str,
    template: &str,
) -> (String, String, String) {
    let path = setup(
        s,
        pg,
        cluster,
        json!({"creation_statements": [VAULT_DOCS_ROLE], "username_template": template}),
    )
    .await;
    let db = format!("{cluster}_db");
    let r = s.read(&format!("database/cluster/{cluster}/{db}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let owner = r.data()["objects_owner_role"].as_str().unwrap().to_string();
    (path, db, owner)
}

/// Runs `sql` as the superuser inside `db` (where the tables go).
async fn in_db(pg: &Pg, db: &str, sql: &str) {
    pg.connect(pg.superuser(), pg.password(), db)
        .await
        .unwrap()
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn users_like(pg: &Pg, prefix: &str) -> i64 {
    pg.admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1)",
            &[&prefix],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn vaults_docs_role_reads_the_owners_tables_and_nothing_else() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let (path, db, owner) = managed(&s, pg, "gr1", "v-gr1-{{random 10}}").await;
    // The owner's tables, as an issued user of the default role (or a
    // migration run as the owner) makes them; one more, in another schema,
    // belongs to a role pgsecrets knows nothing of.
    in_db(
        pg,
        &db,
        &format!(
            r#"SET ROLE "{owner}";
               CREATE TABLE orders (id int); INSERT INTO orders VALUES (7);
               CREATE VIEW order_ids AS SELECT id FROM orders;
               RESET ROLE;
               CREATE ROLE gr1_other NOLOGIN;
               CREATE SCHEMA private AUTHORIZATION gr1_other;
               GRANT USAGE ON SCHEMA private TO PUBLIC;
               SET ROLE gr1_other;
               CREATE TABLE private.secrets (x int);"#
        ),
    )
    .await;

    let r = s.read(&path).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    let d = &body["data"];
    let (user, password) = (
        d["username"].as_str().unwrap(),
        d["password"].as_str().unwrap(),
    );
    let client = pg.connect(user, password, &db).await.expect("login works");
    let row = client
        .query_one("SELECT id FROM orders", &[])
        .await
        .expect("the granted table is readable");
    assert_eq!(row.get::<_, i32>(0), 7);
    client
        .query_one("SELECT id FROM order_ids", &[])
        .await
        .expect("views are tables to ALL TABLES");
    let e = client
        .query("SELECT * FROM private.secrets", &[])
        .await
        .expect_err("another role's table is not readable");
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("permission denied"),
        "{e}"
    );
    assert!(
        client
            .batch_execute("INSERT INTO orders VALUES (8)")
            .await
            .is_err(),
        "only SELECT was granted"
    );

    // The grant was made by the owner; revocation still drops the user.
    let r = s
        .write(
            "sys/leases/revoke",
            json!({"lease_id": body["lease_id"].as_str().unwrap()}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(!role_exists(pg, user).await, "revoked user dropped");
}

#[tokio::test]
async fn revocation_statements_revoke_what_the_owner_granted() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let (path, db, owner) = managed(&s, pg, "gr4", "v-gr4-{{random 10}}").await;
    let r = s
        .write(
            "database/roles/app",
            json!({"revocation_statements": [
                r#"REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM "{{name}}"; DROP ROLE IF EXISTS "{{name}}";"#
            ]}),
        )
        .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    in_db(
        pg,
        &db,
        &format!(r#"SET ROLE "{owner}"; CREATE TABLE orders (id int);"#),
    )
    .await;
    let r = s.read(&path).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    let user = body["data"]["username"].as_str().unwrap();
    let r = s
        .write(
            "sys/leases/revoke",
            json!({"lease_id": body["lease_id"].as_str().unwrap()}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(!role_exists(pg, user).await, "revoked user dropped");
}

#[tokio::test]
async fn a_table_the_owner_cannot_grant_on_is_named_and_no_user_is_left() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let (path, db, owner) = managed(&s, pg, "gr2", "v-gr2-{{random 10}}").await;
    in_db(
        pg,
        &db,
        &format!(
            r#"SET ROLE "{owner}"; CREATE TABLE mine (id int); RESET ROLE;
               CREATE ROLE "gr2 Other" NOLOGIN;
               GRANT CREATE ON SCHEMA public TO "gr2 Other";
               SET ROLE "gr2 Other";
               CREATE TABLE "Theirs" (id int);
               CREATE TABLE theirs_too (id int);"#
        ),
    )
    .await;

    let r = s.read(&path).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let error = r.error();
    assert!(
        error.contains(r#"public."Theirs" (owned by "gr2 Other")"#)
            && error.contains(r#"public.theirs_too (owned by "gr2 Other")"#),
        "the tables and their owner are named: {error}"
    );
    assert!(
        !error.contains("public.mine"),
        "the owner's own table is not: {error}"
    );
    assert!(error.contains(&format!(r#"OWNER TO "{owner}""#)), "{error}");
    assert_eq!(users_like(pg, "v-gr2-").await, 0, "no user is left behind");
    let listed = s
        .list(&format!("sys/leases/lookup/database/creds/gr2/{db}/app/"))
        .await;
    assert_eq!(listed.status, 404, "no lease is left: {}", listed.text);

    // Once the table is handed to the owner, the same role works.
    in_db(
        pg,
        &db,
        &format!(
            r#"ALTER TABLE "Theirs" OWNER TO "{owner}"; ALTER TABLE theirs_too OWNER TO "{owner}";"#
        ),
    )
    .await;
    let r = s.read(&path).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn granting_on_all_tables_warns_at_the_role_write() {
    let s = TestServer::start().await;
    let r = s
        .write(
            "database/roles/docs",
            json!({"creation_statements": [VAULT_DOCS_ROLE]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let warnings: Vec<String> = r.json()["warnings"]
        .as_array()
        .expect("a warnings array")
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("ALL TABLES IN SCHEMA \"public\"")
                && w.contains("objects owner role")),
        "{warnings:?}"
    );

    // Grants to the owner role on named tables, or role memberships, do not.
    let r = s
        .write(
            "database/roles/plain",
            json!({"creation_statements": [
                "CREATE ROLE \"{{name}}\" LOGIN PASSWORD '{{password}}' IN ROLE \"{{objects_owner}}\"; -- GRANT SELECT ON ALL TABLES IN SCHEMA public TO x"
            ]}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
}

#[tokio::test]
async fn a_refusal_names_ten_tables_and_counts_the_rest() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let (path, db, _) = managed(&s, pg, "gr5", "v-gr5-{{random 10}}").await;
    in_db(
        pg,
        &db,
        "CREATE ROLE gr5_other NOLOGIN;
         DO $$ BEGIN FOR i IN 1..12 LOOP
           EXECUTE format('CREATE TABLE t%s (id int); ALTER TABLE t%1$s OWNER TO gr5_other', lpad(i::text, 2, '0'));
         END LOOP; END $$",
    )
    .await;
    let r = s.read(&path).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let error = r.error();
    assert!(
        error.contains(r#"public.t01 (owned by "gr5_other"), public.t02"#)
            && error.contains(r#"public.t10 (owned by "gr5_other") and 2 more;"#),
        "{error}"
    );
    assert!(!error.contains("public.t11"), "{error}");
}
