//! Storage and its unseal key: opening the configured backend, creating the
//! key at `operator init` (a 0600 file or an environment variable), reading
//! it at every start, and the fresh in-memory storage of dev mode and tests.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;

use super::StartError;
use crate::auth::{PolicyStore, TokenStore};
use crate::config::{Config, SealConfig, StorageConfig};
use crate::storage::{
    self, inmem::InMemBackend, postgresql::PgBackend, sqlite::SqliteBackend, Storage,
};
use crate::sys::ClusterInfo;

/// Opens the configured backend. With `wait`, an unreachable PostgreSQL is
/// retried with capped backoff, each attempt logged, until it answers: a
/// server and its database often start together. (Serving 503 meanwhile,
/// as issue 19 asks, needs the server to bind before its storage opens: not
/// built yet.) Without it (`operator init`, run by a person who wants an
/// answer) one attempt is made.
pub async fn open_backend(
    config: &StorageConfig,
    wait: bool,
) -> Result<Arc<dyn storage::Backend>, StartError> {
    Ok(match config {
        StorageConfig::Postgresql(settings) => {
            if settings.ha_enabled {
                // Writes would need a held HA lock, and nothing in the
                // server acquires or renews it yet.
                return Err(StartError::Storage(storage::Error::PostgresConfig(
                    "ha_enabled = true needs the server's HA layer (issue 19, items 3-8), which is not built yet: \
                     run one server with ha_enabled = false"
                        .into(),
                )));
            }
            Arc::new(PgBackend::connect_retrying(settings, (!wait).then_some(1)).await?)
        }
        StorageConfig::InMem => Arc::new(InMemBackend::new()),
        StorageConfig::Sqlite { path } => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            Arc::new(SqliteBackend::open(path)?)
        }
    })
}

fn decode_key(text: &str, source: &str) -> Result<[u8; 32], StartError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| StartError::Key(format!("{source} is not base64")))?;
    bytes
        .try_into()
        .map_err(|_| StartError::Key(format!("{source} must hold 32 bytes (base64)")))
}

/// Reads the unseal key from the environment variable or the key file.
pub fn read_key(seal: &SealConfig) -> Result<[u8; 32], StartError> {
    if let Some(var) = &seal.key_env {
        if let Ok(value) = std::env::var(var) {
            return decode_key(&value, &format!("environment variable {var}"));
        }
    }
    let path = seal.key_file.as_ref().ok_or_else(|| {
        StartError::Key("no key: set seal.key_file or seal.key_env in the config".into())
    })?;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| StartError::Key(format!("cannot read {}: {e}", path.display())))?;
    decode_key(&text, &path.display().to_string())
}

/// Generates a new unseal key and writes it to the key file (mode 0600),
/// unless the environment variable supplies one.
fn create_key(seal: &SealConfig) -> Result<[u8; 32], StartError> {
    if let Some(var) = &seal.key_env {
        if std::env::var(var).is_ok() {
            return read_key(seal);
        }
    }
    let path = seal.key_file.as_ref().ok_or_else(|| {
        StartError::Key("no key destination: set seal.key_file or seal.key_env".into())
    })?;
    let mut key = [0u8; 32];
    crate::random::fill(&mut key);
    write_key_file(path, &key)?;
    Ok(key)
}

fn write_key_file(path: &Path, key: &[u8; 32]) -> Result<(), StartError> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            StartError::Key(format!(
                "cannot create {} (it must not exist yet): {e}",
                path.display()
            ))
        })?;
    writeln!(
        file,
        "{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )?;
    file.sync_all()?;
    Ok(())
}

/// First-start work on fresh storage: identity, default policy, root token.
/// Returns the root token, shown once.
pub async fn initialize(
    storage: &Storage,
    root_token_id: Option<String>,
) -> Result<String, StartError> {
    ClusterInfo::load_or_create(storage).await?;
    PolicyStore::new(storage.clone()).bootstrap().await?;
    Ok(TokenStore::new(storage.clone())
        .create_root(root_token_id)
        .await?)
}

/// `operator init`: creates storage and key, returns the root token.
pub async fn operator_init(config: &Config) -> Result<String, StartError> {
    let existing = if storage_exists(&config.storage) {
        let backend = open_backend(&config.storage, false).await?;
        if Storage::is_initialized(&backend).await? {
            return Err(StartError::AlreadyInitialized);
        }
        Some(backend)
    } else {
        None
    };
    // The key before the storage: a key file that cannot be written (it
    // exists already, its directory is read-only) must not leave behind a
    // storage that no key opens.
    let key = create_key(&config.seal)?;
    let backend = match existing {
        Some(backend) => backend,
        None => open_backend(&config.storage, false).await?,
    };
    let storage = Storage::initialize(backend, &key).await?;
    initialize(&storage, None).await
}

/// Whether the configured storage exists yet. Opening a SQLite backend
/// creates its file and directory, which only `operator init` may do: a
/// server started before it must fail without leaving an empty storage
/// behind (one that a later `operator init` would have to be told about).
fn storage_exists(config: &StorageConfig) -> bool {
    match config {
        // Opening creates nothing but the (empty) schema; `operator init`
        // is still needed before the first start.
        StorageConfig::InMem | StorageConfig::Postgresql(_) => true,
        StorageConfig::Sqlite { path } => path.exists(),
    }
}

/// Opens initialised storage with the configured key.
pub async fn unseal(config: &Config) -> Result<Storage, StartError> {
    if !storage_exists(&config.storage) {
        return Err(StartError::NotInitialized);
    }
    let backend = open_backend(&config.storage, true).await?;
    if !Storage::is_initialized(&backend).await? {
        return Err(StartError::NotInitialized);
    }
    let key = read_key(&config.seal)?;
    Storage::unseal(backend, &key).await.map_err(|e| match e {
        storage::Error::BadUnsealKey => StartError::WrongKey,
        other => other.into(),
    })
}

/// Fresh in-memory storage, initialised, for dev mode and tests.
pub async fn fresh_inmem(root_token_id: Option<String>) -> Result<(Storage, String), StartError> {
    let mut key = [0u8; 32];
    crate::random::fill(&mut key);
    let storage = Storage::initialize(Arc::new(InMemBackend::new()), &key).await?;
    let root = initialize(&storage, root_token_id).await?;
    Ok((storage, root))
}
