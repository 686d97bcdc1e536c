//! Starving the listener: sockets that never speak, heads and bodies sent
//! too slowly or never, keep-alive connections left idle. Each is cut off
//! by one of Vault's listener settings (`http_read_header_timeout`,
//! `http_read_timeout`, `http_idle_timeout`) or waits behind the
//! connection cap, and `sys/health` keeps answering.

use std::time::Duration;

use pgsecrets::wire::WireConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::server::TestServer;

/// Short limits, so the tests wait seconds, not Vault's minutes.
fn tight() -> WireConfig {
    WireConfig {
        read_header_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        max_connections: 16,
        ..WireConfig::default()
    }
}

fn address(s: &TestServer) -> String {
    s.url.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection; returns what it sent.
/// Panics if the server keeps it open for a minute (it must close it).
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut got)).await;
    match read {
        Ok(Ok(_)) => String::from_utf8_lossy(&got).into_owned(),
        // A reset is a close as well.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            String::from_utf8_lossy(&got).into_owned()
        }
        Ok(Err(e)) => panic!("read failed: {e}"),
        Err(_) => panic!("the server kept the connection open: {got:?}"),
    }
}

async fn health(s: &TestServer) -> u16 {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    client
        .get(format!("{}/v1/sys/health", s.url))
        .send()
        .await
        .expect("sys/health answers while silent sockets are open")
        .status()
        .as_u16()
}

#[tokio::test]
async fn silent_sockets_beyond_the_cap_do_not_starve_health() {
    let s = TestServer::start_with_wire(tight()).await;
    // Many times the cap, none of them ever sending a byte.
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(TcpStream::connect(address(&s)).await.unwrap());
    }
    assert_eq!(health(&s).await, 200);
    // And the server closed a silent socket it had accepted.
    let closed = until_closed(&mut silent[0]).await;
    assert!(
        closed.is_empty(),
        "nothing is sent to a silent socket: {closed:?}"
    );
}

#[tokio::test]
async fn a_head_sent_too_slowly_is_cut_off() {
    let s = TestServer::start_with_wire(tight()).await;
    let mut stream = TcpStream::connect(address(&s)).await.unwrap();
    // Half a request head, then silence (slowloris).
    stream
        .write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut stream).await;
    assert!(!answer.contains("200 OK"), "{answer:?}");
    assert_eq!(health(&s).await, 200);
}

#[tokio::test]
async fn a_body_that_never_arrives_times_out_with_408() {
    let s = TestServer::start_with_wire(tight()).await;
    let mut stream = TcpStream::connect(address(&s)).await.unwrap();
    stream
        .write_all(
            b"PUT /v1/sys/policies/acl/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"policy\"",
        )
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut answer))
        .await
        .expect("the server answers a stalled body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("http_read_timeout"), "{answer}");
    // Nothing was written.
    let r = s.read("sys/policies/acl/x").await;
    assert_eq!(r.status, 404, "{}", r.text);
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_before_it_is_read() {
    let s = TestServer::start_with_wire(WireConfig {
        max_request_size: 1024,
        ..tight()
    })
    .await;
    let mut stream = TcpStream::connect(address(&s)).await.unwrap();
    // A huge Content-Length and no body at all: answered at once, not after
    // waiting for bytes that never come.
    stream
        .write_all(
            b"PUT /v1/sys/policies/acl/x HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let s = TestServer::start_with_wire(tight()).await;
    let mut stream = TcpStream::connect(address(&s)).await.unwrap();
    stream
        .write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The answer comes, then the connection stays idle until it is closed.
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Reads one HTTP/1.1 response (head and a Content-Length body) from a
/// connection that stays open; `None` if the server closed it instead.
async fn read_response(stream: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return Some(String::from_utf8_lossy(&got).into_owned());
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_keep_alive_connection_in_use_outlives_the_header_timeout() {
    // Found by the audit benchmark: the watchdog slept until "opened +
    // header timeout" and, waking between two requests, closed a busy
    // connection as if it had never spoken; a client sending its next
    // request at that moment got "connection closed before message
    // completed".
    let s = TestServer::start_with_wire(WireConfig {
        idle_timeout: Duration::from_secs(60),
        ..tight()
    })
    .await;
    let mut stream = TcpStream::connect(address(&s)).await.unwrap();
    // Three header timeouts' worth of requests, with pauses between them
    // (the connection is idle most of the time, but never for a second).
    for n in 0..30 {
        stream
            .write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = read_response(&mut stream)
            .await
            .unwrap_or_else(|| panic!("the server closed a connection in use after {n} requests"));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn the_default_cap_leaves_descriptors_for_storage_and_postgres() {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap();
    let cap = pgsecrets::wire::default_max_connections() as u64;
    assert!(
        cap < limit,
        "cap {cap} is below the descriptor limit {limit}"
    );
    let defaults = WireConfig::default();
    assert_eq!(defaults.read_header_timeout, Duration::from_secs(10));
    assert_eq!(defaults.read_timeout, Duration::from_secs(30));
    assert_eq!(defaults.idle_timeout, Duration::from_secs(300));
}
