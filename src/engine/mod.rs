//! The `database` secrets engine: one instance per mount.
//!
//! This file holds the engine's shared state, its error enum and the
//! assembly of the route table; each route group lives in its own file.
//! The engine stores its data under its mount's private storage prefix and
//! reaches PostgreSQL only through [`crate::postgres`].

pub mod clone;
pub mod cluster;
pub mod creds;
pub mod database;
pub mod fault;
pub mod gc;
pub mod grants;
pub mod identity;
pub mod info;
pub mod metadata;
pub mod names;
pub mod owner_role;
pub mod pools;
pub mod reconcile;
pub mod records;
pub mod revocation;
pub mod roles;
pub mod rotate_root;
pub mod rotation;
pub mod settings;
pub mod template;
pub mod username;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::lease::LeaseManager;
use crate::logical::{Backend, MountConfig, MountEntry, Route};
use crate::postgres;
use crate::storage::Storage;
use records::{keys, ClusterRecord, DatabaseRecord, RoleRecord};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown cluster {name:?}")]
    ClusterNotFound { name: String },
    #[error("cluster {name:?} is disabled")]
    ClusterDisabled { name: String },
    #[error("cluster name {name:?} is already registered for {host}:{port}; pick another name")]
    ClusterNameTaken {
        name: String,
        host: String,
        port: u16,
    },
    #[error("PostgreSQL at {host}:{port} is the server cluster {cluster:?} already holds; one server has one registration: use {cluster:?}, or disable and purge it first")]
    ServerTaken {
        host: String,
        port: u16,
        cluster: String,
    },
    #[error("user {user:?} is the {what} of cluster {cluster:?}, which pgsecrets manages; register with a root user of a server no cluster holds")]
    RoleManaged {
        user: String,
        what: &'static str,
        cluster: String,
    },
    #[error("cannot tell whether this is the PostgreSQL server of cluster {cluster:?} (same system identifier): {reason}; retry when {cluster:?} is reachable, or purge it")]
    ServerUnverifiable { cluster: String, reason: String },
    #[error(
        "another password rotation of user {user:?} on this PostgreSQL server is running; retry"
    )]
    RotationBusy { user: String },
    #[error("unknown database {database:?} in cluster {cluster:?}")]
    DatabaseNotFound { cluster: String, database: String },
    #[error("database {database:?} in cluster {cluster:?} is disabled")]
    DatabaseDisabled { cluster: String, database: String },
    #[error("database {database:?} already exists in cluster {cluster:?}; write with create_db=false to adopt it")]
    DatabaseExists { cluster: String, database: String },
    #[error("database {database:?} does not exist in cluster {cluster:?}; write with create_db=true to create it")]
    DatabaseMissing { cluster: String, database: String },
    #[error("unknown role: {name}")]
    RoleNotFound { name: String },
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("missing required field {field:?} to register a new cluster")]
    MissingField { field: &'static str },
    #[error("user {user:?} cannot create roles: give a superuser or a role with CREATEROLE")]
    RootCannotCreateRoles { user: String },
    #[error(
        "user {user:?} cannot create databases: give it CREATEDB or write with create_db=false"
    )]
    RootCannotCreateDatabases { user: String },
    #[error("PostgreSQL at {host}:{port} refused the login of user {user:?}: {reason}")]
    RootCredentialsRejected {
        host: String,
        port: u16,
        user: String,
        reason: String,
    },
    #[error("the stored credentials of cluster {name:?} no longer work; it stays disabled")]
    StoredCredentialsRejected { name: String },
    #[error("cannot reach PostgreSQL at {host}:{port}: {reason}")]
    Unreachable {
        host: String,
        port: u16,
        reason: String,
    },
    #[error("timed out reaching PostgreSQL at {host}:{port}")]
    Timeout { host: String, port: u16 },
    #[error("cluster {name:?} has a password rotation whose outcome is not known yet ({reason}); retry when the cluster is reachable")]
    RotationUnresolved { name: String, reason: String },
    #[error("{what} is still active; disable it before purging")]
    NotDisabled { what: String },
    /// A pool closed under a request: its cluster or database was disabled
    /// meanwhile. Callers that can tell which say so instead.
    #[error("cluster {cluster:?} or its database {database:?} was disabled while the request ran")]
    PoolClosed { cluster: String, database: String },
    #[error("no free connection to cluster {name:?} within {seconds}s")]
    Busy { name: String, seconds: u64 },
    #[error("PostgreSQL refused the operation: {message} (SQLSTATE {code})")]
    Refused { code: String, message: String },
    #[error("TLS to PostgreSQL failed: {0}")]
    Tls(String),
    /// The TLS the cluster's `ssl_mode` asks for did not come about: no
    /// TLS on the server, a refused certificate, a failed handshake (the
    /// PostgreSQL layer's error says which and what to change).
    #[error(transparent)]
    TlsRefused(postgres::Error),
    #[error("refused to send a password to PostgreSQL at {host}:{port}: {reason}")]
    InsecureAuth {
        host: String,
        port: u16,
        reason: String,
    },
    #[error("PostgreSQL failed: {0}")]
    Postgres(String),
    #[error("{what} still has {count} outstanding lease(s): wait for their revocation or use sys/leases/revoke-force")]
    HasLeases { what: String, count: usize },
    /// The objects-owner role breaks the no-privilege rule (see `owner_role`).
    #[error("{message}")]
    OwnerRefused { message: String },
    /// A creation statement's GRANT, run as the objects-owner role, was
    /// refused on tables that role may not grant on; the message names them
    /// and their owners (see `grants`).
    #[error("{message}")]
    GrantRefused { message: String },
    /// `template0`/`template1`: never created, adopted or initialised.
    #[error("database {database:?} is one of PostgreSQL's template databases: every new database is copied from template1, so an owner role's grants there would spread to all of them, and a pgsecrets connection held to it would make every CREATE DATABASE fail; pick another database")]
    TemplateDatabase { database: String },
    /// The operation is allowed on the path, but this use of it is a
    /// decision the policy must grant `sudo` for; the message names it.
    #[error("permission denied: {message}")]
    SudoRequired { message: String },
    #[error("stopped at fault point {point}")]
    Fault { point: &'static str },
    #[error(transparent)]
    Storage(#[from] crate::storage::Error),
    #[error(transparent)]
    Lease(#[from] crate::lease::Error),
}

impl Error {
    /// Whether the error says PostgreSQL cannot be reached or serve now
    /// (a retry may succeed), rather than refusing what was asked: no
    /// connection, a timeout, a busy pool, a connection lost mid-way, or a
    /// server error of the classes "connection exception" (08),
    /// "insufficient resources" (53) or "operator intervention" (57:
    /// shutting down, restarting).
    /// The `kind` label of `pgsecrets_postgres_errors` for an error that
    /// came from (or on the way to) PostgreSQL; `None` for the others.
    pub fn postgres_kind(&self) -> Option<&'static str> {
        match self {
            Error::Unreachable { .. } => Some("unreachable"),
            Error::Timeout { .. } => Some("timeout"),
            Error::Busy { .. } => Some("busy"),
            Error::Tls(_) | Error::TlsRefused(_) => Some("tls"),
            Error::Postgres(_) => Some("connection"),
            Error::Refused { .. } => Some("refused"),
            _ => None,
        }
    }

    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Unreachable { .. }
            | Error::Timeout { .. }
            | Error::Busy { .. }
            | Error::RotationUnresolved { .. }
            | Error::Postgres(_)
            | Error::Storage(_) => true,
            Error::Refused { code, .. } => {
                code.starts_with("08") || code.starts_with("53") || code.starts_with("57")
            }
            Error::Lease(e) => matches!(e, crate::lease::Error::Unavailable(_)),
            _ => false,
        }
    }

    /// Reclassifies a PostgreSQL error met while talking to `record`'s cluster.
    pub fn from_pg(error: postgres::Error) -> Error {
        match error {
            postgres::Error::Unreachable { host, port, reason } => {
                Error::Unreachable { host, port, reason }
            }
            postgres::Error::Timeout { host, port } => Error::Timeout { host, port },
            postgres::Error::AuthFailed { user, reason } => Error::Postgres(format!(
                "PostgreSQL rejected the stored credentials of {user:?}: {reason}"
            )),
            postgres::Error::Tls(reason) => Error::Tls(reason),
            e @ (postgres::Error::NoTls { .. }
            | postgres::Error::Certificate { .. }
            | postgres::Error::Handshake { .. }) => Error::TlsRefused(e),
            postgres::Error::InsecureAuth { host, port, reason } => {
                Error::InsecureAuth { host, port, reason }
            }
            postgres::Error::Sql { code, message } => Error::Refused { code, message },
            postgres::Error::PoolTimeout { seconds } => Error::Busy {
                name: String::new(),
                seconds,
            },
            postgres::Error::Connection(reason) => Error::Postgres(reason),
        }
    }
}

