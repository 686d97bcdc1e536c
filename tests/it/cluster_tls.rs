//! TLS to managed clusters: libpq's `sslmode` meanings against a real
//! PostgreSQL with `ssl = on`.

use std::process::Command;

use serde_json::json;

use crate::engine::root_user;
use crate::support::certs;
use crate::support::pg::{Pg, PgOptions, PgVersion};
use crate::support::server::TestServer;

/// A PostgreSQL serving TLS with a certificate for `san`; returns it and the CA PEM.
fn tls_postgres(san: &str) -> (Pg, String, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("pgsecrets-tls-")
        .tempdir_in("/tmp")
        .unwrap();
    let c = certs::make(dir.path(), san);
    // PostgreSQL insists its key is private to the server's user.
    let _ = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir.path())
        .status();
    Command::new("chmod")
        .arg("0600")
        .arg(&c.key)
        .status()
        .unwrap();
    Command::new("chmod")
        .arg("0755")
        .arg(dir.path())
        .status()
        .unwrap();
    let pg = Pg::start_with(
        PgVersion::under_test(),
        PgOptions {
            extra_conf: vec![
                ("ssl".into(), "on".into()),
                ("ssl_cert_file".into(), format!("'{}'", c.cert.display())),
                ("ssl_key_file".into(), format!("'{}'", c.key.display())),
            ],
            ..PgOptions::default()
        },
    );
    let ca = std::fs::read_to_string(&c.ca_pem).unwrap();
    (pg, ca, dir)
}

#[tokio::test]
async fn ssl_modes_verify_as_libpq_does() {
    let (pg, ca, _dir) = tls_postgres("IP:127.0.0.1");
    let s = TestServer::start().await;
    let body = |user: &str, password: &str, mode: &str, ca: Option<&str>| json!({"host": "127.0.0.1", "port": pg.port(), "username": user, "password": password, "ssl_mode": mode, "ssl_root_cert": ca});
    // verify-full against the system's roots: our test CA is not among them.
    let (user, password) = root_user(&pg, "root_tls_full").await;
    let r = s
        .write(
            "database/cluster/tls-sys",
            body(&user, &password, "verify-full", None),
        )
        .await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(
        r.error().contains("TLS") || r.error().to_lowercase().contains("certificate"),
        "{}",
        r.text
    );
    // verify-full with the CA given inline works.
    let r = s
        .write(
            "database/cluster/tls-full",
            body(&user, &password, "verify-full", Some(&ca)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // require encrypts without checking; the server sees an SSL connection.
    // Another pgsecrets: one holds one registration of a server.
    let s = TestServer::start().await;
    let (user2, password2) = root_user(&pg, "root_tls_req").await;
    let r = s
        .write(
            "database/cluster/tls-req",
            body(&user2, &password2, "require", None),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A bad PEM is refused before anything happens.
    let r = s
        .write(
            "database/cluster/tls-bad",
            body(&user2, "x", "verify-full", Some("not a pem")),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().contains("ssl_root_cert"), "{}", r.text);
}

#[tokio::test]
async fn verify_ca_accepts_a_certificate_for_another_name_and_verify_full_does_not() {
    let (pg, ca, _dir) = tls_postgres("DNS:db.other.example");
    let s = TestServer::start().await;
    let (user, password) = root_user(&pg, "root_tls_ca").await;
    let body = |mode: &str| json!({"host": "127.0.0.1", "port": pg.port(), "username": user, "password": password, "ssl_mode": mode, "ssl_root_cert": ca});
    let r = s
        .write("database/cluster/tls-name", body("verify-full"))
        .await;
    assert_eq!(r.status, 502, "the name does not match: {}", r.text);
    let r = s.write("database/cluster/tls-ca", body("verify-ca")).await;
    assert_eq!(r.status, 200, "{}", r.text);
}
