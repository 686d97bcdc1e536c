//! Stored passwords sent to a server nobody vouched for. pgsecrets holds the
//! root password of every cluster (and the earlier ones, for clones of
//! backups). Found: a token with only `update` on `database/clone/*` pointed
//! `host` at a fake server asking for a cleartext password and received the
//! current root password and its history. Now: clone needs sudo, a clone of
//! the original's own address is refused, changing a cluster's TLS trust
//! needs sudo, its address cannot change, and no cleartext or md5 password
//! request is answered unless TLS verified the server (`verify-full`).

use super::token_for;
use std::sync::{Arc, Mutex};

use serde_json::json;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::support::engine::setup;
use crate::support::engine::{can_login, cluster_body, register, root_user};
use crate::support::pg::{Pg, PgVersion};
use crate::support::server::TestServer;

/// How the fake server asks for the password.
#[derive(Clone, Copy)]
enum Ask {
    Cleartext,
    Md5,
}

/// A fake PostgreSQL server on loopback: it answers the startup message
/// with a password request and records everything the client sends after
/// it (a `PasswordMessage` would carry the password or its md5 digest).
struct FakePg {
    port: u16,
    connections: Arc<Mutex<usize>>,
    after_request: Arc<Mutex<Vec<u8>>>,
}

impl FakePg {
    async fn start(ask: Ask) -> FakePg {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        FakePg::serve(listener, ask, None)
    }

    /// One that speaks TLS when asked, with a certificate from its own CA.
    async fn start_tls(ask: Ask, tls: TlsAcceptor) -> FakePg {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        FakePg::serve(listener, ask, Some(tls))
    }

    /// On a given port (where a real server was), retrying while the port
    /// is still being released.
    async fn start_on(port: u16, ask: Ask) -> FakePg {
        for _ in 0..100 {
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await {
                return FakePg::serve(listener, ask, None);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("port {port} did not become free");
    }

    fn serve(listener: TcpListener, ask: Ask, tls: Option<TlsAcceptor>) -> FakePg {
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(Mutex::new(0));
        let after_request = Arc::new(Mutex::new(Vec::new()));
        let (count, captured) = (connections.clone(), after_request.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                *count.lock().unwrap() += 1;
                tokio::spawn(answer(socket, ask, tls.clone(), captured.clone()));
            }
        });
        FakePg {
            port,
            connections,
            after_request,
        }
    }

    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }

    fn captured(&self) -> Vec<u8> {
        self.after_request.lock().unwrap().clone()
    }

    /// Whether `secret` reached the fake server in any form it asked for.
    fn received(&self, secret: &str) -> bool {
        let bytes = self.captured();
        let text = String::from_utf8_lossy(&bytes);
        text.contains(secret)
    }
}

async fn read_message<S: AsyncRead + Unpin>(socket: &mut S) -> Option<Vec<u8>> {
    let length = socket.read_u32().await.ok()? as usize;
    let mut body = vec![0; length.checked_sub(4)?];
    socket.read_exact(&mut body).await.ok()?;
    Some(body)
}

async fn answer(
    mut socket: TcpStream,
    ask: Ask,
    tls: Option<TlsAcceptor>,
    captured: Arc<Mutex<Vec<u8>>>,
) {
    let Some(first) = read_message(&mut socket).await else {
        return;
    };
    // SSLRequest (80877103): TLS when the fake has a certificate.
    if first == 80877103u32.to_be_bytes() {
        match tls {
            Some(acceptor) => {
                if socket.write_all(b"S").await.is_err() {
                    return;
                }
                let Ok(mut stream) = acceptor.accept(socket).await else {
                    return;
                };
                if read_message(&mut stream).await.is_some() {
                    converse(stream, ask, captured).await;
                }
            }
            None => {
                if socket.write_all(b"N").await.is_ok() && read_message(&mut socket).await.is_some()
                {
                    converse(socket, ask, captured).await;
                }
            }
        }
        return;
    }
    converse(socket, ask, captured).await;
}

/// After the startup message: ask for the password, record the answer.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    mut socket: S,
    ask: Ask,
    captured: Arc<Mutex<Vec<u8>>>,
) {
    let request: Vec<u8> = match ask {
        Ask::Cleartext => [&b"R"[..], &8u32.to_be_bytes(), &3i32.to_be_bytes()].concat(),
        Ask::Md5 => [
            &b"R"[..],
            &12u32.to_be_bytes(),
            &5i32.to_be_bytes(),
            b"salt",
        ]
        .concat(),
    };
    if socket.write_all(&request).await.is_err() || socket.flush().await.is_err() {
        return;
    }
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => captured.lock().unwrap().extend_from_slice(&buffer[..n]),
            _ => return,
        }
    }
}