impl From<postgres::Error> for Error {
    fn from(error: postgres::Error) -> Error {
        Error::from_pg(error)
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Error {
        match error.as_db_error() {
            Some(db) => Error::Refused {
                code: db.code().code().to_string(),
                message: db.message().to_string(),
            },
            None => Error::Postgres(error.to_string()),
        }
    }
}

/// How an engine treats the PostgreSQL servers registered with it.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineOptions {
    /// Registration keeps the root password the operator gave instead of
    /// rotating it. Set by `server --dev`, whose storage is in memory: a
    /// rotated password kept only there would be gone when the server
    /// stops, and with it the operator's way into their own PostgreSQL.
    pub keep_root_password: bool,
}

/// What every route group of one mount shares.
pub struct Engine {
    pub storage: Storage,
    pub options: EngineOptions,
    /// The mount's private storage prefix (`logical/<uuid>/`).
    pub prefix: String,
    pub mount: MountEntry,
    /// The mount's live TTL settings (`sys/mounts/<path>/tune`).
    pub tuning: Arc<RwLock<MountConfig>>,
    pub leases: Arc<LeaseManager>,
    /// The server's metrics: users created, revoked, renewed; PostgreSQL errors.
    pub telemetry: crate::telemetry::Telemetry,
    pub pools: pools::Pools,
    /// One lock per cluster name, held while its configuration changes, so
    /// two writes cannot rotate the same passwords at once. Issuing
    /// credentials never takes it.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Held from a registration's (or clone's) identity check until its
    /// record is stored, so two cannot both find the server free.
    registrations: tokio::sync::Mutex<()>,
}

