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
    // fails the start before the storage is opened.
    let tls = config.tls.as_ref().map(server::tls_config).transpose()?;
    // In-memory storage starts empty, so it is initialised here and the root
    // token printed, as `vault server -dev` does.
    let (storage, root_token) = if args.dev || config.storage == StorageConfig::InMem {
        let (storage, token) = server::fresh_inmem(args.dev_root_token_id.clone()).await?;
        (storage, Some(token))
    } else {
        (server::unseal(&config).await?, None)
    };
    let router = server::assemble(storage).await?;
    let listener = server::bind(config.address).await?;
    let address = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(token) = &root_token {
        println!(
            "pgsecrets dev server listening on {scheme}://{address}\n\
             Storage is in memory: everything is lost on exit.\n\n\
             \x20   export VAULT_ADDR='{scheme}://{address}'\n\
             \x20   export VAULT_TOKEN='{token}'\n\n\
             Root Token: {token}\n\
             The database engine is mounted at database/.\n"
        );
    } else {
        tracing::info!(%address, "pgsecrets listening on {scheme}://{address}");
    }
    server::serve(
        listener,
        router,
        config.http.clone(),
        tls,
        server::shutdown_signal(),
    )
    .await
}
