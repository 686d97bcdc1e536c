//! TLS to managed clusters: libpq's `sslmode` meanings against a real
//! PostgreSQL with `ssl = on`.

use std::process::Command;

use serde_json::json;

use crate::support::certs;
use crate::support::engine::root_user;
use crate::support::pg::{Pg, PgOptions, PgVersion};
use crate::support::server::TestServer;

/// A PostgreSQL serving TLS with the server certificate `leaf`. Only its
/// bootstrap superuser may log in without TLS (the test harness sets users
/// up through it); everyone else must come over TLS (`hostssl`), and with a
/// certificate signed by `client_ca` when one is given
/// (`clientcert=verify-ca`).
fn tls_postgres_with(leaf: &certs::Leaf, client_ca: Option<&str>) -> (Pg, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("pgsecrets-tls-")
        .tempdir_in("/tmp")
        .unwrap();
    let (cert, key) = leaf.write(dir.path(), "server");
    let clientcert = match client_ca {
        Some(pem) => {
            std::fs::write(dir.path().join("client-ca.pem"), pem).unwrap();
            " clientcert=verify-ca"
        }
        None => "",
    };
    let hba = dir.path().join("pg_hba.conf");
    std::fs::write(
        &hba,
        format!(
            "host all postgres 127.0.0.1/32 scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256{clientcert}\n"
        ),
    )
    .unwrap();
    // PostgreSQL insists its key is private to the server's user.
    let _ = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir.path())
        .status();
    Command::new("chmod")
        .arg("0600")
        .arg(&key)
        .status()
        .unwrap();
    Command::new("chmod")
        .arg("0755")
        .arg(dir.path())
        .status()
        .unwrap();
    let mut extra_conf = vec![
        ("ssl".into(), "on".into()),
        ("ssl_cert_file".into(), format!("'{}'", cert.display())),
        ("ssl_key_file".into(), format!("'{}'", key.display())),
        ("hba_file".into(), format!("'{}'", hba.display())),
    ];
    if client_ca.is_some() {
        extra_conf.push((
            "ssl_ca_file".into(),
            format!("'{}'", dir.path().join("client-ca.pem").display()),
        ));
    }
    let pg = Pg::start_with(
        PgVersion::under_test(),
        PgOptions {
            extra_conf,
            ..PgOptions::default()
        },
    );
    (pg, dir)
}

