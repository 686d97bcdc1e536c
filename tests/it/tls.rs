//! The optional HTTPS listener (rustls).

use std::sync::Arc;

use pgsecrets::config::TlsConfig;
use pgsecrets::server;
use pgsecrets::wire::WireConfig;

fn certificates(dir: &std::path::Path) -> TlsConfig {
    let certs = crate::support::certs::make(dir, "IP:127.0.0.1");
    TlsConfig {
        cert_file: certs.cert,
        key_file: certs.key,
    }
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
    let bad = TlsConfig {
        cert_file: dir.path().join("nope.pem"),
        key_file: dir.path().join("k.pem"),
    };
    let e = server::tls_config(&bad).unwrap_err().to_string();
    assert!(e.contains("nope.pem"), "{e}");
}
