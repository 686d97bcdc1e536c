//! The optional HTTPS listener (rustls).

use std::sync::Arc;

use pgsecrets::config::{TlsConfig, TlsVersion};
use pgsecrets::server;
use pgsecrets::wire::WireConfig;

use crate::support::certs::{Ca, Leaf};

fn certificates(dir: &std::path::Path) -> TlsConfig {
    let certs = crate::support::certs::make(dir, "IP:127.0.0.1");
    TlsConfig::new(certs.cert, certs.key)
}

#[tokio::test]
async fn the_api_is_served_over_tls_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certificates(dir.path());
    let (storage, root) = server::fresh_inmem(None).await.unwrap();
    let server::Assembled {
        router,
        workers: _workers,
    } = server::assemble(storage).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = server::tls_config(&tls).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(
        listener,
        Arc::clone(&router),
        WireConfig {
            max_request_size: 1 << 20,
            ..WireConfig::default()
        },
        Some(config),
        async {
            let _ = stopped.await;
        },
    ));
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(dir.path().join("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let r = client
        .get(format!(
            "https://127.0.0.1:{port}/v1/auth/token/lookup-self"
        ))
        .header("X-Vault-Token", &root)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A client that does not trust the certificate is refused at the handshake.
    let untrusting = reqwest::Client::new();
    assert!(untrusting
        .get(format!("https://127.0.0.1:{port}/v1/sys/health"))
        .send()
        .await
        .is_err());
    // Plain HTTP to the TLS port gets no API answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/v1/sys/health"))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[test]
fn missing_or_bad_tls_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = TlsConfig::new(dir.path().join("nope.pem"), dir.path().join("k.pem"));
    let e = server::tls_config(&bad).unwrap_err().to_string();
    assert!(e.contains("nope.pem"), "{e}");
}

/// A TLS server in this process over fresh in-memory storage; stops when
/// dropped.
struct TlsServer {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve_tls(tls: &TlsConfig) -> TlsServer {
    let config = server::tls_config(tls).unwrap();
    let (storage, _root) = server::fresh_inmem(None).await.unwrap();
    let server::Assembled { router, workers } = server::assemble(storage).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _workers = workers;
        let _ = server::serve(
            listener,
            router,
            WireConfig::default(),
            Some(config),
            async {
                let _ = stopped.await;
            },
        )
        .await;
    });
    TlsServer {
        url,
        stop: Some(stop),
    }
}

/// A client trusting only `ca_pem`; `tune` adds versions or an identity.
fn client(
    ca_pem: &str,
    tune: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .tls_info(true);
    tune(builder).build().unwrap()
}

/// `sys/health`'s status, or the whole chain of the error that stopped it.
async fn health(client: &reqwest::Client, url: &str) -> Result<u16, String> {
    match client.get(format!("{url}/v1/sys/health")).send().await {
        Ok(r) => Ok(r.status().as_u16()),
        Err(e) => Err(error_chain(&e)),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[tokio::test]
async fn the_default_minimum_accepts_tls12_clients() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("listener CA");
    let (cert, key) = ca.server("IP:127.0.0.1").write(dir.path(), "server");
    let s = serve_tls(&TlsConfig::new(cert, key)).await;
    let tls12 = client(&ca.pem, |b| {
        b.max_tls_version(reqwest::tls::Version::TLS_1_2)
    });
    assert_eq!(health(&tls12, &s.url).await, Ok(200));
}

#[tokio::test]
async fn tls_min_version_tls13_refuses_tls12_clients() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("listener CA");
    let (cert, key) = ca.server("IP:127.0.0.1").write(dir.path(), "server");
    let s = serve_tls(&TlsConfig {
        min_version: TlsVersion::Tls13,
        ..TlsConfig::new(cert, key)
    })
    .await;
    let tls12 = client(&ca.pem, |b| {
        b.max_tls_version(reqwest::tls::Version::TLS_1_2)
    });
    let refused = health(&tls12, &s.url).await.unwrap_err();
    assert!(refused.contains("ProtocolVersion"), "{refused}");
    let tls13 = client(&ca.pem, |b| {
        b.min_tls_version(reqwest::tls::Version::TLS_1_3)
    });
    assert_eq!(health(&tls13, &s.url).await, Ok(200));
}

#[tokio::test]
async fn a_required_client_certificate_is_checked_at_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let listener_ca = Ca::new("listener CA");
    let (cert, key) = listener_ca
        .server("IP:127.0.0.1")
        .write(dir.path(), "server");
    let clients = Ca::new("client CA");
    let client_ca_file = dir.path().join("clients.pem");
    std::fs::write(&client_ca_file, &clients.pem).unwrap();
    let s = serve_tls(&TlsConfig {
        client_ca_file: Some(client_ca_file),
        require_client_cert: true,
        ..TlsConfig::new(cert, key)
    })
    .await;
    let with = |leaf: Leaf| {
        let pem = format!("{}{}", leaf.cert_pem, leaf.key_pem);
        let identity = reqwest::Identity::from_pem(pem.as_bytes()).unwrap();
        client(&listener_ca.pem, |b| b.identity(identity))
    };

    let anonymous = client(&listener_ca.pem, |b| b);
    let refused = health(&anonymous, &s.url).await.unwrap_err();
    assert!(refused.contains("CertificateRequired"), "{refused}");

    let stranger = with(Ca::new("another CA").client("app"));
    let refused = health(&stranger, &s.url).await.unwrap_err();
    assert!(refused.contains("UnknownCA"), "{refused}");

    let known = with(clients.client("app"));
    assert_eq!(health(&known, &s.url).await, Ok(200));
}
