//! The real Python `hvac` client against a real server.
//!
//! `.ci/run` installs hvac into `.venv-compat`; when it is missing (a fresh
//! checkout running `cargo test`), the test creates it, so the README's one
//! test command works on its own.

use std::path::Path;
use std::process::Command;

use crate::support::python::python_with;
use crate::support::server::TestServer;

#[tokio::test(flavor = "multi_thread")]
async fn the_hvac_client_works_unchanged() {
    // API-enabled audit devices, for hvac's `sys.enable_audit_device`.
    let s = TestServer::start_with_audit(pgsecrets::audit::Config {
        allow_api_creation: true,
        ..Default::default()
    })
    .await;
    let audit_dir = tempfile::tempdir().unwrap();
    let pg = crate::support::pg::Pg::shared();
    let creds_path = crate::support::engine::setup(
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
    let audit_path = audit_dir.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("VAULT_ADDR", url)
            .env("VAULT_TOKEN", token)
            .env("PGSECRETS_CREDS_PATH", creds_path)
            .env("PGSECRETS_AUDIT_DIR", audit_path)
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
    assert!(stdout.contains("ok: sys.calculate_hash"), "{stdout}");
}
