//! The records an audit device writes: Vault's shape, one JSON object per
//! line, `request` before the handler runs and `response` after it. An
//! [`Entry`] holds the values in clear; each device seals its own copy
//! ([`Entry::sealed`]) with its key, so no two devices share a hash key and
//! `log_raw` is a device's choice.

use serde_json::{json, Map, Value};

use super::hash::Hasher;

/// Who made the request, as the token store knows them.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub client_token: Option<String>,
    pub accessor: Option<String>,
    pub display_name: String,
    pub policies: Vec<String>,
    pub token_type: String,
    /// RFC 3339.
    pub token_issue_time: Option<String>,
    pub token_ttl: Option<u64>,
}

/// The request as routed.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub id: String,
    /// Vault's name: `read`, `update`, `delete`, `list`.
    pub operation: String,
    pub path: String,
    pub data: Map<String, Value>,
    pub remote_address: Option<String>,
    pub remote_port: Option<u16>,
    pub mount_point: Option<String>,
    pub mount_type: Option<String>,
    pub mount_accessor: Option<String>,
    /// The mount's `audit_non_hmac_request_keys`.
    pub non_hmac_keys: Vec<String>,
}

/// What the handler answered.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub data: Option<Map<String, Value>>,
    pub lease_id: Option<String>,
    /// The auth block of a token create or renew.
    pub auth: Option<Value>,
    pub warnings: Vec<String>,
    /// The mount's `audit_non_hmac_response_keys`.
    pub non_hmac_keys: Vec<String>,
}

/// One record, in clear until a device seals it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: &'static str,
    pub auth: Auth,
    pub request: Request,
    pub response: Option<Response>,
    pub error: Option<String>,
}

impl Entry {
    /// The line a device writes enabling it (Vault's test message).
    pub fn test_message(id: &str) -> Entry {
        Entry {
            kind: "request",
            auth: Auth {
                token_type: "default".into(),
                ..Auth::default()
            },
            request: Request {
                id: id.to_string(),
                operation: "update".into(),
                path: "sys/audit/test".into(),
                ..Request::default()
            },
            response: None,
            error: None,
        }
    }

    /// The record as a device writes it: tokens, accessors (when
    /// `hmac_accessor`) and every string of the data hashed with the
    /// device's key, unless `raw`.
    pub fn sealed(&self, hasher: &Hasher, hmac_accessor: bool, raw: bool) -> Value {
        let mut auth = self.auth_json();
        let mut request = self.request_json();
        let mut response = self
            .response
            .as_ref()
            .map(|r| response_json(r, &self.request));
        if !raw {
            hasher.hash_field(&mut auth, "client_token");
            hasher.hash_field(&mut request, "client_token");
            if hmac_accessor {
                hasher.hash_field(&mut auth, "accessor");
                hasher.hash_field(&mut request, "client_token_accessor");
            }
            if let Some(data) = request.get_mut("data") {
                hasher.hash_value(data, &self.request.non_hmac_keys);
            }
            if let (Some(response), Some(given)) = (response.as_mut(), self.response.as_ref()) {
                if let Some(data) = response.get_mut("data") {
                    hasher.hash_value(data, &given.non_hmac_keys);
                }
                if let Some(auth) = response.get_mut("auth") {
                    hasher.hash_field(auth, "client_token");
                    if hmac_accessor {
                        hasher.hash_field(auth, "accessor");
                    }
                }
            }
        }
        let mut record = Map::new();
        record.insert(
            "time".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                .into(),
        );
        record.insert("type".into(), self.kind.into());
        record.insert("auth".into(), auth);
        record.insert("request".into(), request);
        if let Some(response) = response {
            record.insert("response".into(), response);
        }
        if let Some(error) = &self.error {
            record.insert("error".into(), error.clone().into());
        }
        Value::Object(record)
    }

    fn auth_json(&self) -> Value {
        let a = &self.auth;
        let mut auth = Map::new();
        if let Some(token) = &a.client_token {
            auth.insert("client_token".into(), token.clone().into());
        }
        if let Some(accessor) = &a.accessor {
            auth.insert("accessor".into(), accessor.clone().into());
        }
        if !a.display_name.is_empty() {
            auth.insert("display_name".into(), a.display_name.clone().into());
        }
        if !a.policies.is_empty() {
            auth.insert("policies".into(), json!(a.policies));
            auth.insert("token_policies".into(), json!(a.policies));
        }
        auth.insert("token_type".into(), a.token_type.clone().into());
        if let Some(ttl) = a.token_ttl {
            auth.insert("token_ttl".into(), ttl.into());
        }
        if let Some(time) = &a.token_issue_time {
            auth.insert("token_issue_time".into(), time.clone().into());
        }
        Value::Object(auth)
    }

