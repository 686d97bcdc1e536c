//! The HTTP face: `/v1/*` requests in, Vault's JSON envelope out.
//!
//! Every request goes through one axum fallback handler, so custom verbs
//! (`LIST`, `HELP`) reach us; [`request`] decodes, the router handles, and
//! [`envelope`] encodes. Errors go through [`error::classify`].

pub mod envelope;
pub mod error;
pub mod request;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use axum::response::Response as HttpResponse;

pub use request::RequestError;

use crate::logical::Operation;
use crate::router::Router;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct WireConfig {
    /// Largest accepted request body (Vault's default is 32 MiB).
    pub max_request_size: usize,
}

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
    let id = crate::random::uuid();
    let head = request::is_head(request.method());
    let method = request.method().clone();
    let uri_path = request.uri().path().to_string();
    let decoded = request::decode(request, id.clone(), config.max_request_size).await;
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
                tracing::error!(request_id = %id, error = ?e, "request failed");
            }
            envelope::error(&e, head)
        }
    };
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
