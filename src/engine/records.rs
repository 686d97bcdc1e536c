//! What the engine stores, under typed keys below its mount's prefix.
//!
//! Records hold passwords; the storage barrier encrypts every value, and
//! `Debug` output redacts them.

use serde::{Deserialize, Serialize};

use crate::postgres::{ChannelBinding, ClientIdentity, SslMode};

/// Storage keys, all below the mount's private prefix.
pub mod keys {
    pub fn cluster(prefix: &str, name: &str) -> String {
        format!("{prefix}cluster/{name}")
    }
    pub fn clusters(prefix: &str) -> String {
        format!("{prefix}cluster/")
    }
    pub fn database(prefix: &str, cluster: &str, name: &str) -> String {
        format!("{prefix}database/{cluster}/{name}")
    }
    pub fn databases(prefix: &str, cluster: &str) -> String {
        format!("{prefix}database/{cluster}/")
    }
    pub fn role(prefix: &str, name: &str) -> String {
        format!("{prefix}role/{name}")
    }
    pub fn roles(prefix: &str) -> String {
        format!("{prefix}role/")
    }
    pub fn metadata(prefix: &str, id: &str) -> String {
        // Database ids hold a slash; `%` keeps them one key below the folder.
        format!("{prefix}metadata/{}", id.replace('/', "%"))
    }
    pub fn metadata_folder(prefix: &str) -> String {
        format!("{prefix}metadata/")
    }
    pub fn metadata_id(key_name: &str) -> String {
        key_name.replace('%', "/")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Registration started; the pending rotation decides how it ended.
    Registering,
    Active,
    Disabled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Registering => "registering",
            State::Active => "active",
            State::Disabled => "disabled",
        }
    }
}

/// New passwords written down before PostgreSQL is changed, so a crash at any
/// point leaves a password that works.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingRotation {
    pub root_password: String,
    pub management_role: String,
    pub management_password: String,
    /// Registration creates the management role in the same transaction.
    pub creates_management_role: bool,
}

#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterRecord {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub username: String,
    /// The root password that works now.
    pub password: String,
    /// Earlier root passwords, newest first (a restored copy may still use one).
    #[serde(default)]
    pub password_history: Vec<String>,
    pub management_role: String,
    pub management_password: String,
    /// The server's `system_identifier` (see [`super::identity`]); `None`
    /// in records from before it was kept.
    #[serde(default)]
    pub system_identifier: Option<String>,
    pub ssl_mode: SslMode,
    pub ssl_root_cert: Option<String>,
    /// Client certificate (PEM) for servers that ask for one.
    #[serde(default)]
    pub ssl_cert: Option<String>,
    /// Its private key (PEM); shown only with sudo.
    #[serde(default)]
    pub ssl_key: Option<String>,
    #[serde(default)]
    pub channel_binding: ChannelBinding,
    pub max_open_connections: u32,
    pub max_idle_connections: u32,
    pub max_connection_lifetime: u64,
    pub state: State,
    /// Bumped whenever connection settings or passwords change; pools built
    /// for an older generation are replaced.
    pub generation: u64,
    pub pending: Option<PendingRotation>,
    pub created_at: String,
    pub updated_at: String,
    pub disabled_at: Option<String>,
}

impl ClusterRecord {
    /// The client certificate and key, when both are stored.
    pub fn client_identity(&self) -> Option<ClientIdentity> {
        match (&self.ssl_cert, &self.ssl_key) {
            (Some(cert), Some(key)) => Some(ClientIdentity {
                cert_pem: cert.clone(),
                key_pem: key.clone(),
            }),
            _ => None,
        }
    }
}

impl std::fmt::Debug for ClusterRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRecord")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("state", &self.state)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatabaseRecord {
    pub cluster: String,
    pub name: String,
    pub objects_owner_role: String,
    /// pgsecrets created the database (rather than adopting it).
    pub created_db: bool,
    pub initialized: bool,
    pub state: State,
    pub created_at: String,
    pub disabled_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoleRecord {
    pub name: String,
    pub default_ttl: u64,
    pub max_ttl: u64,
    pub creation_statements: Vec<String>,
    pub revocation_statements: Vec<String>,
    #[serde(default)]
    pub username_template: Option<String>,
    #[serde(default = "default_password_length")]
    pub password_length: usize,
    #[serde(default = "default_scram_iterations")]
    pub password_scram_iterations: u32,
    pub created_at: String,
    pub updated_at: String,
}

pub const DEFAULT_PASSWORD_LENGTH: usize = 32;
pub const MIN_PASSWORD_LENGTH: usize = 20;
pub const MAX_PASSWORD_LENGTH: usize = 100;

fn default_password_length() -> usize {
    DEFAULT_PASSWORD_LENGTH
}

fn default_scram_iterations() -> u32 {
    crate::postgres::scram::DEFAULT_ITERATIONS
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
