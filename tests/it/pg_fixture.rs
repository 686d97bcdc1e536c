//! The PostgreSQL fixture every engine test relies on: real servers with
//! scram-sha-256, several at once, on both supported major versions.

use crate::support::pg::{Pg, PgVersion};

async fn check_server(pg: &Pg) {
    let admin = pg.admin().await;
    let row = admin
        .query_one("SHOW password_encryption", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "scram-sha-256");
    let Err(err) = pg
        .connect(pg.superuser(), "definitely-wrong", "postgres")
        .await
    else {
        panic!("a wrong password must be refused");
    };
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{err:?}"
    );
}

#[tokio::test]
async fn two_postgresql_servers_run_side_by_side_with_password_auth() {
    let a = Pg::start(PgVersion::V15);
    let b = Pg::start(PgVersion::V15);
    assert_ne!(a.port(), b.port());
    check_server(&a).await;
    check_server(&b).await;
    a.admin()
        .await
        .execute("CREATE ROLE only_on_a", &[])
        .await
        .unwrap();
    let on_b = b
        .admin()
        .await
        .query("SELECT 1 FROM pg_roles WHERE rolname = 'only_on_a'", &[])
        .await
        .unwrap();
    assert!(on_b.is_empty(), "the servers are separate");
}

#[tokio::test]
async fn postgresql_17_is_available_to_the_suite() {
    let Some(pg) = Pg::shared_17() else {
        eprintln!("PostgreSQL 17 binaries not installed; skipped (CI installs them)");
        return;
    };
    let admin = pg.admin().await;
    let row = admin
        .query_one("SHOW server_version_num", &[])
        .await
        .unwrap();
    let version: i32 = row.get::<_, String>(0).parse().unwrap();
    assert!((170000..180000).contains(&version), "{version}");
    check_server(pg).await;
}
