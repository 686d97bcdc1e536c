//! The HTTP side of the credential load: each worker keeps one HTTP/1.1
//! connection and sends `GET /v1/<path>` with its token, through hyper's
//! connection-level client.
//!
//! Why not [`crate::client::Client`] (which the setup and checks use): the
//! load runs on the same two cores as the server and PostgreSQL, so
//! whatever the client spends is taken from the server. That client (over
//! reqwest) parses the URL, checks a connection out of its pool, builds its
//! headers and parses the JSON envelope anew on every request;
//! the floor's client is a bare PostgreSQL connection. A bare HTTP
//! connection is the like-for-like counterpart, and what it measures is
//! the server. It still reads every answer whole and checks its status.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, HOST};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex;

use super::load::Op;
use super::Error;

/// What every request of one load carries.
struct Target {
    addr: SocketAddr,
    uri: Uri,
    host: HeaderValue,
    token: HeaderValue,
}

/// One worker's connection, opened on first use and again if it closed.
struct Worker {
    target: Arc<Target>,
    /// Only this worker sends on it, one request at a time: never contended.
    sender: Mutex<Option<SendRequest<Empty<Bytes>>>>,
    issued: Option<Issued>,
}

/// One credential as its answer gave it, and when its request was sent.
#[derive(Debug, Clone)]
pub struct Credential {
    pub username: String,
    pub lease_id: String,
    pub sent: Instant,
}

/// Where a load's credentials are collected (the peer scenario checks its
/// users in `pg_roles` and follows their leases).
pub type Issued = Arc<std::sync::Mutex<Vec<Credential>>>;

/// `concurrency` workers, each reading `path` of the server at `url`
/// (`http://<ip>:<port>`) in a loop.
pub fn creds_ops(url: &str, path: &str, token: &str, concurrency: usize) -> Result<Vec<Op>, Error> {
    collecting_ops(url, path, token, concurrency, None)
}

/// [`creds_ops`] whose answers are parsed and kept in `issued`, when given.
pub fn collecting_ops(
    url: &str,
    path: &str,
    token: &str,
    concurrency: usize,
    issued: Option<Issued>,
) -> Result<Vec<Op>, Error> {
    let authority = url
        .strip_prefix("http://")
        .ok_or_else(|| Error::Setup(format!("the load needs an http:// address, not {url}")))?;
    let addr: SocketAddr = authority
        .parse()
        .map_err(|e| Error::Setup(format!("{authority}: {e}")))?;
    let header = |v: &str| {
        HeaderValue::from_str(v).map_err(|e| Error::Setup(format!("header value {v:?}: {e}")))
    };
    let target = Arc::new(Target {
        addr,
        uri: format!("/v1/{path}")
            .parse()
            .map_err(|e| Error::Setup(format!("path {path:?}: {e}")))?,
        host: header(authority)?,
        token: header(token)?,
    });
    Ok((0..concurrency)
        .map(|_| {
            let worker = Arc::new(Worker {
                target: Arc::clone(&target),
                sender: Mutex::new(None),
                issued: issued.clone(),
            });
            let op: Op = Arc::new(move || {
                let worker = Arc::clone(&worker);
                Box::pin(async move { worker.get().await })
            });
            op
        })
        .collect())
}

impl Worker {
    async fn get(&self) -> Result<(), String> {
        let mut slot = self.sender.lock().await;
        let sender = match slot.as_mut() {
            Some(s) if !s.is_closed() => s,
            _ => slot.insert(self.connect().await?),
        };
        sender.ready().await.map_err(|e| e.to_string())?;
        let sent = Instant::now();
        let t = &self.target;
        let request = Request::get(t.uri.clone())
            .header(HOST, t.host.clone())
            .header("X-Vault-Token", t.token.clone())
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
        }
        if let Some(issued) = &self.issued {
            let credential = credential(&body, sent)?;
            issued.lock().expect("issued").push(credential);
        }
        Ok(())
    }

    async fn connect(&self) -> Result<SendRequest<Empty<Bytes>>, String> {
        let stream = tokio::net::TcpStream::connect(self.target.addr)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.target.addr))?;
        // As every HTTP client does: a request is one write, sent at once.
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        // Ends when the sender is dropped or the server closes.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// The username and lease id of a `database/creds` answer.
fn credential(body: &[u8], sent: Instant) -> Result<Credential, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("answer is not JSON: {e}"))?;
    let username = v["data"]["username"]
        .as_str()
        .ok_or_else(|| format!("no data.username in {v}"))?;
    Ok(Credential {
        username: username.to_string(),
        lease_id: v["lease_id"].as_str().unwrap_or_default().to_string(),
        sent,
    })
}
