//! The real Python `hvac` client against a real server.
//!
//! `.ci/run` installs hvac into `.venv-compat`; when it is missing (a fresh
//! checkout running `cargo test`), the test creates it, so the README's one
//! test command works on its own.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::server::TestServer;

/// The venv's python, created with hvac on first use.
pub fn python_with(package: &str, module: &str) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = repo.join(".venv-compat");
    let python = venv.join("bin/python");
    let has_module = |python: &Path| {
        Command::new(python)
            .args(["-c", &format!("import {module}")])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !has_module(&python) {
        let _guard = VENV_LOCK.lock().unwrap();
        if !python.exists() {
            let ok = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .unwrap()
                .success();
            assert!(ok, "python3 -m venv failed: install python3-venv");
        }
        if !has_module(&python) {
            let ok = Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", package])
                .status()
                .unwrap()
                .success();
            assert!(ok, "pip install {package} failed");
        }
    }
    python
}

static VENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[tokio::test(flavor = "multi_thread")]
async fn the_hvac_client_works_unchanged() {
    let s = TestServer::start().await;
    let pg = crate::support::pg::Pg::shared();
    let creds_path = crate::creds::setup(
        &s,
        pg,
        "hvac1",
        serde_json::json!({"default_ttl": "10m", "max_ttl": "1h"}),
    )
    .await;
    let python = python_with("hvac", "hvac");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/hvac_smoke.py");
    let url = s.url.clone();
    let token = s.root_token.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("VAULT_ADDR", url)
            .env("VAULT_TOKEN", token)
            .env("PGSECRETS_CREDS_PATH", creds_path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "hvac checks failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("hvac compatibility: all checks passed"),
        "{stdout}"
    );
}
