//! Secrets in logs: an operator who turns logging up to `trace` to chase
//! a problem (or anyone who can read the journal afterwards) must not find
//! a password or a SCRAM verifier in it: a verifier can be attacked
//! offline, and tokio-postgres logs every statement at debug level.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::engine::root_user;
use crate::support::pg::Pg;
use crate::support::process::free_port;

async fn call(url: &str, token: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let client = reqwest::Client::new();
    let mut request = client
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{url}/v1/{path}"),
        )
        .header("X-Vault-Token", token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test]
async fn trace_logs_carry_no_password_and_no_verifier() {
    let pg = Pg::shared();
    let (user, initial) = root_user(pg, "root_adv_logs").await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    // With an audit device: neither log may hold a secret.
    let dir = tempfile::tempdir().unwrap();
    let audit_log = dir.path().join("audit.log");
    let config = dir.path().join("dev.toml");
    std::fs::write(
        &config,
        format!(
            "[[audit]]\npath = \"file\"\ntype = \"file\"\noptions = {{ file_path = \"{}\" }}\n\
             [listener]\naddress = \"127.0.0.1:{port}\"\n[storage]\nbackend = \"inmem\"\n",
            audit_log.display()
        ),
    )
    .unwrap();
    // In-memory storage from a config file: initialised at start, its root
    // token printed, as in dev mode.
    let mut server = Command::new(env!("CARGO_BIN_EXE_pgsecrets"))
        .args(["server", "--config"])
        .arg(&config)
        .env("PGSECRETS_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drained as it comes: trace output would fill the pipe and stall the server.
    let mut stderr = server.stderr.take().unwrap();
    let drained = std::thread::spawn(move || {
        let mut logs = String::new();
        stderr.read_to_string(&mut logs).unwrap();
        logs
    });
    let token = crate::support::process::read_until(&mut server, "Root Token: ")
        .last()
        .and_then(|l| l.strip_prefix("Root Token: ").map(str::to_string))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{url}/v1/sys/health")).await.is_err() {
        assert!(Instant::now() < deadline, "dev server never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Registration (root rotated, management role created), a database,
    // a role, a credential: every statement that carries a verifier.
    call(
        &url,
        &token,
        "POST",
        "database/cluster/logs",
        Some(json!({
            "host": pg.host(), "port": pg.port(), "username": user,
            "password": initial, "ssl_mode": "disable",
        })),
    )
    .await;
    call(
        &url,
        &token,
        "POST",
        "database/cluster/logs/logs_db",
        Some(json!({})),
    )
    .await;
    call(
        &url,
        &token,
        "POST",
        "database/roles/app",
        Some(json!({"default_ttl": "1h"})),
    )
    .await;
    let creds = call(&url, &token, "GET", "database/creds/logs/logs_db/app", None).await;
    call(
        &url,
        &token,
        "POST",
        "database/rotate-root/logs",
        Some(json!({})),
    )
    .await;
    let cluster = call(&url, &token, "GET", "database/cluster/logs", None).await;

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(server.id().to_string())
        .status();
    let _ = server.wait();
    let logs = drained.join().unwrap();

    assert!(
        logs.contains("path=/v1/database/creds/logs/logs_db/app"),
        "the log was captured: {logs}"
    );
    let secrets = [
        ("the password first supplied", initial.clone()),
        (
            "the root password",
            cluster["data"]["password"].as_str().unwrap().to_string(),
        ),
        (
            "the management password",
            cluster["data"]["management_password"]
                .as_str()
                .unwrap()
                .to_string(),
        ),
        (
            "an issued user's password",
            creds["data"]["password"].as_str().unwrap().to_string(),
        ),
    ];
    let audit = std::fs::read_to_string(&audit_log).unwrap();
    assert!(
        audit.contains("\"path\":\"database/creds/logs/logs_db/app\""),
        "the audit log was written: {audit}"
    );
    for (what, secret) in secrets {
        assert!(!logs.contains(&secret), "{what} is in the log");
        assert!(!audit.contains(&secret), "{what} is in the audit log");
    }
    assert!(!audit.contains(&token), "the token is in the audit log");
    assert!(!logs.contains(&token), "the token is in the log");
    assert!(
        !logs.contains("SCRAM-SHA-256$"),
        "a SCRAM verifier is in the log: {}",
        logs.lines()
            .find(|l| l.contains("SCRAM-SHA-256$"))
            .unwrap_or_default()
    );
}
