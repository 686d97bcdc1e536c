//! The real Node `node-vault` client against a real server and real
//! PostgreSQL.
//!
//! `.ci/run` installs node-vault into `.node-compat`; when it is missing (a
//! fresh checkout running `cargo test`), the test installs it with npm, so the
//! README's one test command works on its own. The script runs in two phases
//! so that this side can look at pg_roles between issuing and revoking.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::support::engine::role_exists;
use crate::support::pg::Pg;
use crate::support::server::TestServer;

/// The version `tests/compat/node_vault_smoke.js` was written against.
const NODE_VAULT: &str = "node-vault@^0.12";

/// `<repo>/.node-compat/node_modules`, with node-vault installed on first use.
fn node_modules() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".node-compat");
    let modules = dir.join("node_modules");
    let installed = |m: &Path| m.join("node-vault/package.json").exists();
    if !installed(&modules) {
        let _guard = NPM_LOCK.lock().unwrap();
        if !installed(&modules) {
            std::fs::create_dir_all(&dir).unwrap();
            let ok = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
                .arg(&dir)
                .arg(NODE_VAULT)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(
                ok,
                "npm install {NODE_VAULT} failed (needs nodejs and npm: apt-get install nodejs npm)"
            );
        }
    }
    modules
}

static NPM_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the script (with `phase` as its argument, if any) and checks it passed.
async fn run_script(
    s: &TestServer,
    creds_path: &str,
    phase: &[&str],
    extra: &[(&str, &str)],
) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/node_vault_smoke.js");
    let mut command = Command::new("node");
    command
        .arg(script)
        .args(phase)
        .env("NODE_PATH", node_modules())
        .env("VAULT_ADDR", &s.url)
        .env("VAULT_TOKEN", &s.root_token)
        .env("PGSECRETS_CREDS_PATH", creds_path)
        .env("PGSECRETS_VERSION", pgsecrets::VERSION)
        .env_remove("VAULT_NAMESPACE")
        .env_remove("VAULT_PREFIX")
        .env_remove("VAULT_SKIP_VERIFY");
    for (k, v) in extra {
        command.env(k, v);
    }
    let output = tokio::task::spawn_blocking(move || command.output().expect("node runs"))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "node-vault checks failed ({phase:?}):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("node-vault compatibility: all checks passed"),
        "{stdout}"
    );
    output
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_vault_client_works_unchanged() {
    let s = TestServer::start().await;
    let pg = Pg::shared();
    let creds_path = crate::support::engine::setup(
        &s,
        pg,
        "nodevault1",
        json!({"default_ttl": "10m", "max_ttl": "1h"}),
    )
    .await;

    let output = run_script(&s, &creds_path, &[], &[]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let issued: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("issued: "))
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or_else(|| panic!("no issued line:\n{stdout}"));
    let user = issued["username"].as_str().unwrap();
    let lease_id = issued["lease_id"].as_str().unwrap();
    assert!(role_exists(pg, user).await, "{user} is in pg_roles");
    pg.connect(
        user,
        issued["password"].as_str().unwrap(),
        issued["database"].as_str().unwrap(),
    )
    .await
    .expect("the user node-vault got logs in");

    run_script(
        &s,
        &creds_path,
        &["revoke"],
        &[("PGSECRETS_LEASE_ID", lease_id)],
    )
    .await;
    assert!(!role_exists(pg, user).await, "{user} is gone after revoke");
}
