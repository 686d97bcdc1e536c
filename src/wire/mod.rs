//! The HTTP face: `/v1/*` requests in, Vault's JSON envelope out.
//!
//! Every request goes through one axum fallback handler, so custom verbs
//! (`LIST`, `HELP`) reach us; [`request`] decodes, the router handles, and
//! [`envelope`] encodes. Errors go through [`error::classify`].

pub mod envelope;
pub mod error;
mod redirect;
pub mod request;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use axum::response::Response as HttpResponse;

pub use request::RequestError;

use crate::logical::Operation;
use crate::router::Router;

/// Settings of the HTTP layer: what a request may cost the server.
///
/// The timeouts are Vault's listener settings with Vault's defaults; the
/// connection cap keeps a flood of sockets from using up the process's
/// file descriptors, which storage and PostgreSQL need too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireConfig {
    /// Largest accepted request body (Vault's default is 32 MiB).
    pub max_request_size: usize,
    /// `http_read_header_timeout`: a new connection must send a complete
    /// request head within this (Vault: 10s).
    pub read_header_timeout: Duration,
    /// `http_read_timeout`: a request's body must arrive within this once
    /// its head has (Vault: 30s).
    pub read_timeout: Duration,
    /// `http_idle_timeout`: a keep-alive connection with no request in
    /// flight is closed after this (Vault: 5m).
    pub idle_timeout: Duration,
    /// `max_connections`: connections served at once; more wait in the
    /// kernel's accept queue until one closes.
    pub max_connections: usize,
    /// `x_forwarded_for_authorized_addrs`: proxies whose `X-Forwarded-For`
    /// names the client (for rate limits and the audit log).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for WireConfig {
    fn default() -> WireConfig {
        WireConfig {
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            read_header_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            max_connections: default_max_connections(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Descriptors kept back from HTTP connections for storage, PostgreSQL
/// pools, log and key files.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Three quarters of what the descriptor limit leaves after the reserve,
/// so that a flood of connections can never take the last descriptors
/// (with systemd's usual 1,024: 576 connections).
pub fn default_max_connections() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1_048_576);
    let usable = soft.saturating_sub(RESERVED_DESCRIPTORS).max(64);
    (usable / 4 * 3).clamp(16, 65_536) as usize
}

/// The client's address, put in each request's extensions by the listener
/// (the audit record shows it).
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub std::net::SocketAddr);

/// Vault's default request size limit.
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 32 * 1024 * 1024;

/// The axum application serving the whole API.
pub fn app(router: Arc<Router>, config: WireConfig) -> axum::Router {
    axum::Router::new().fallback(move |request: Request<Body>| {
        let router = Arc::clone(&router);
        let config = config.clone();
        async move { serve(&router, &config, request).await }
    })
}

async fn serve(router: &Router, config: &WireConfig, request: Request<Body>) -> HttpResponse {
    let started = Instant::now();
    if let Some(redirect) = redirect::response(request.method(), request.uri()) {
        return redirect;
    }
    let id = crate::random::uuid();
    let head = request::is_head(request.method());
    let method = request.method().clone();
    let uri_path = request.uri().path().to_string();
    let decoded = request::decode(request, id.clone(), config).await;
    let (operation, result) = match decoded {
        Ok(incoming) => {
            let op = incoming.operation;
            (Some(op), router.handle(incoming).await)
        }
        Err(e) => (None, Err(e.into())),
    };
    let response = match result {
        Ok(r) => envelope::encode(&id, operation.unwrap_or(Operation::Read), r, head),
        Err(e) => {
            if error::is_internal(&e) {
                // The message for people (what to do), then the variant
                // with every field, for whoever debugs it.
                tracing::error!(request_id = %id, error = %e, detail = ?e, "request failed");
            }
            envelope::error(&e, head)
        }
    };
    router
        .telemetry
        .measure(crate::telemetry::name::HANDLE_REQUEST, started);
    tracing::info!(
        request_id = %id,
        method = %method,
        path = %uri_path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}
