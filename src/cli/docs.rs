//! `pgsecrets gen-docs`: writes the API reference in `routes/` from the
//! route tables. A test regenerates it and fails when the checked-in copy
//! is stale.

use std::path::Path;

use crate::router::docs;
use crate::server::{self, StartError};

/// The command that regenerates the files, named in their headers.
pub const REGENERATE: &str = "cargo run -- gen-docs";

/// (file name, contents) of every generated reference file.
pub async fn reference_files() -> Result<Vec<(String, String)>, StartError> {
    let (storage, _) = server::fresh_inmem(None).await?;
    let router = server::assemble(storage).await?.router;
    let mut files = Vec::new();
    for (mount, backend) in router.mounts.backends() {
        let (file, title) = match mount.kind.as_str() {
            "system" => ("sys.md", "System routes (`sys/`)"),
            "token" => ("token.md", "Token routes (`auth/token/`)"),
            "database" => ("database.md", "Database engine routes (`database/`)"),
            _ => continue,
        };
        files.push((
            file.to_string(),
            docs::markdown(&mount, &backend, title, REGENERATE),
        ));
    }
    let spec = docs::openapi(&router.mounts.backends());
    files.push((
        "openapi.json".into(),
        serde_json::to_string_pretty(&spec).expect("spec serialises") + "\n",
    ));
    Ok(files)
}

pub async fn write(out: &Path) -> Result<(), StartError> {
    std::fs::create_dir_all(out)?;
    for (name, contents) in reference_files().await? {
        std::fs::write(out.join(&name), contents)?;
        println!("wrote {}", out.join(&name).display());
    }
    Ok(())
}