/// A TLS acceptor with a certificate for 127.0.0.1 signed by a fresh CA;
/// returns it with the CA's PEM.
fn tls_acceptor(dir: &std::path::Path) -> (TlsAcceptor, String) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = crate::support::certs::make(dir, "IP:127.0.0.1");
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&certs.key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let ca = std::fs::read_to_string(&certs.ca_pem).unwrap();
    (TlsAcceptor::from(Arc::new(config)), ca)
}

/// The stored root password of `cluster` (read with the root token, which
/// holds sudo), and its history.
async fn stored_passwords(s: &TestServer, cluster: &str) -> Vec<String> {
    let r = s.read(&format!("database/cluster/{cluster}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let data = r.data();
    let mut all = vec![data["password"].as_str().unwrap().to_string()];
    if let Some(history) = data["password_history"].as_array() {
        all.extend(
            history
                .iter()
                .filter_map(|p| p.as_str().map(str::to_string)),
        );
    }
    all
}

#[tokio::test]
async fn clone_without_sudo_is_refused_and_nothing_reaches_the_target() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    register(&s, pg, "adv-pw-clone").await;
    let fake = FakePg::start(Ask::Cleartext).await;
    let token = token_for(
        &s,
        "clone-only",
        r#"path "database/clone/*" { capabilities = ["create", "update"] }"#,
    )
    .await;
    let r = s
        .write_as(
            &token,
            "database/clone/adv-pw-clone",
            json!({"target": "adv-pw-stolen", "host": "127.0.0.1", "port": fake.port}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(fake.connections(), 0, "the fake server was contacted");
    let r = s.read("database/cluster/adv-pw-stolen").await;
    assert_eq!(r.status, 404, "{}", r.text);
}

#[tokio::test]
async fn clone_with_sudo_to_a_cleartext_server_sends_no_password() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    register(&s, pg, "adv-pw-clone2").await;
    let passwords = stored_passwords(&s, "adv-pw-clone2").await;
    for ask in [Ask::Cleartext, Ask::Md5] {
        let fake = FakePg::start(ask).await;
        let r = s
            .write(
                "database/clone/adv-pw-clone2",
                json!({"target": "adv-pw-copy", "host": "127.0.0.1", "port": fake.port}),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(
            r.error().contains("refused to send a password") && r.error().contains("verify-full"),
            "{}",
            r.error()
        );
        assert!(fake.connections() > 0, "the fake server was never asked");
        assert!(
            fake.captured().is_empty(),
            "the client answered the password request: {:?}",
            String::from_utf8_lossy(&fake.captured())
        );
        for p in &passwords {
            assert!(!fake.received(p), "a stored password reached the fake");
        }
    }
}

#[tokio::test]
async fn clone_of_the_originals_own_address_is_refused() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let root = register(&s, pg, "adv-pw-self").await;
    for host in ["127.0.0.1", "localhost", "LOCALHOST"] {
        let r = s
            .write(
                "database/clone/adv-pw-self",
                json!({"target": "adv-pw-self2", "host": host, "port": pg.port()}),
            )
            .await;
        assert_eq!(r.status, 400, "{host}: {}", r.text);
        assert!(
            r.error().contains("a clone must be a restored copy"),
            "{}",
            r.error()
        );
    }
    // The original still works with the password pgsecrets stored for it.
    let password = stored_passwords(&s, "adv-pw-self").await.remove(0);
    assert!(can_login(pg, &root, &password, "postgres").await);
    assert_eq!(s.read("database/cluster/adv-pw-self2").await.status, 404);
}

#[tokio::test]
async fn registration_against_a_cleartext_server_sends_no_password() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (acceptor, ca) = tls_acceptor(dir.path());
    // Plain, and TLS that encrypts but verifies nobody (require, verify-ca
    // with the fake's own CA: a CA vouches for a certificate, not a host).
    for (ask, mode, tls) in [
        (Ask::Cleartext, "disable", false),
        (Ask::Md5, "disable", false),
        (Ask::Cleartext, "require", true),
        (Ask::Md5, "require", true),
        (Ask::Cleartext, "verify-ca", true),
    ] {
        let fake = if tls {
            FakePg::start_tls(ask, acceptor.clone()).await
        } else {
            FakePg::start(ask).await
        };
        let mut body = json!({"host": "127.0.0.1", "port": fake.port, "username": "postgres",
                              "password": "the-root-password", "ssl_mode": mode});
        if mode == "verify-ca" {
            body["ssl_root_cert"] = json!(ca);
        }
        let r = s.write("database/cluster/adv-pw-fake", body).await;
        assert_eq!(r.status, 400, "{mode}: {}", r.text);
        assert!(
            r.error().contains("refused to send a password"),
            "{}",
            r.error()
        );
        assert!(fake.connections() > 0);
        assert!(
            fake.captured().is_empty(),
            "{mode}: the password request was answered"
        );
        assert!(!fake.received("the-root-password"));
    }
    assert_eq!(s.read("database/cluster/adv-pw-fake").await.status, 404);
}

/// The rule's other side: with `verify-full` and the server's CA, the
/// operator vouched for the server, and a cleartext request is answered
/// (inside TLS), as libpq does.
#[tokio::test]
async fn a_verified_server_may_ask_for_cleartext() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (acceptor, ca) = tls_acceptor(dir.path());
    let fake = FakePg::start_tls(Ask::Cleartext, acceptor).await;
    let r = s
        .write(
            "database/cluster/adv-pw-verified",
            json!({"host": "127.0.0.1", "port": fake.port, "username": "postgres",
                   "password": "the-root-password", "ssl_mode": "verify-full",
                   "ssl_root_cert": ca}),
        )
        .await;
    // The fake never completes the login, so registration fails, but the
    // password was sent to the server the operator vouched for.
    assert!(!r.status.is_success(), "{}", r.text);
    assert!(fake.received("the-root-password"), "{}", r.text);
}

