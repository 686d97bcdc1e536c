//! The Python venv `.venv-compat` the client tests use (hvac, and pip for
//! OpenBao), created on first use so a fresh checkout's `cargo test` works.

use std::path::{Path, PathBuf};
use std::process::Command;

static VENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
