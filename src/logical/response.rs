//! What a handler returns; the wire layer turns it into Vault's envelope.

use serde_json::{Map, Value};

/// A leased secret's lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Secret {
    pub lease_id: String,
    pub ttl: u64,
    pub renewable: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Response {
    pub data: Option<Map<String, Value>>,
    pub warnings: Vec<String>,
    pub secret: Option<Secret>,
    /// The auth block of token create/renew.
    pub auth: Option<Value>,
    /// Copy `data`'s keys to the top level too (Vault does this for some sys routes).
    pub data_at_top_level: bool,
    /// A body sent as is, without the envelope (OpenAPI, health).
    pub raw: Option<Value>,
    /// A status other than the default 200/204.
    pub status: Option<u16>,
    /// A plain-text body (the Prometheus format), sent as is.
    pub text: Option<String>,
}

impl Response {
    /// Nothing to return: 204 for writes and deletes.
    pub fn empty() -> Response {
        Response::default()
    }

    pub fn data(data: Map<String, Value>) -> Response {
        Response {
            data: Some(data),
            ..Response::default()
        }
    }

    /// Builds a response from a `json!({...})` object.
    pub fn json(value: Value) -> Response {
        match value {
            Value::Object(map) => Response::data(map),
            other => {
                let mut map = Map::new();
                map.insert("value".into(), other);
                Response::data(map)
            }
        }
    }

    /// A list response; with no keys the wire layer answers 404 as Vault does.
    pub fn list(keys: Vec<String>) -> Response {
        let mut map = Map::new();
        map.insert("keys".into(), Value::from(keys));
        Response::data(map)
    }

    pub fn list_with_info(keys: Vec<String>, key_info: Map<String, Value>) -> Response {
        let mut response = Response::list(keys);
        if let Some(data) = response.data.as_mut() {
            data.insert("key_info".into(), Value::Object(key_info));
        }
        response
    }

    pub fn raw(status: u16, body: Value) -> Response {
        Response {
            raw: Some(body),
            status: Some(status),
            ..Response::default()
        }
    }

    /// A plain-text body, sent as is with status 200.
    pub fn text(body: String) -> Response {
        Response {
            text: Some(body),
            ..Response::default()
        }
    }

    pub fn with_warning(mut self, warning: impl Into<String>) -> Response {
        self.warnings.push(warning.into());
        self
    }

    /// Whether the response carries nothing at all (so a write answers 204).
    pub fn is_empty(&self) -> bool {
        self.data.is_none()
            && self.warnings.is_empty()
            && self.secret.is_none()
            && self.auth.is_none()
            && self.raw.is_none()
    }
}