#[tokio::test]
async fn a_registered_clusters_server_swapped_for_a_fake_gets_no_password() {
    // A private server: this test stops it and takes its port.
    let pg = Pg::start(PgVersion::under_test());
    let s = TestServer::start().await;
    let creds = setup(&s, &pg, "adv-pw-swap", json!({"default_ttl": "1h"})).await;
    let passwords = stored_passwords(&s, "adv-pw-swap").await;
    let port = pg.port();
    pg.stop();
    let fake = FakePg::start_on(port, Ask::Cleartext).await;
    // Issuing, rotating and reconciling all connect with stored passwords.
    let r = s.read(&creds).await;
    assert!(
        r.status.is_client_error() || r.status.is_server_error(),
        "{}",
        r.text
    );
    let r = s.write("database/rotate-root/adv-pw-swap", json!({})).await;
    assert!(!r.status.is_success(), "{}", r.text);
    let _ = s.list("database/reconcile/adv-pw-swap").await;
    assert!(fake.connections() > 0, "nothing tried the fake");
    assert!(
        fake.captured().is_empty(),
        "a password request was answered: {:?}",
        String::from_utf8_lossy(&fake.captured())
    );
    for p in &passwords {
        assert!(!fake.received(p));
    }
}

#[tokio::test]
async fn changing_a_clusters_tls_trust_needs_sudo() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let (user, password) = root_user(pg, "root_adv_pw_tls").await;
    let mut body = cluster_body(pg, &user, &password);
    body["ssl_mode"] = json!("disable");
    let r = s.write("database/cluster/adv-pw-tls", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let token = token_for(
        &s,
        "cluster-update",
        r#"path "database/cluster/*" { capabilities = ["create", "update", "read"] }"#,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let certs = crate::support::certs::make(dir.path(), "IP:127.0.0.1");
    let ca_pem = std::fs::read_to_string(&certs.ca_pem).unwrap();
    let client = crate::support::certs::Ca::new("client CA").client("pgsecrets");
    for change in [
        json!({"ssl_mode": "require"}),
        json!({"ssl_root_cert": ca_pem}),
        json!({"tls_ca": ca_pem}),
        json!({"ssl_cert": client.cert_pem, "ssl_key": client.key_pem}),
        json!({"tls_certificate": client.cert_pem, "private_key": client.key_pem}),
        json!({"channel_binding": "require"}),
    ] {
        let r = s
            .write_as(&token, "database/cluster/adv-pw-tls", change.clone())
            .await;
        assert_eq!(r.status, 403, "{change}: {}", r.text);
        assert!(r.error().contains("needs sudo"), "{}", r.error());
    }
    // Unchanged settings and pool sizes stay open to the narrow token.
    let r = s
        .write_as(
            &token,
            "database/cluster/adv-pw-tls",
            json!({"ssl_mode": "disable", "max_open_connections": 3}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s.read("database/cluster/adv-pw-tls").await;
    assert_eq!(r.data()["ssl_mode"], "disable", "{}", r.text);
    assert!(r.data()["ssl_root_cert"].is_null(), "{}", r.text);
}

#[tokio::test]
async fn a_registered_clusters_address_cannot_be_moved() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    register(&s, pg, "adv-pw-move").await;
    let fake = FakePg::start(Ask::Cleartext).await;
    let token = token_for(
        &s,
        "cluster-move",
        r#"path "database/cluster/*" { capabilities = ["create", "update"] }"#,
    )
    .await;
    for t in [token.as_str(), s.root_token.as_str()] {
        let r = s
            .write_as(
                t,
                "database/cluster/adv-pw-move",
                json!({"host": "127.0.0.1", "port": fake.port}),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text);
    }
    assert_eq!(fake.connections(), 0);
}
