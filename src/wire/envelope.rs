//! Vault's response envelope and status selection.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response as HttpResponse;
use serde_json::{json, Map, Value};

use super::error::classify;
use crate::logical::{Operation, Response};
use crate::Error;

fn with_headers(status: StatusCode, body: Option<Vec<u8>>) -> HttpResponse {
    let mut response = HttpResponse::new(body.map(Body::from).unwrap_or_else(Body::empty));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    // Exactly `application/json`: hvac parses error bodies only on an exact match.
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Every JSON body ends with a newline, as Vault's do (Go's
/// `json.Encoder` writes one), so `curl` output ends cleanly and
/// line-oriented tools see a complete last line.
fn json_response(status: StatusCode, value: &Value, head: bool) -> HttpResponse {
    let body = (!head).then(|| {
        let mut bytes = serde_json::to_vec(value).expect("JSON values serialise");
        bytes.push(b'\n');
        bytes
    });
    with_headers(status, body)
}

/// `{"errors": [...]}` with the status `classify` chose.
pub fn error(error: &Error, head: bool) -> HttpResponse {
    let (status, messages) = classify(error);
    let mut response = json_response(status, &json!({ "errors": messages }), head);
    if let Some(seconds) = super::error::retry_after(error) {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(seconds),
        );
    }
    response
}

fn not_found(head: bool) -> HttpResponse {
    json_response(StatusCode::NOT_FOUND, &json!({"errors": []}), head)
}

/// Encodes a handler's response.
pub fn encode(
    request_id: &str,
    operation: Operation,
    response: Response,
    head: bool,
) -> HttpResponse {
    if let Some(text) = response.text {
        let mut http = with_headers(StatusCode::OK, (!head).then(|| text.into_bytes()));
        http.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return http;
    }
    if let Some(raw) = &response.raw {
        let status = StatusCode::from_u16(response.status.unwrap_or(200)).unwrap_or(StatusCode::OK);
        return json_response(status, raw, head);
    }
    if operation == Operation::List {
        let has_keys = response
            .data
            .as_ref()
            .and_then(|d| d.get("keys"))
            .and_then(Value::as_array)
            .map(|k| !k.is_empty())
            .unwrap_or(false);
        // An empty list is a 404 in Vault; clients rely on it.
        if !has_keys {
            return not_found(head);
        }
    }
    if response.is_empty() {
        return match operation {
            Operation::Read | Operation::List => not_found(head),
            Operation::Write | Operation::Delete => with_headers(
                StatusCode::from_u16(response.status.unwrap_or(204))
                    .unwrap_or(StatusCode::NO_CONTENT),
                None,
            ),
        };
    }
    let (lease_id, renewable, lease_duration) = match &response.secret {
        Some(s) => (s.lease_id.clone(), s.renewable, s.ttl),
        None => (String::new(), false, 0),
    };
    let mut body = Map::new();
    body.insert("request_id".into(), json!(request_id));
    body.insert("lease_id".into(), json!(lease_id));
    body.insert("renewable".into(), json!(renewable));
    body.insert("lease_duration".into(), json!(lease_duration));
    body.insert(
        "data".into(),
        response
            .data
            .clone()
            .map(Value::Object)
            .unwrap_or(Value::Null),
    );
    body.insert("wrap_info".into(), Value::Null);
    body.insert(
        "warnings".into(),
        if response.warnings.is_empty() {
            Value::Null
        } else {
            json!(response.warnings)
        },
    );
    body.insert("auth".into(), response.auth.clone().unwrap_or(Value::Null));
    if response.data_at_top_level {
        if let Some(data) = &response.data {
            for (k, v) in data {
                body.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    let status = StatusCode::from_u16(response.status.unwrap_or(200)).unwrap_or(StatusCode::OK);
    json_response(status, &Value::Object(body), head)
}