/// A PostgreSQL serving TLS with a certificate for `san` from a CA of its
/// own; returns it and the CA PEM.
fn tls_postgres(san: &str) -> (Pg, String, tempfile::TempDir) {
    let ca = certs::Ca::new("pgsecrets test CA");
    let (pg, dir) = tls_postgres_with(&ca.server(san), None);
    (pg, ca.pem, dir)
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
    let _ = &other;
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

/// A cluster body for `pg` over TLS, with extra fields.
fn tls_body(pg: &Pg, user: &str, password: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut body =
        json!({"host": "127.0.0.1", "port": pg.port(), "username": user, "password": password});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn require_ignores_name_and_ca_but_checks_the_chain_once_a_ca_is_given() {
    // A certificate for another name, from a CA pgsecrets is not told about.
    let (pg, ca, _dir) = tls_postgres("DNS:db.other.example");
    let stranger = certs::Ca::new("another CA");
    let s = TestServer::start().await;
    let (user, password) = root_user(&pg, "root_tls_require").await;
    // Given a CA that did not sign the certificate, require checks the
    // chain as verify-ca does (libpq), and refuses.
    let r = s
        .write(
            "database/cluster/req-other-ca",
            tls_body(
                &pg,
                &user,
                &password,
                json!({"ssl_mode": "require", "ssl_root_cert": stranger.pem}),
            ),
        )
        .await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(r.error().contains("unknown issuer"), "{}", r.text);
    // With no CA it checks neither chain nor name, and says so.
    let r = s
        .write(
            "database/cluster/req",
            tls_body(&pg, &user, &password, json!({"ssl_mode": "require"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let warnings = r.json()["warnings"].to_string();
    assert!(
        warnings.contains("does not check the server's certificate")
            && warnings.contains("channel_binding=require"),
        "{warnings}"
    );
    // The right CA with require: the name is still not checked.
    let (user2, password2) = root_user(&pg, "root_tls_require_ca").await;
    let s2 = TestServer::start().await;
    let r = s2
        .write(
            "database/cluster/req-ca",
            tls_body(
                &pg,
                &user2,
                &password2,
                json!({"ssl_mode": "require", "ssl_root_cert": ca, "channel_binding": "require"}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.json()["warnings"].is_null()
            || !r.json()["warnings"].to_string().contains("does not check"),
        "{}",
        r.text
    );
    // The management connection really came over TLS: the server has no
    // other door for it.
    let r = s2.read("database/cluster/req-ca").await;
    assert_eq!(r.data()["channel_binding"], "require", "{}", r.text);
    let management = r.data()["management_role"].as_str().unwrap().to_string();
    let login = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={management} password=x dbname=postgres sslmode=disable",
            pg.port()
        ),
        tokio_postgres::NoTls,
    )
    .await;
    let e = login.err().expect("no login without TLS");
    let e = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or(e.to_string());
    assert!(e.contains("no encryption"), "{e}");
}

#[tokio::test]
async fn expired_self_signed_and_cn_only_server_certificates_are_refused_with_the_reason() {
    let ca = certs::Ca::new("pgsecrets test CA");
    let expired = ca.leaf(
        "pgsecrets test server",
        &["IP:127.0.0.1"],
        certs::Usage::Server,
        certs::Validity::Expired,
    );
    let cn_only = ca.leaf(
        "127.0.0.1",
        &[],
        certs::Usage::Server,
        certs::Validity::Current,
    );
    // A self-signed server certificate, as `openssl req -x509` makes it (a
    // CA certificate), given as its own root.
    let self_signed = certs::Ca::new("127.0.0.1");
    let self_signed_leaf = certs::Leaf {
        cert_pem: self_signed.pem.clone(),
        key_pem: self_signed.key_pem(),
    };
    let cases: [(&str, &certs::Leaf, &str, &str); 3] = [
        ("expired", &expired, &ca.pem, "expired"),
        (
            "cn-only",
            &cn_only,
            &ca.pem,
            "it holds no subjectAltName, and rustls does not read host names from the common name",
        ),
        (
            "self-signed",
            &self_signed_leaf,
            &self_signed.pem,
            "rustls accepts only a server certificate signed by a CA",
        ),
    ];
    for (name, leaf, root, reason) in cases {
        let (pg, _dir) = tls_postgres_with(leaf, None);
        let s = TestServer::start().await;
        let (user, password) = root_user(&pg, "root_tls_refused").await;
        let r = s
            .write(
                &format!("database/cluster/{name}"),
                tls_body(&pg, &user, &password, json!({"ssl_root_cert": root})),
            )
            .await;
        assert_eq!(r.status, 502, "{name}: {}", r.text);
        let e = r.error();
        assert!(
            e.contains(&format!("127.0.0.1:{}", pg.port())) && e.contains(reason),
            "{name}: {e}"
        );
        assert!(!e.contains(&password), "{name}: {e}");
        // Nothing was kept (the handshake failed before any login, so the
        // root password was never rotated).
        assert_eq!(
            s.read(&format!("database/cluster/{name}")).await.status,
            404
        );
        let still = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user={user} password={password} dbname=postgres",
                pg.port()
            ),
            tokio_postgres::NoTls,
        )
        .await;
        // hostssl only: the server refuses any login without TLS.
        let e = still.err().unwrap();
        let e = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or(e.to_string());
        assert!(e.contains("no encryption"), "{name}: {e}");
    }
}

#[tokio::test]
async fn a_server_asking_for_a_client_certificate_gets_the_configured_one() {
    let server_ca = certs::Ca::new("server CA");
    let client_ca = certs::Ca::new("client CA");
    let (pg, _dir) = tls_postgres_with(&server_ca.server("IP:127.0.0.1"), Some(&client_ca.pem));
    let s = TestServer::start().await;
    let (user, password) = root_user(&pg, "root_tls_client").await;
    // No client certificate: the server's refusal, in its own words.
    let r = s
        .write(
            "database/cluster/cc",
            tls_body(
                &pg,
                &user,
                &password,
                json!({"ssl_root_cert": server_ca.pem}),
            ),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.error()
            .contains("connection requires a valid client certificate"),
        "{}",
        r.text
    );
    // One from a CA the server does not trust: refused in the handshake.
    let stranger = certs::Ca::new("stranger CA").client("pgsecrets");
    let r = s
        .write(
            "database/cluster/cc",
            tls_body(&pg, &user, &password, json!({"ssl_root_cert": server_ca.pem, "ssl_cert": stranger.cert_pem, "ssl_key": stranger.key_pem})),
        )
        .await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(r.error().contains("TLS"), "{}", r.text);
    assert_eq!(s.read("database/cluster/cc").await.status, 404);
    // The right one, under Vault's field names.
    let mine = client_ca.client("pgsecrets");
    let r = s
        .write(
            "database/cluster/cc",
            tls_body(&pg, &user, &password, json!({"tls_ca": server_ca.pem, "tls_certificate": mine.cert_pem, "private_key": mine.key_pem})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Credentials are issued through the management role's pool, which
    // shows the certificate too.
    let r = s.write("database/cluster/cc/app", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s.write("database/roles/app", json!({})).await;
    assert!(r.status == 204 || r.status == 200, "{}", r.text);
    let r = s.read("database/creds/cc/app/app").await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The key is shown only with sudo.
    let reader = {
        let r = s
            .write(
                "sys/policies/acl/cluster-reader",
                json!({"policy": r#"path "database/cluster/*" { capabilities = ["read"] }"#}),
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
        s.token_with(&["cluster-reader"]).await
    };
    let r = s.read_as(&reader, "database/cluster/cc").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["ssl_cert"], mine.cert_pem.as_str());
    assert!(r.data().get("ssl_key").is_none(), "{}", r.text);
    assert!(!r.text.contains("PRIVATE KEY"), "{}", r.text);
    let r = s.read("database/cluster/cc").await;
    assert_eq!(
        r.data()["ssl_key"],
        mine.key_pem.as_str(),
        "sudo reads the key"
    );
}

#[tokio::test]
async fn bad_tls_settings_are_refused_before_anything_is_sent() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let (user, password) = root_user(pg, "root_tls_bad").await;
    let ca = certs::Ca::new("client CA");
    let mine = ca.client("pgsecrets");
    let other = ca.client("someone else");
    let expired = ca.leaf(
        "pgsecrets",
        &[],
        certs::Usage::Client,
        certs::Validity::Expired,
    );
    // A root past its validity period.
    let expired_ca = expired.cert_pem.clone();
    let encrypted_key = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let cases = [
        (
            json!({"ssl_mode": "prefer"}),
            "ssl_mode",
            "fall back to an unencrypted connection",
        ),
        (
            json!({"ssl_mode": "allow"}),
            "ssl_mode",
            "fall back to an unencrypted connection",
        ),
        (
            json!({"ssl_mode": "verify-full", "ssl_cert": mine.cert_pem}),
            "ssl_key",
            "needs its private key",
        ),
        (
            json!({"ssl_mode": "verify-full", "ssl_key": mine.key_pem}),
            "ssl_cert",
            "needs its certificate",
        ),
        (
            json!({"ssl_mode": "verify-full", "ssl_cert": mine.cert_pem, "ssl_key": other.key_pem}),
            "ssl_key",
            "not the key of the certificate",
        ),
        (
            json!({"ssl_mode": "verify-full", "ssl_cert": expired.cert_pem, "ssl_key": expired.key_pem}),
            "ssl_cert",
            "expired at",
        ),
        (
            json!({"ssl_mode": "verify-full", "ssl_root_cert": expired_ca}),
            "ssl_root_cert",
            "expired at",
        ),
        (
            json!({"ssl_mode": "verify-full", "ssl_cert": mine.cert_pem, "ssl_key": encrypted_key}),
            "ssl_key",
            "encrypted",
        ),
        (
            json!({"ssl_mode": "verify-full", "ssl_cert": "not a pem", "ssl_key": mine.key_pem}),
            "ssl_cert",
            "no PEM certificate",
        ),
        (
            json!({"ssl_mode": "verify-full", "ssl_cert": mine.cert_pem, "ssl_key": "junk"}),
            "ssl_key",
            "no PEM private key",
        ),
        (
            json!({"ssl_mode": "verify-full", "ssl_root_cert": ca.pem, "tls_ca": mine.cert_pem}),
            "ssl_root_cert",
            "its alias tls_ca differ",
        ),
        (
            json!({"ssl_mode": "disable", "ssl_root_cert": ca.pem}),
            "ssl_mode",
            "ssl_mode=disable uses no TLS",
        ),
        (
            json!({"ssl_mode": "disable", "channel_binding": "require"}),
            "channel_binding",
            "ssl_mode=disable does not make",
        ),
        (
            json!({"ssl_mode": "disable", "channel_binding": "always"}),
            "channel_binding",
            "not one of disable, prefer, require",
        ),
    ];
    for (extra, field, reason) in cases {
        let r = s
            .write(
                "database/cluster/bad-tls",
                tls_body(pg, &user, &password, extra.clone()),
            )
            .await;
        assert_eq!(r.status, 400, "{extra}: {}", r.text);
        let e = r.error();
        assert!(e.contains(field) && e.contains(reason), "{extra}: {e}");
        assert!(!e.contains("BEGIN"), "no PEM echoed: {e}");
    }
    assert_eq!(s.read("database/cluster/bad-tls").await.status, 404);
    // Nothing reached the server: the root password was never rotated.
    assert!(
        crate::support::engine::can_login(pg, &user, &password, "postgres").await,
        "the root password still works"
    );
}
