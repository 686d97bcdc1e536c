//! `pgsecrets server`: dev mode or a configured production server.

use crate::config::{Config, StorageConfig};
use crate::server::{self, StartError};

use super::{init_logging, ServerArgs};

pub async fn run(args: ServerArgs) -> Result<(), StartError> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::dev(args.dev_listen_address),
    };
    init_logging(args.log_format.unwrap_or(config.log_format));
    // The listener's certificate is part of the configuration: a bad one
    // (unreadable, expired, not matching its key) fails the start before
    // the storage is opened.
    let loaded = config.tls.as_ref().map(server::load_tls).transpose()?;
    if let Some(tls) = &config.tls {
        if tls.client_ca_file.is_some() && !tls.require_client_cert {
            tracing::warn!(
                "listener.tls_client_ca_file is used only with tls_require_and_verify_client_cert = true (as in Vault): client certificates are not checked"
            );
        }
    }
    // In-memory storage starts empty, so it is initialised here and the root
    // token printed, as `vault server -dev` does.
    let (storage, root_token) = if args.dev || config.storage == StorageConfig::InMem {
        let (storage, token) = server::fresh_inmem(args.dev_root_token_id.clone()).await?;
        (storage, Some(token))
    } else {
        (server::unseal(&config).await?, None)
    };
    // In dev mode root passwords are not rotated: the storage is in memory
    // (see EngineOptions).
    let options = server::ServerOptions {
        engine: server::EngineOptions {
            keep_root_password: root_token.is_some(),
        },
        audit: config.audit.clone(),
        unauthenticated_metrics: config.unauthenticated_metrics,
        ..server::ServerOptions::default()
    };
    // The workers run until this function returns, after serving stops.
    let server::Assembled {
        router,
        workers: _workers,
    } = server::assemble_options(storage, options).await?;
    let tls = loaded.map(|loaded| {
        router.telemetry.certificate("listener", loaded.not_after);
        crate::listener::Tls::new(loaded.config)
    });
    // SIGHUP reopens the audit files (log rotation) and reloads the
    // listener's certificate (renewal).
    if let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        let audit = router.audit.clone();
        let telemetry = router.telemetry.clone();
        let reloadable = config.tls.clone().zip(tls.clone());
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reopening the audit devices");
                audit.reopen();
                if let Some((files, live)) = &reloadable {
                    server::reload_tls(files, live, &telemetry);
                }
            }
        });
    }
    let listener = server::bind(config.address).await?;
    let address = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Kept until the server stops: dropping it stops PostgreSQL.
    let mut dev_postgres = None;
    if let Some(token) = &root_token {
        println!(
            "pgsecrets dev server listening on {scheme}://{address}\n\
             Storage is in memory: everything is lost on exit; root passwords of the\n\
             PostgreSQL servers you register are not rotated, so none is lost with it.\n\n\
             \x20   export VAULT_ADDR='{scheme}://{address}'\n\
             \x20   export VAULT_TOKEN='{token}'\n\n\
             Root Token: {token}\n\
             The database engine is mounted at database/.\n"
        );
        if args.dev && !args.dev_no_postgres {
            if let Some(pg) = super::dev::start_postgres().await {
                let pg = std::sync::Arc::new(pg);
                let (registering, address, token) = (
                    std::sync::Arc::clone(&pg),
                    format!("{scheme}://{address}"),
                    token.clone(),
                );
                // The listener is bound: the requests wait for serve() below.
                tokio::spawn(async move {
                    if let Err(e) = super::dev::register(&registering, &address, &token).await {
                        super::dev::say(&format!(
                            "The dev PostgreSQL could not be registered: {e}"
                        ));
                    }
                });
                dev_postgres = Some(pg);
            }
        }
    } else {
        tracing::info!(%address, "pgsecrets listening on {scheme}://{address}");
    }
    let served = server::serve(
        listener,
        router,
        config.http.clone(),
        tls,
        server::shutdown_signal(),
    )
    .await;
    drop(dev_postgres);
    served
}
