//! Running the `pgsecrets` binary as a user does: a free port, the binary,
//! reading what it prints, waiting for health, stopping it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pgsecrets"))
}

/// Reads the child's stdout until a line contains `marker`; returns all lines read.
pub fn read_until(child: &mut Child, marker: &str) -> Vec<String> {
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.contains(marker);
        lines.push(line);
        if done {
            return lines;
        }
    }
    panic!("output ended before {marker:?}: {lines:?}");
}

pub fn wait_healthy(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::blocking_get(&format!("{url}/v1/sys/health")) {
            if r == 200 {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server at {url} never became healthy");
}

pub fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

pub fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal blocking GET, so these tests need no second HTTP client.
pub mod reqwest {
    pub fn blocking_get(url: &str) -> Result<u16, String> {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", url])
            .output()
            .map_err(|e| e.to_string())?;
        String::from_utf8_lossy(&out.stdout)
            .parse()
            .map_err(|_| "no code".into())
    }
}

pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

/// `pgsecrets server --config <config>`, output discarded.
pub fn start_with_config(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pgsecrets"))
        .args(["server", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits (async) until `sys/health` answers 200.
pub async fn wait_healthy_async(client: &::reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(format!("{url}/v1/sys/health")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "server never became healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One request with a token: status and JSON answer (null when none).
pub async fn call(
    client: &::reqwest::Client,
    method: &str,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client
        .request(
            ::reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            url,
        )
        .header("X-Vault-Token", token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A server as an operator runs one: SQLite storage in `dir`, `operator
/// init`, then `server --config`, healthy. Returns the config (to start it
/// again after a crash), its URL, the root token and the process.
pub async fn durable_server(
    dir: &std::path::Path,
    client: &::reqwest::Client,
) -> (std::path::PathBuf, String, String, Child) {
    let port = free_port();
    let config = dir.join("pgsecrets.toml");
    std::fs::write(
        &config,
        format!("[listener]\naddress = \"127.0.0.1:{port}\"\n[storage]\nbackend = \"sqlite\"\npath = \"pgsecrets.db\"\n[seal]\nkey_file = \"unseal.key\"\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pgsecrets"))
        .args(["operator", "init", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let root = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Root Token: ").map(str::to_string))
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let server = start_with_config(&config);
    wait_healthy_async(client, &url).await;
    (config, url, root, server)
}

/// Over HTTP as `root`: registers cluster `name` on `pg` (with a root user
/// of its own), creates database `<name>db` and writes role `app`.
pub async fn register_over_http(
    client: &::reqwest::Client,
    url: &str,
    root: &str,
    pg: &crate::support::pg::Pg,
    name: &str,
    role: Value,
) {
    let (user, password) = crate::support::engine::root_user(pg, &format!("root_{name}")).await;
    let body = crate::support::engine::cluster_body(pg, &user, &password);
    let (status, answer) = call(
        client,
        "POST",
        &format!("{url}/v1/database/cluster/{name}"),
        root,
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = call(
        client,
        "POST",
        &format!("{url}/v1/database/cluster/{name}/{name}db"),
        root,
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = call(
        client,
        "POST",
        &format!("{url}/v1/database/roles/app"),
        root,
        Some(role),
    )
    .await;
    assert_eq!(status, 204, "{answer}");
}
