//! Composition root: opens the storage, builds every part, binds and serves
//! until shutdown. The only module that sees everything. Opening and
//! initialising storage with its unseal key is in [`storage_init`]; the
//! listener's TLS in [`tls`].

mod storage_init;
pub mod tls;

pub use storage_init::{fresh_inmem, initialize, open_backend, operator_init, read_key, unseal};
pub use tls::{load as load_tls, reload as reload_tls, tls_config};

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::auth::{PolicyStore, TokenStore};
pub use crate::engine::EngineOptions;
use crate::lease::LeaseManager;
use crate::logical::Clock;
use crate::router::{mounts::MountEntry, sys_routes, AnyRoute, Backend, Mounts, Router};
use crate::storage::{self, Storage};
use crate::sys::{self, ClusterInfo, SysState};
use crate::wire::{self, WireConfig};

/// Why the server could not start; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    #[error("storage: {0}")]
    Storage(#[from] storage::Error),
    #[error("audit: {0}")]
    Audit(#[from] crate::audit::Error),
    #[error("quotas: {0}")]
    Quota(#[from] crate::quota::Error),
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
    #[error(transparent)]
    Tls(#[from] tls::Error),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// The background workers of a running server (lease expiry, token
/// expiry): they run until this is dropped, which the server does when it
/// stops serving. They belong to the running server, not to the router,
/// which only dispatches requests.
pub struct Workers {
    _stop: tokio::sync::watch::Sender<bool>,
}

/// What [`assemble`] builds: the router, and the workers to keep alive as
/// long as it serves.
pub struct Assembled {
    pub router: Arc<Router>,
    pub workers: Workers,
}

/// Builds the router over unsealed storage: built-in mounts, engine mounts,
/// and starts the background workers.
pub async fn assemble(storage: Storage) -> Result<Assembled, StartError> {
    assemble_with(storage, EngineOptions::default()).await
}

/// [`assemble`] with the engines' options (`server --dev` keeps root
/// passwords, see [`EngineOptions`]).
pub async fn assemble_with(
    storage: Storage,
    engine_options: EngineOptions,
) -> Result<Assembled, StartError> {
    assemble_at(storage, engine_options, Clock::default()).await
}

/// [`assemble_with`] on `clock`: tests pass one they advance, so leases
/// and tokens expire without waiting out their TTLs.
pub async fn assemble_at(
    storage: Storage,
    engine_options: EngineOptions,
    clock: Clock,
) -> Result<Assembled, StartError> {
    let options = ServerOptions {
        engine: engine_options,
        clock,
        ..ServerOptions::default()
    };
    assemble_options(storage, options).await
}

/// What a server is built with besides its storage.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub engine: EngineOptions,
    pub clock: Clock,
    /// Declared audit devices and the audit settings of the config file.
    pub audit: crate::audit::Config,
    /// The listener's `unauthenticated_metrics_access`.
    pub unauthenticated_metrics: bool,
}

/// Builds the router over unsealed storage with every option.
pub async fn assemble_options(
    storage: Storage,
    options: ServerOptions,
) -> Result<Assembled, StartError> {
    let ServerOptions {
        engine: engine_options,
        clock,
        audit,
        unauthenticated_metrics,
    } = options;
    let audit = crate::audit::Broker::load(storage.clone(), &audit).await?;
    let quotas = crate::quota::Quotas::load(storage.clone()).await?;
    let cluster = ClusterInfo::load_or_create(&storage).await?;
    let telemetry = crate::telemetry::Telemetry::default();
    let tokens = TokenStore::with_clock(storage.clone(), clock.clone());
    let policies = PolicyStore::new(storage.clone());
    policies.bootstrap().await?;
    let leases = LeaseManager::with_telemetry(storage.clone(), clock.clone(), telemetry.clone());
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
    let engine_telemetry = telemetry.clone();
    let mounts = Arc::new(Mounts::new(
        storage.clone(),
        Box::new(move |entry: &MountEntry| {
            Ok(crate::engine::backend(
                engine_storage.clone(),
                entry,
                Arc::clone(&engine_leases),
                engine_options,
                engine_telemetry.clone(),
            )
            .map_err(crate::Error::from))
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
        audit: audit.clone(),
        telemetry: telemetry.clone(),
        unauthenticated_metrics,
        cluster,
        active_since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    // The built-in routes return sys's errors, the router's own its; the
    // table holds them under the one error type.
    let mut sys_routes_table: Vec<AnyRoute> = Vec::new();
    for routes in [
        sys::health::routes(&state),
        sys::policy::routes(&state),
        sys::leases::routes(&state),
        sys::audit::routes(&state),
        sys::metrics::routes(&state),
    ] {
        sys_routes_table.extend(routes.into_iter().map(|r| r.map_err(crate::Error::from)));
    }
    sys_routes_table.extend(sys_routes::routes(&mounts, &leases, &tokens, &policies));
    sys_routes_table.extend(crate::router::quota_routes::routes(&mounts, &quotas));
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
            routes: sys::token::routes(&state)
                .into_iter()
                .map(|r| r.map_err(crate::Error::from))
                .collect(),
            tuning: None,
        },
    );
    mounts.load().await?;
    let (shutdown, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(Arc::clone(&leases).run(stopped.clone()));
    tokio::spawn(sweep_tokens(tokens.clone(), stopped.clone()));
    tokio::spawn(telemetry.clone().keep_up(stopped));
    Ok(Assembled {
        router: Arc::new(Router {
            mounts,
            tokens,
            policies,
            audit,
            quotas,
            leases,
            telemetry,
        }),
        workers: Workers { _stop: shutdown },
    })
}

/// Revokes expired tokens (and so their leases) every second.
async fn sweep_tokens(tokens: TokenStore, mut stopped: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Err(e) = tokens.sweep_expired(tokens.clock.now()).await {
            tracing::error!(error = %e, "token expiry sweep failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = tokens.clock.moved() => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Serves the API on `listener` until `shutdown` resolves; requests in
/// flight then finish before this returns.
pub async fn serve(
    listener: TcpListener,
    router: Arc<Router>,
    wire_config: WireConfig,
    tls: Option<crate::listener::Tls>,
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
