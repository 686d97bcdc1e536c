//! Composition root: opens the storage, builds every part, binds and serves
//! until shutdown. The only module that sees everything.

use std::future::Future;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use tokio::net::TcpListener;

use crate::auth::{PolicyStore, TokenStore};
use crate::config::{Config, SealConfig, StorageConfig, TlsConfig};
pub use crate::engine::EngineOptions;
use crate::lease::LeaseManager;
use crate::router::{mounts::MountEntry, sys_routes, Backend, Mounts, Router};
use crate::storage::{self, inmem::InMemBackend, sqlite::SqliteBackend, Storage};
use crate::sys::{self, ClusterInfo, SysState};
use crate::wire::{self, WireConfig};

/// Why the server could not start; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    #[error("storage: {0}")]
    Storage(#[from] storage::Error),
    #[error("{0}")]
    Auth(#[from] crate::auth::Error),
    #[error("{0}")]
    Router(#[from] crate::router::Error),
    #[error("the storage is not initialised: run `pgsecrets operator init --config <file>` first")]
    NotInitialized,
    #[error("the storage is already initialised; its root token was printed by the first `operator init`")]
    AlreadyInitialized,
    #[error("the unseal key does not open this storage (wrong key file or environment variable?)")]
    WrongKey,
    #[error("unseal key: {0}")]
    Key(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the configured backend.
pub fn open_backend(config: &StorageConfig) -> Result<Arc<dyn storage::Backend>, StartError> {
    Ok(match config {
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
        let backend = open_backend(&config.storage)?;
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
        None => open_backend(&config.storage)?,
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
        StorageConfig::InMem => true,
        StorageConfig::Sqlite { path } => path.exists(),
    }
}

/// Opens initialised storage with the configured key.
pub async fn unseal(config: &Config) -> Result<Storage, StartError> {
    if !storage_exists(&config.storage) {
        return Err(StartError::NotInitialized);
    }
    let backend = open_backend(&config.storage)?;
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

/// Builds the router over unsealed storage: built-in mounts, engine mounts.
pub async fn assemble(storage: Storage) -> Result<Arc<Router>, StartError> {
    assemble_with(storage, EngineOptions::default()).await
}

/// [`assemble`] with the engines' options (`server --dev` keeps root
/// passwords, see [`EngineOptions`]).
pub async fn assemble_with(
    storage: Storage,
    engine_options: EngineOptions,
) -> Result<Arc<Router>, StartError> {
    let cluster = ClusterInfo::load_or_create(&storage).await?;
    let tokens = TokenStore::new(storage.clone());
    let policies = PolicyStore::new(storage.clone());
    policies.bootstrap().await?;
    let leases = LeaseManager::new(storage.clone());
    {
        let leases = Arc::clone(&leases);
        // A revoked or expired token takes its leases with it: they are
        // marked for revocation before the token goes.
        tokens.on_revoke(Arc::new(move |token_hash: String| {
            let leases = Arc::clone(&leases);
            Box::pin(async move {
                leases
                    .revoke_token(&token_hash)
                    .await
                    .map(drop)
                    .map_err(|e| {
                        tracing::error!(error = %e, "cannot revoke the leases of a revoked token");
                        e.to_string()
                    })
            })
        }));
    }
    let engine_storage = storage.clone();
    let engine_leases = Arc::clone(&leases);
    let mounts = Arc::new(Mounts::new(
        storage.clone(),
        Box::new(move |entry: &MountEntry| {
            Ok(crate::engine::backend(
                engine_storage.clone(),
                entry,
                Arc::clone(&engine_leases),
                engine_options,
            ))
        }),
    ));
    {
        let leases = Arc::clone(&leases);
        // Unmounting revokes every lease of the mount first; a failure keeps it.
        mounts.on_unmount(Box::new(move |path: String| {
            let leases = Arc::clone(&leases);
            Box::pin(async move {
                leases
                    .revoke_prefix(&path, true)
                    .await
                    .map_err(|e| e.to_string())?;
                leases.unregister(&path);
                Ok(())
            })
        }));
    }
    let state = Arc::new(SysState {
        storage: storage.clone(),
        tokens: tokens.clone(),
        policies: policies.clone(),
        leases: Arc::clone(&leases),
        cluster,
        active_since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    let mut sys_routes_table = Vec::new();
    sys_routes_table.extend(sys::health::routes(&state));
    sys_routes_table.extend(sys::policy::routes(&state));
    sys_routes_table.extend(sys::leases::routes(&state));
    sys_routes_table.extend(sys_routes::routes(&mounts, &leases, &policies));
    mounts.add_builtin(
        MountEntry::new(
            "sys/",
            "system",
            "system endpoints used for control, policy and debugging",
        ),
        Backend {
            routes: sys_routes_table,
            tuning: None,
        },
    );
    mounts.add_builtin(
        MountEntry::new("auth/token/", "token", "token based credentials"),
        Backend {
            routes: sys::token::routes(&state),
            tuning: None,
        },
    );
    mounts.load().await?;
    let (shutdown, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(Arc::clone(&leases).run(stopped.clone()));
    tokio::spawn(sweep_tokens(tokens.clone(), stopped));
    Ok(Arc::new(Router {
        mounts,
        tokens,
        policies,
        _workers: shutdown,
    }))
}

/// Revokes expired tokens (and so their leases) every second.
async fn sweep_tokens(tokens: TokenStore, mut stopped: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Err(e) = tokens.sweep_expired(chrono::Utc::now().timestamp()).await {
            tracing::error!(error = %e, "token expiry sweep failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Loads the TLS certificate chain and key for the listener.
pub fn tls_config(tls: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, StartError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_file)
        .map_err(|e| StartError::Tls(format!("{}: {e}", tls.cert_file.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| StartError::Tls(format!("{}: {e}", tls.cert_file.display())))?;
    if certs.is_empty() {
        return Err(StartError::Tls(format!(
            "{} holds no certificate",
            tls.cert_file.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| StartError::Tls(format!("{}: {e}", tls.key_file.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the API on `listener` until `shutdown` resolves; requests in
/// flight then finish before this returns.
pub async fn serve(
    listener: TcpListener,
    router: Arc<Router>,
    wire_config: WireConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let app = wire::app(router, wire_config.clone());
    crate::listener::serve(listener, app, wire_config, tls, shutdown)
        .await
        .map_err(StartError::Io)
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// Binds the configured address.
pub async fn bind(address: std::net::SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind { address, source })
}
