//! The contract between the router and the secrets engines it mounts (as
//! OpenBao's `logical.Backend` and `BackendConfig`): a mount's entry and
//! settings, and the backend serving it, a route table and the live TTL
//! settings the engine reads. Plain types: the router dispatches into a
//! backend, and an engine builds one, without either knowing the other.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use super::Route;
use crate::random;

/// Lease TTL settings of a mount (`sys/mounts/<p>/tune`); 0 = system default.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountConfig {
    pub default_lease_ttl: u64,
    pub max_lease_ttl: u64,
}

/// The other settings Vault clients give a mount and read back: listing
/// visibility (for `sys/internal/ui/mounts`), and keys kept for the audit
/// and header features of Vault (stored and shown, not acted on until
/// pgsecrets has those features). Absent in tables written before them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct MountSettings {
    /// `""`, `"unauth"` (listed without a token) or `"hidden"`.
    pub listing_visibility: String,
    pub audit_non_hmac_request_keys: Vec<String>,
    pub audit_non_hmac_response_keys: Vec<String>,
    pub passthrough_request_headers: Vec<String>,
    pub allowed_response_headers: Vec<String>,
}

impl MountSettings {
    /// The list-valued settings, by their Vault names.
    pub const LIST_KEYS: [&'static str; 4] = [
        "audit_non_hmac_request_keys",
        "audit_non_hmac_response_keys",
        "passthrough_request_headers",
        "allowed_response_headers",
    ];

    /// Each list-valued setting with its Vault name, in [`Self::LIST_KEYS`]'s order.
    pub fn lists(&self) -> [(&'static str, &Vec<String>); 4] {
        let [a, b, c, d] = Self::LIST_KEYS;
        [
            (a, &self.audit_non_hmac_request_keys),
            (b, &self.audit_non_hmac_response_keys),
            (c, &self.passthrough_request_headers),
            (d, &self.allowed_response_headers),
        ]
    }

    /// The list-valued setting named `key` (one of [`Self::LIST_KEYS`]).
    pub fn list_mut(&mut self, key: &str) -> Option<&mut Vec<String>> {
        match key {
            "audit_non_hmac_request_keys" => Some(&mut self.audit_non_hmac_request_keys),
            "audit_non_hmac_response_keys" => Some(&mut self.audit_non_hmac_response_keys),
            "passthrough_request_headers" => Some(&mut self.passthrough_request_headers),
            "allowed_response_headers" => Some(&mut self.allowed_response_headers),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MountEntry {
    /// With a trailing slash: `database/`.
    pub path: String,
    /// Engine type: `database`, or `system`/`token` for built-ins.
    pub kind: String,
    pub description: String,
    pub accessor: String,
    pub uuid: String,
    pub options: Option<BTreeMap<String, String>>,
    pub config: MountConfig,
    #[serde(default)]
    pub settings: MountSettings,
    pub local: bool,
    pub seal_wrap: bool,
}

impl MountEntry {
    pub fn new(path: &str, kind: &str, description: &str) -> MountEntry {
        let accessor_hex: String = {
            let mut b = [0u8; 4];
            random::fill(&mut b);
            b.iter().map(|x| format!("{x:02x}")).collect()
        };
        MountEntry {
            path: path.to_string(),
            kind: kind.to_string(),
            description: description.to_string(),
            // Vault's form: `database_1a2b3c4d`, `auth_token_1a2b3c4d`.
            accessor: if path.starts_with("auth/") {
                format!("auth_{kind}_{accessor_hex}")
            } else {
                format!("{kind}_{accessor_hex}")
            },
            uuid: random::uuid(),
            options: None,
            config: MountConfig::default(),
            settings: MountSettings::default(),
            local: false,
            seal_wrap: false,
        }
    }

    /// Storage prefix private to this mount's engine.
    pub fn storage_prefix(&self) -> String {
        format!("logical/{}/", self.uuid)
    }
}

/// A running backend: its route table, and the live TTL settings it reads
/// (tuning the mount updates them in place). `E` is the error its handlers
/// return; the router holds backends of one error type ([`Backend::map_err`]).
pub struct Backend<E> {
    pub routes: Vec<Route<E>>,
    pub tuning: Option<Arc<RwLock<MountConfig>>>,
}

impl<E: 'static> Backend<E> {
    /// The first route whose pattern matches `path` (relative to the mount).
    pub fn route(&self, path: &str) -> Option<(&Route<E>, BTreeMap<String, String>)> {
        self.routes
            .iter()
            .find_map(|r| r.captures(path).map(|caps| (r, caps)))
    }

    /// The same backend, its handlers' errors converted by `f`.
    pub fn map_err<F: 'static>(self, f: fn(E) -> F) -> Backend<F> {
        Backend {
            routes: self.routes.into_iter().map(|r| r.map_err(f)).collect(),
            tuning: self.tuning,
        }
    }
}