impl Engine {
    /// Hands every lease under `creds/<cluster>/` (or `.../<database>/`) to
    /// the lease manager for revocation now; returns how many.
    pub async fn revoke_leases_of(
        &self,
        cluster: &str,
        database: Option<&str>,
    ) -> Result<usize, Error> {
        let prefix = match database {
            Some(db) => format!("{}creds/{cluster}/{db}", self.mount.path),
            None => format!("{}creds/{cluster}", self.mount.path),
        };
        Ok(self.leases.revoke_prefix(&prefix, false).await?)
    }

    /// Outstanding leases under a cluster (or one of its databases).
    pub async fn lease_count(&self, cluster: &str, database: Option<&str>) -> Result<usize, Error> {
        let prefix = match database {
            Some(db) => format!("{}creds/{cluster}/{db}", self.mount.path),
            None => format!("{}creds/{cluster}", self.mount.path),
        };
        Ok(self.leases.leases_under(&prefix).await?.len())
    }

    pub fn lock_for(&self, cluster: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().expect("cluster locks");
        Arc::clone(locks.entry(cluster.to_string()).or_default())
    }

    /// Held across [`identity::check_server_is_new`] and the store of the
    /// record it let through. Taken after the cluster's own lock.
    pub async fn registration_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.registrations.lock().await
    }

    pub async fn load_cluster(&self, name: &str) -> Result<Option<ClusterRecord>, Error> {
        Ok(self
            .storage
            .get_json(&keys::cluster(&self.prefix, name))
            .await?)
    }

    pub async fn save_cluster(&self, record: &ClusterRecord) -> Result<(), Error> {
        Ok(self
            .storage
            .put_json(&keys::cluster(&self.prefix, &record.name), record)
            .await?)
    }

    /// An active cluster, with any unfinished rotation resolved first.
    pub async fn active_cluster(&self, name: &str) -> Result<ClusterRecord, Error> {
        let record = self
            .load_cluster(name)
            .await?
            .ok_or_else(|| Error::ClusterNotFound { name: name.into() })?;
        let record = if record.pending.is_some() {
            let lock = self.lock_for(name);
            let _guard = lock.lock().await;
            rotation::resolve(self, record)
                .await?
                .ok_or_else(|| Error::ClusterNotFound { name: name.into() })?
        } else {
            record
        };
        match record.state {
            records::State::Active => Ok(record),
            records::State::Disabled => Err(Error::ClusterDisabled { name: name.into() }),
            records::State::Registering => Err(Error::ClusterNotFound { name: name.into() }),
        }
    }

    /// Every registered cluster (unfinished registrations left out).
    pub async fn clusters(&self) -> Result<Vec<ClusterRecord>, Error> {
        let mut out = Vec::new();
        for name in self.storage.list(&keys::clusters(&self.prefix)).await? {
            if let Some(record) = self.load_cluster(&name).await? {
                if record.state != records::State::Registering {
                    out.push(record);
                }
            }
        }
        Ok(out)
    }

    /// Every cluster record, unfinished registrations included (they may
    /// hold a server too).
    pub async fn all_cluster_records(&self) -> Result<Vec<ClusterRecord>, Error> {
        let mut out = Vec::new();
        for name in self.storage.list(&keys::clusters(&self.prefix)).await? {
            if let Some(record) = self.load_cluster(&name).await? {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Every database record of a cluster.
    pub async fn databases(&self, cluster: &str) -> Result<Vec<DatabaseRecord>, Error> {
        let mut out = Vec::new();
        for name in self
            .storage
            .list(&keys::databases(&self.prefix, cluster))
            .await?
        {
            if let Some(db) = self.load_database(cluster, &name).await? {
                out.push(db);
            }
        }
        Ok(out)
    }

    pub async fn load_database(
        &self,
        cluster: &str,
        name: &str,
    ) -> Result<Option<DatabaseRecord>, Error> {
        Ok(self
            .storage
            .get_json(&keys::database(&self.prefix, cluster, name))
            .await?)
    }

    pub async fn save_database(&self, record: &DatabaseRecord) -> Result<(), Error> {
        Ok(self
            .storage
            .put_json(
                &keys::database(&self.prefix, &record.cluster, &record.name),
                record,
            )
            .await?)
    }

    pub async fn load_role(&self, name: &str) -> Result<Option<RoleRecord>, Error> {
        Ok(self
            .storage
            .get_json(&keys::role(&self.prefix, name))
            .await?)
    }

    /// Resolves every cluster's unfinished rotation (run once at start).
    pub async fn recover(&self) {
        let names = match self.storage.list(&keys::clusters(&self.prefix)).await {
            Ok(names) => names,
            Err(e) => {
                tracing::error!(error = %e, "cannot list clusters for recovery");
                return;
            }
        };
        for name in names {
            match self.load_cluster(&name).await {
                Ok(Some(record)) if record.pending.is_some() => {
                    let lock = self.lock_for(&name);
                    let _guard = lock.lock().await;
                    match rotation::resolve(self, record).await {
                        Ok(_) => {
                            tracing::info!(cluster = %name, "resolved an unfinished password rotation")
                        }
                        Err(e) => {
                            tracing::warn!(cluster = %name, error = %e, "unfinished password rotation not resolved yet")
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!(cluster = %name, error = %e, "cannot load cluster"),
            }
        }
    }
}

/// Builds the engine's backend for one mount, connects it to the lease
/// manager and resolves unfinished rotations in the background.
/// Records one call to PostgreSQL on behalf of a lease (Vault's
/// `vault_database_<Op>` summary, or its `_error` counter), and a
/// PostgreSQL error by cluster and kind.
pub fn measured<T>(
    telemetry: &crate::telemetry::Telemetry,
    (name, error_name): (&'static str, &'static str),
    cluster: &str,
    started: std::time::Instant,
    result: &Result<T, Error>,
) {
    match result {
        Ok(_) => telemetry.measure(name, started),
        Err(e) => {
            telemetry.count(error_name, &[]);
            if let Some(kind) = e.postgres_kind() {
                telemetry.count(
                    crate::telemetry::name::POSTGRES_ERRORS,
                    &[("cluster", cluster), ("kind", kind)],
                );
            }
        }
    }
}

pub fn backend(
    storage: Storage,
    mount: &MountEntry,
    leases: Arc<LeaseManager>,
    options: EngineOptions,
    telemetry: crate::telemetry::Telemetry,
) -> Backend<Error> {
    let tuning = Arc::new(RwLock::new(mount.config));
    let engine = Arc::new(Engine {
        storage,
        options,
        prefix: mount.storage_prefix(),
        mount: mount.clone(),
        tuning: Arc::clone(&tuning),
        leases,
        telemetry,
        pools: pools::Pools::default(),
        locks: Mutex::new(HashMap::new()),
        registrations: tokio::sync::Mutex::new(()),
    });
    revocation::register(&engine);
    let recovering = Arc::clone(&engine);
    tokio::spawn(async move { recovering.recover().await });
    let mut routes: Vec<Route<Error>> = Vec::new();
    routes.extend(cluster::routes(&engine));
    routes.extend(database::routes(&engine));
    routes.extend(roles::routes(&engine));
    routes.extend(creds::routes(&engine));
    routes.extend(reconcile::routes(&engine));
    routes.extend(rotate_root::routes(&engine));
    routes.extend(clone::routes(&engine));
    routes.extend(gc::routes(&engine));
    routes.extend(metadata::routes(&engine));
    routes.extend(info::routes(&engine));
    Backend {
        routes,
        tuning: Some(tuning),
    }
}
