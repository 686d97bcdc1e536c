//! Built-in `sys/` routes (health, seal status, leader, policies,
//! capabilities) and the `auth/token/` routes. The router adds the mount
//! table and OpenAPI routes to `sys/` itself.

pub mod audit;
pub mod health;
pub mod leases;
pub mod metrics;
pub mod policy;
pub mod token;

use serde::{Deserialize, Serialize};

use crate::auth::{PolicyStore, TokenStore};
use crate::lease::LeaseManager;
use crate::storage::Storage;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {field}: {reason}")]
    InvalidTtl { field: &'static str, reason: String },
    #[error("invalid value {value:?} for query parameter {name:?}: {expected}")]
    BadQueryParameter {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    /// Vault's answer when a token cannot use the mount it asked about.
    #[error("preflight capability check returned 403, please ensure client's policies grant access to path {path:?}")]
    Preflight { path: String },
    #[error("unable to convert given mount config information")]
    MountConfig,
    #[error("invalid listing_visibility {0}")]
    ListingVisibility(String),
    #[error("{key} may not list {name:?}: audit records always hash it")]
    NeverClear { key: &'static str, name: String },
    #[error("metric response format {0:?} unknown: pgsecrets serves format=prometheus")]
    MetricsFormat(String),
    #[error("paths must be supplied")]
    PathsRequired,
    #[error("missing path: every entry of \"paths\" must be a non-empty path")]
    MissingPath,
    #[error("invalid token")]
    InvalidToken,
    // Vault's text, for a missing and an empty policy alike.
    #[error("'policy' parameter not supplied or empty")]
    PolicyTextRequired,
    #[error("missing token: give it in the \"token\" field")]
    TokenRequired,
    #[error("missing accessor: give it in the \"accessor\" field")]
    AccessorRequired,
    #[error("invalid accessor")]
    UnknownAccessor,
    #[error("token not found")]
    TokenNotFound,
    #[error(transparent)]
    Auth(#[from] crate::auth::Error),
    #[error(transparent)]
    Audit(#[from] crate::audit::Error),
    #[error(transparent)]
    Lease(#[from] crate::lease::Error),
    #[error(transparent)]
    Storage(#[from] crate::storage::Error),
}

/// Identity of this pgsecrets installation, created at initialisation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub name: String,
    pub id: String,
}

const CLUSTER_KEY: &str = "core/cluster";

impl ClusterInfo {
    /// Loads the installation's identity, creating it on first start.
    pub async fn load_or_create(storage: &Storage) -> Result<ClusterInfo, crate::storage::Error> {
        if let Some(info) = storage.get_json::<ClusterInfo>(CLUSTER_KEY).await? {
            return Ok(info);
        }
        let id = crate::random::uuid();
        let info = ClusterInfo {
            name: format!("pgsecrets-cluster-{}", &id[..8]),
            id,
        };
        storage.put_json(CLUSTER_KEY, &info).await?;
        Ok(info)
    }
}

/// What the built-in routes read.
pub struct SysState {
    pub storage: Storage,
    pub tokens: TokenStore,
    pub policies: PolicyStore,
    pub leases: std::sync::Arc<LeaseManager>,
    pub audit: crate::audit::Broker,
    pub telemetry: crate::telemetry::Telemetry,
    /// `sys/metrics` needs no token (the listener's
    /// `unauthenticated_metrics_access`).
    pub unauthenticated_metrics: bool,
    pub cluster: ClusterInfo,
    /// When this server became active (RFC 3339), for `sys/leader`.
    pub active_since: String,
}