    fn request_json(&self) -> Value {
        let r = &self.request;
        let mut request = Map::new();
        request.insert("id".into(), r.id.clone().into());
        request.insert("operation".into(), r.operation.clone().into());
        mount_fields(&mut request, r);
        if let Some(token) = &self.auth.client_token {
            request.insert("client_token".into(), token.clone().into());
        }
        if let Some(accessor) = &self.auth.accessor {
            request.insert("client_token_accessor".into(), accessor.clone().into());
        }
        request.insert("namespace".into(), json!({"id": "root"}));
        request.insert("path".into(), r.path.clone().into());
        if !r.data.is_empty() {
            request.insert("data".into(), Value::Object(r.data.clone()));
        }
        if let Some(address) = &r.remote_address {
            request.insert("remote_address".into(), address.clone().into());
        }
        if let Some(port) = r.remote_port {
            request.insert("remote_port".into(), port.into());
        }
        Value::Object(request)
    }
}

fn mount_fields(out: &mut Map<String, Value>, r: &Request) {
    for (key, value) in [
        ("mount_point", &r.mount_point),
        ("mount_type", &r.mount_type),
        ("mount_accessor", &r.mount_accessor),
    ] {
        if let Some(v) = value {
            out.insert(key.into(), v.clone().into());
        }
    }
}

fn response_json(r: &Response, request: &Request) -> Value {
    let mut response = Map::new();
    mount_fields(&mut response, request);
    if let Some(auth) = &r.auth {
        response.insert("auth".into(), auth.clone());
    }
    if let Some(lease_id) = &r.lease_id {
        // Lease ids stay in clear: an operator revokes by them.
        response.insert("secret".into(), json!({ "lease_id": lease_id }));
    }
    if let Some(data) = &r.data {
        response.insert("data".into(), Value::Object(data.clone()));
    }
    if !r.warnings.is_empty() {
        response.insert("warnings".into(), json!(r.warnings));
    }
    Value::Object(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let mut data = Map::new();
        data.insert("password".into(), "hunter2".into());
        data.insert("ttl".into(), "1h".into());
        Entry {
            kind: "response",
            auth: Auth {
                client_token: Some("s.token".into()),
                accessor: Some("acc".into()),
                display_name: "token".into(),
                policies: vec!["default".into()],
                token_type: "service".into(),
                ..Auth::default()
            },
            request: Request {
                id: "r1".into(),
                operation: "read".into(),
                path: "database/creds/a/b/c".into(),
                data: data.clone(),
                ..Request::default()
            },
            response: Some(Response {
                data: Some(data),
                lease_id: Some("database/creds/a/b/c/L1".into()),
                non_hmac_keys: vec!["ttl".into()],
                ..Response::default()
            }),
            error: None,
        }
    }

    #[test]
    fn secrets_are_hashed_and_lease_ids_and_paths_are_not() {
        let h = Hasher::new(b"key");
        let line = entry().sealed(&h, true, false);
        let text = line.to_string();
        for secret in ["hunter2", "s.token", "\"acc\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(line["auth"]["client_token"], h.hash("s.token"));
        assert_eq!(line["request"]["client_token"], h.hash("s.token"));
        assert_eq!(line["response"]["data"]["password"], h.hash("hunter2"));
        assert_eq!(line["response"]["data"]["ttl"], "1h", "a non-HMAC key");
        assert_eq!(line["request"]["data"]["ttl"], h.hash("1h"));
        assert_eq!(
            line["response"]["secret"]["lease_id"],
            "database/creds/a/b/c/L1"
        );
        assert_eq!(line["request"]["path"], "database/creds/a/b/c");
        assert_eq!(line["type"], "response");
    }

    #[test]
    fn accessors_stay_clear_without_hmac_accessor_and_raw_hashes_nothing() {
        let h = Hasher::new(b"key");
        let line = entry().sealed(&h, false, false);
        assert_eq!(line["auth"]["accessor"], "acc");
        let raw = entry().sealed(&h, true, true);
        assert_eq!(raw["response"]["data"]["password"], "hunter2");
    }
}
