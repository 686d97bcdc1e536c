//! `pgsecrets operator init`.

use std::path::Path;

use crate::config::Config;
use crate::server::{self, StartError};

pub async fn init(path: &Path) -> Result<(), StartError> {
    let config = Config::load(path)?;
    let root_token = server::operator_init(&config).await?;
    let key_place = match (&config.seal.key_env, &config.seal.key_file) {
        (Some(var), _) if std::env::var(var).is_ok() => format!("environment variable {var}"),
        (_, Some(file)) => format!("{} (mode 0600)", file.display()),
        _ => "nowhere".into(),
    };
    println!(
        "pgsecrets initialised.\n\n\
         Unseal key: {key_place}\n\
         Root Token: {root_token}\n\n\
         The root token is shown only now; it is stored as a hash. Keep the unseal\n\
         key apart from backups of the storage: together they open every secret.\n\
         Start the server with: pgsecrets server --config {}",
        path.display()
    );
    Ok(())
}
