//! The optional HTTPS listener (rustls).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgsecrets::config::{TlsConfig, TlsVersion};
use pgsecrets::server;
use pgsecrets::wire::WireConfig;

use crate::support::certs::{Ca, Leaf, Usage, Validity};
use crate::support::process;

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

/// The `pgsecrets` binary, killed when dropped (a failed test leaves no
/// server behind).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `pgsecrets server --config` on `[listener]` lines `listener`, its
/// output (the log) written to `<dir>/server.log`.
fn start(dir: &Path, listener: &str) -> (std::process::Child, PathBuf) {
    let config = dir.join("pgsecrets.toml");
    std::fs::write(
        &config,
        format!("[listener]\n{listener}\n[storage]\nbackend = \"inmem\"\n"),
    )
    .unwrap();
    let log = dir.join("server.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = process::binary()
        .args(["server", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .unwrap();
    (child, log)
}

/// Starts the binary expecting it to refuse: its exit status and stderr.
fn start_refused(dir: &Path, listener: &str) -> (std::process::ExitStatus, String) {
    let (mut child, log) = start(dir, listener);
    let status = process::wait_exit(&mut child);
    (status, std::fs::read_to_string(log).unwrap())
}

fn tls_lines(cert: &Path, key: &Path) -> String {
    format!(
        "address = \"127.0.0.1:{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
        process::free_port(),
        cert.display(),
        key.display()
    )
}

fn sighup(child: &std::process::Child) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Waits until `log` holds `needle` at least `count` times.
fn wait_for_log(log: &Path, needle: &str, count: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap();
        if text.matches(needle).count() >= count {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The certificate a new connection to `url` is served (DER), when the
/// handshake succeeds with a client trusting only `ca_pem`.
async fn served_certificate(ca_pem: &str, url: &str) -> Option<Vec<u8>> {
    let response = client(ca_pem, |b| b)
        .get(format!("{url}/v1/sys/health"))
        .send()
        .await
        .ok()?;
    assert_eq!(response.status(), 200);
    let info = response.extensions().get::<reqwest::tls::TlsInfo>()?;
    info.peer_certificate().map(<[u8]>::to_vec)
}

/// `pgsecrets_tls_cert_expiry_seconds{use="listener"}`, scraped.
async fn listener_expiry_seconds(ca_pem: &str, url: &str) -> f64 {
    let text = client(ca_pem, |b| b)
        .get(format!("{url}/v1/sys/metrics?format=prometheus"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("pgsecrets_tls_cert_expiry_seconds{use=\"listener\"} "))
        .unwrap_or_else(|| panic!("no listener gauge in {text}"))
        .parse()
        .unwrap()
}

fn der(leaf: &Leaf) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// Waits until new connections to `url` are served `expected`.
async fn wait_served(ca_pem: &str, url: &str, expected: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if served_certificate(ca_pem, url).await.as_deref() == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the expected certificate is never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A renewed certificate (from another CA, so no client could mistake the
/// two) is served after SIGHUP; a bad pair after the next SIGHUP (expired,
/// or a key of another certificate) is refused with a log line, and the
/// renewed one keeps serving.
#[tokio::test]
async fn sighup_serves_a_new_certificate_and_keeps_it_when_the_next_pair_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let first_ca = Ca::new("first CA");
    let first = first_ca.server("IP:127.0.0.1");
    let (cert, key) = first.write(dir.path(), "listener");
    let lines = format!(
        "{}\nunauthenticated_metrics_access = true",
        tls_lines(&cert, &key)
    );
    let url = format!("https://{}", lines.split('"').nth(1).expect("the address"));
    let (child, log) = start(dir.path(), &lines);
    let server = Running(child);
    wait_served(&first_ca.pem, &url, &der(&first)).await;

    let day = 86_400.0;
    let left = listener_expiry_seconds(&first_ca.pem, &url).await;
    assert!(left > day - 600.0 && left <= day, "{left}");

    let renewed_ca = Ca::new("renewed CA");
    let renewed = renewed_ca.leaf(
        "pgsecrets test server",
        &["IP:127.0.0.1"],
        Usage::Server,
        Validity::Year,
    );
    renewed.write(dir.path(), "listener");
    sighup(&server.0);
    wait_served(&renewed_ca.pem, &url, &der(&renewed)).await;
    let left = listener_expiry_seconds(&renewed_ca.pem, &url).await;
    assert!(
        left > 364.0 * day,
        "the gauge follows the renewed certificate: {left}"
    );
    assert_eq!(
        served_certificate(&first_ca.pem, &url).await,
        None,
        "a client trusting only the first CA is refused now"
    );

    let expired = renewed_ca.leaf(
        "pgsecrets test server",
        &["IP:127.0.0.1"],
        Usage::Server,
        Validity::Expired,
    );
    expired.write(dir.path(), "listener");
    sighup(&server.0);
    let text = wait_for_log(&log, "keeps its previous certificate", 1);
    assert!(
        text.contains(&format!(
            "listener certificate {} expired at",
            cert.display()
        )),
        "{text}"
    );
    assert_eq!(
        served_certificate(&renewed_ca.pem, &url).await,
        Some(der(&renewed))
    );

    let other = renewed_ca.server("IP:127.0.0.1");
    std::fs::write(&cert, &renewed.cert_pem).unwrap();
    std::fs::write(&key, &other.key_pem).unwrap();
    sighup(&server.0);
    let text = wait_for_log(&log, "keeps its previous certificate", 2);
    assert!(
        text.contains(&format!(
            "listener key {} does not match the certificate {}",
            key.display(),
            cert.display()
        )),
        "{text}"
    );
    assert_eq!(
        served_certificate(&renewed_ca.pem, &url).await,
        Some(der(&renewed))
    );
    let left = listener_expiry_seconds(&renewed_ca.pem, &url).await;
    assert!(left > 364.0 * day, "refused pairs leave the gauge: {left}");
}

/// An expired, not yet valid or mismatched pair stops the start: a non-zero
/// status and one line naming the file and the reason.
#[test]
fn a_bad_listener_certificate_stops_the_start_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("listener CA");
    let leaf = |validity| {
        ca.leaf(
            "pgsecrets test server",
            &["IP:127.0.0.1"],
            Usage::Server,
            validity,
        )
    };
    let (expired_cert, expired_key) = leaf(Validity::Expired).write(dir.path(), "expired");
    let (future_cert, future_key) = leaf(Validity::NotYet).write(dir.path(), "future");
    let (current_cert, _) = leaf(Validity::Current).write(dir.path(), "current");
    let cases = [
        (
            tls_lines(&expired_cert, &expired_key),
            format!(
                "listener certificate {} expired at ",
                expired_cert.display()
            ),
        ),
        (
            tls_lines(&future_cert, &future_key),
            format!(
                "listener certificate {} is not valid before ",
                future_cert.display()
            ),
        ),
        (
            tls_lines(&current_cert, &expired_key),
            format!(
                "listener key {} does not match the certificate {}",
                expired_key.display(),
                current_cert.display()
            ),
        ),
    ];
    for (lines, reason) in cases {
        let (status, stderr) = start_refused(dir.path(), &lines);
        assert!(!status.success(), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&reason), "{reason:?} in {stderr}");
    }
}

#[test]
fn unsupported_tls_options_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let certs = crate::support::certs::make(dir.path(), "IP:127.0.0.1");
    let lines = tls_lines(&certs.cert, &certs.key);
    let (status, stderr) =
        start_refused(dir.path(), &format!("{lines}\ntls_min_version = \"tls11\""));
    assert!(!status.success());
    assert!(
        stderr.contains("listener.tls_min_version \"tls11\" is not supported: rustls supports only \"tls12\" (the default) and \"tls13\""),
        "{stderr}"
    );
    let (status, stderr) = start_refused(
        dir.path(),
        &format!("{lines}\ntls_require_and_verify_client_cert = true"),
    );
    assert!(!status.success());
    assert!(
        stderr.contains(
            "listener.tls_require_and_verify_client_cert needs listener.tls_client_ca_file"
        ),
        "{stderr}"
    );
}
