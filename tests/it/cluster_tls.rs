//! TLS to managed clusters: libpq's `sslmode` meanings against a real
//! PostgreSQL with `ssl = on`.

use std::process::Command;

use serde_json::json;

use crate::support::certs;
use crate::support::engine::root_user;
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
    assert_eq!(
        r.error(),
        format!(
            "the TLS certificate of PostgreSQL at 127.0.0.1:{} was refused: unknown issuer: it is not signed by a CA this system trusts; give the CA certificate as ssl_root_cert",
            pg.port()
        )
    );
    // verify-full with the wrong CA given.
    let other = tempfile::tempdir().unwrap();
    let wrong_ca =
        std::fs::read_to_string(certs::make(other.path(), "IP:127.0.0.1").ca_pem).unwrap();
    let r = s
        .write(
            "database/cluster/tls-wrong-ca",
            body(&user, &password, "verify-full", Some(&wrong_ca)),
        )
        .await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(
        r.error().contains(&format!("127.0.0.1:{}", pg.port()))
            && r.error()
                .contains("it is not signed by the CA in ssl_root_cert"),
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
    assert_eq!(
        r.error(),
        format!(
            "the TLS certificate of PostgreSQL at 127.0.0.1:{} was refused: name mismatch: it is not valid for \"127.0.0.1\" but for DnsName(\"db.other.example\"); connect by a name it holds, or use ssl_mode=verify-ca to check the CA only",
            pg.port()
        )
    );
    let r = s.write("database/cluster/tls-ca", body("verify-ca")).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn a_server_without_tls_is_told_apart_from_a_failed_handshake() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    for mode in ["require", "verify-ca", "verify-full"] {
        let (user, password) =
            root_user(pg, &format!("root_notls_{}", mode.replace('-', "_"))).await;
        let r = s
            .write(
                &format!("database/cluster/notls-{mode}"),
                json!({"host": pg.host(), "port": pg.port(), "username": user, "password": password, "ssl_mode": mode}),
            )
            .await;
        assert_eq!(r.status, 502, "{}", r.text);
        assert_eq!(
            r.error(),
            format!(
                "PostgreSQL at {}:{} does not accept TLS, which ssl_mode={mode} requires: set ssl_mode=disable for a server without TLS, or turn on ssl in its postgresql.conf",
                pg.host(),
                pg.port()
            )
        );
    }
}

#[tokio::test]
async fn the_log_says_why_tls_failed_too() {
    let pg = Pg::shared();
    let (user, password) = root_user(pg, "root_notls_log").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = Command::new(env!("CARGO_BIN_EXE_pgsecrets"))
        .args([
            "server",
            "-dev",
            "-dev-root-token-id=tls-log-root",
            &format!("-dev-listen-address=127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = server.stderr.take().unwrap();
    let drained = std::thread::spawn(move || {
        let mut logs = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut logs).unwrap();
        logs
    });
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while client
        .get(format!("{url}/v1/sys/health"))
        .send()
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "dev server never answered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = client
        .post(format!("{url}/v1/database/cluster/notls-log"))
        .header("X-Vault-Token", "tls-log-root")
        .json(&json!({"host": pg.host(), "port": pg.port(), "username": user, "password": password, "ssl_mode": "require"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(server.id().to_string())
        .status();
    let _ = server.wait();
    let logs = drained.join().unwrap();
    let line = logs
        .lines()
        .find(|l| l.contains("request failed"))
        .unwrap_or_else(|| panic!("no failure logged: {logs}"));
    assert!(
        line.contains("set ssl_mode=disable for a server without TLS"),
        "{line}"
    );
}
