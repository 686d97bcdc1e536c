//! HMAC-SHA256 of what an audit record must not show in clear: Vault's
//! `hmac-sha256:<hex>` form, so `sys/audit-hash` lets an operator find a
//! known value in the log without the log holding it.

use ring::hmac;
use serde_json::Value;

/// Keys whose values are never left in clear, whatever a mount's
/// `audit_non_hmac_*_keys` say: a mount tune naming them is refused, and
/// they are hashed even if an older table lists them.
pub const NEVER_CLEAR: [&str; 3] = ["password", "connection_url", "ssl_key"];

/// One device's key.
pub struct Hasher {
    key: hmac::Key,
}

impl Hasher {
    pub fn new(secret: &[u8]) -> Hasher {
        Hasher {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    pub fn hash(&self, input: &str) -> String {
        let tag = hmac::sign(&self.key, input.as_bytes());
        let mut out = String::with_capacity(12 + 64);
        out.push_str("hmac-sha256:");
        for b in tag.as_ref() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// Hashes every string in `value` at any depth; numbers, booleans and
    /// nulls stay, and so do the values of map keys in `keep` (a mount's
    /// non-HMAC keys) unless [`NEVER_CLEAR`] names them.
    pub fn hash_value(&self, value: &mut Value, keep: &[String]) {
        match value {
            Value::String(s) => *s = self.hash(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.hash_value(v, keep)),
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    let clear =
                        keep.iter().any(|k| k == key) && !NEVER_CLEAR.contains(&key.as_str());
                    if !clear {
                        self.hash_value(v, keep);
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// Hashes the string at `key` of `map`, if there is one.
    pub fn hash_field(&self, map: &mut Value, key: &str) {
        if let Some(Value::String(s)) = map.get_mut(key) {
            *s = self.hash(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_at_any_depth_are_hashed_and_the_rest_kept() {
        let h = Hasher::new(b"k");
        let mut v = json!({"password": "p", "n": 5, "nested": {"a": ["b", true, null]},
                           "ttl": "1h"});
        h.hash_value(&mut v, &["ttl".into(), "password".into()]);
        assert_eq!(v["password"], h.hash("p"), "password is never clear");
        assert_eq!(v["n"], 5);
        assert_eq!(v["nested"]["a"][0], h.hash("b"));
        assert_eq!(v["nested"]["a"][1], true);
        assert_eq!(v["ttl"], "1h");
        assert!(h.hash("p").starts_with("hmac-sha256:"));
        assert_eq!(h.hash("p").len(), 12 + 64);
        assert_ne!(Hasher::new(b"other").hash("p"), h.hash("p"));
    }
}
