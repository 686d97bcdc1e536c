//! The README's examples as tests run them: its `sh` blocks after a marker,
//! and a shell set up as a reader's would be.

use std::process::Command;

/// The README's `sh` blocks that follow `marker`.
pub fn readme_scripts(marker: &str) -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut scripts = Vec::new();
    let mut rest = readme.as_str();
    while let Some(at) = rest.find(marker) {
        rest = &rest[at..];
        let start = rest.find("```sh\n").expect("a sh block follows the marker") + 6;
        let end = rest[start..].find("```").unwrap() + start;
        scripts.push(rest[start..end].to_string());
        rest = &rest[end..];
    }
    assert!(!scripts.is_empty(), "README has no examples after {marker}");
    scripts
}

/// `bash -euo pipefail -c script` as a README reader runs it: `VAULT_ADDR`
/// and `VAULT_TOKEN` set, `pgsecrets` on `PATH`, in a scratch directory
/// (kept for the process's life) so files it writes go nowhere else.
pub fn readme_script(script: &str, url: &str, token: &str) -> Command {
    static SCRATCH: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let scratch = SCRATCH.get_or_init(|| tempfile::tempdir().unwrap());
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_pgsecrets"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(scratch.path())
        .env("PATH", path)
        .env("VAULT_ADDR", url)
        .env("VAULT_TOKEN", token)
        .env_remove("PGSECRETS_ADDR")
        .env_remove("PGSECRETS_TOKEN");
    command
}
