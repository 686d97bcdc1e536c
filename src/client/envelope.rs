//! The JSON envelope every Vault answer comes in (VAULT-WIRE §2.2).
//!
//! Typed where callers look (`lease_id`, `data`, `auth`, ...); every other
//! key is kept in `other`, so serialising an [`Envelope`] gives back what
//! the server sent (a body that is not an envelope, such as `sys/health`,
//! lands entirely in `other`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A Vault response: `{request_id, lease_id, renewable, lease_duration, data, wrap_info, warnings, auth, ...}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    pub request_id: String,
    /// `""` unless the answer is a leased secret (credentials).
    #[serde(default)]
    pub lease_id: String,
    #[serde(default)]
    pub renewable: bool,
    /// Seconds.
    #[serde(default)]
    pub lease_duration: u64,
    #[serde(default)]
    pub data: Option<Map<String, Value>>,
    #[serde(default)]
    pub wrap_info: Option<Value>,
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
    /// Present when a token was created or renewed.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Every other top-level key (`mount_type`, `sys/mounts`' top-level copies, ...).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The `auth` block of token create and renew answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Auth {
    #[serde(default)]
    pub client_token: String,
    #[serde(default)]
    pub accessor: String,
    #[serde(default)]
    pub policies: Vec<String>,
    #[serde(default)]
    pub token_policies: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_policies: Option<Vec<String>>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// Seconds; 0 for a token that never expires.
    #[serde(default)]
    pub lease_duration: u64,
    #[serde(default)]
    pub renewable: bool,
    /// `entity_id`, `token_type`, `orphan`, `num_uses`, ...
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Envelope {
    /// A string in `data`.
    pub fn data_str(&self, key: &str) -> Option<&str> {
        self.data.as_ref()?.get(key)?.as_str()
    }

    /// A value in `data`.
    pub fn data_value(&self, key: &str) -> Option<&Value> {
        self.data.as_ref()?.get(key)
    }

    /// The keys of a list answer (`data.keys`), in the server's order.
    pub fn keys(&self) -> Vec<String> {
        self.data_value("keys")
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The warnings, empty when there are none.
    pub fn warnings(&self) -> &[String] {
        self.warnings.as_deref().unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_envelope_round_trips_with_its_unknown_keys() {
        let body = json!({
            "request_id": "r", "lease_id": "database/creds/a/b/c/x", "renewable": true,
            "lease_duration": 3600, "data": {"username": "v-app-1", "port": 5432},
            "wrap_info": null, "warnings": null, "auth": null, "mount_type": "database"
        });
        let e: Envelope = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(e.data_str("username"), Some("v-app-1"));
        assert_eq!(e.lease_duration, 3600);
        assert_eq!(serde_json::to_value(&e).unwrap(), body);
    }

    #[test]
    fn a_body_that_is_not_an_envelope_is_kept_whole() {
        let body = json!({"initialized": true, "sealed": false});
        let e: Envelope = serde_json::from_value(body).unwrap();
        assert_eq!(e.other["sealed"], false);
        assert!(e.data.is_none());
    }

    #[test]
    fn list_keys_are_read_from_data() {
        let e: Envelope = serde_json::from_value(json!({"data": {"keys": ["a", "b/"]}})).unwrap();
        assert_eq!(e.keys(), vec!["a", "b/"]);
    }
}
