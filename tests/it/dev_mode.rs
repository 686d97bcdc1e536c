//! `pgsecrets server --dev` as a newcomer runs it: a throwaway PostgreSQL
//! registered as `dev`, a credential from the printed curl line or from
//! `pgsecrets psql`; without PostgreSQL binaries a one-line hint; and a
//! user's own PostgreSQL registered in dev mode, then the server killed,
//! leaves its root password working and its users findable.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::engine::{can_login, role_exists, root_user};
use crate::support::pg::Pg;
use crate::support::process::{binary, free_port, sigterm, wait_exit, wait_healthy};

/// A dev server whose stdout lines arrive on a channel as it prints them.
struct DevServer {
    child: Child,
    lines: mpsc::Receiver<String>,
    printed: Vec<String>,
    url: String,
}

impl DevServer {
    fn start(extra: &[&str], env: &[(&str, &str)]) -> DevServer {
        DevServer::start_at(&format!("127.0.0.1:{}", free_port()), extra, env)
    }

    fn start_at(address: &str, extra: &[&str], env: &[(&str, &str)]) -> DevServer {
        let mut command = binary();
        command
            .args(["server", "--dev", "--dev-listen-address", address])
            .args(extra)
            .env_remove("VAULT_DEV_ROOT_TOKEN_ID")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        DevServer {
            child,
            lines,
            printed: Vec::new(),
            url: format!("http://{address}"),
        }
    }

    /// The first printed line containing `marker` (waiting up to a minute:
    /// the dev PostgreSQL is initialised first).
    fn line_with(&mut self, marker: &str) -> String {
        if let Some(line) = self.printed.iter().find(|l| l.contains(marker)) {
            return line.clone();
        }
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no line with {marker:?} in {:?}", self.printed));
            self.printed.push(line.clone());
            if line.contains(marker) {
                return line;
            }
        }
    }

    fn root_token(&mut self) -> String {
        self.line_with("Root Token:")
            .trim_start_matches("Root Token:")
            .trim()
            .to_string()
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bash(script: &str, env: &[(&str, &str)]) -> std::process::Output {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_pgsecrets"))
        .parent()
        .unwrap()
        .to_path_buf();
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", script])
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env_remove("PGSECRETS_ADDR")
        .env_remove("PGSECRETS_TOKEN");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

/// Logs in with a credential's answer (`data` of `database/creds/...`).
async fn logs_in(data: &Value) -> bool {
    let config = format!(
        "host={} port={} user={} password={} dbname={}",
        data["host"].as_str().unwrap(),
        data["port"],
        data["username"].as_str().unwrap(),
        data["password"].as_str().unwrap(),
        data["database"].as_str().unwrap(),
    );
    match tokio_postgres::connect(&config, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client.query_one("SELECT 1", &[]).await.is_ok()
        }
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_printed_curl_line_issues_a_credential_that_logs_in() {
    let mut dev = DevServer::start(&[], &[]);
    let curl = dev.line_with("curl -s").trim().to_string();
    assert!(curl.contains("/v1/database/creds/dev/app/app"), "{curl}");
    let out = bash(&curl, &[]);
    assert!(out.status.success(), "{curl}: {out:?}");
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(answer["lease_id"]
        .as_str()
        .unwrap()
        .starts_with("database/creds/dev/app/app/"));
    assert_eq!(answer["data"]["database"], "app");
    assert!(logs_in(&answer["data"]).await, "{answer}");
    // The throwaway server stops with the dev server.
    let port = answer["data"]["port"].as_u64().unwrap();
    sigterm(&dev.child);
    wait_exit(&mut dev.child);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port as u16)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "PostgreSQL still listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pgsecrets_psql_runs_as_a_fresh_dev_user() {
    let mut dev = DevServer::start(&[], &[]);
    let token = dev.root_token();
    let printed = dev.line_with("pgsecrets psql").trim().to_string();
    assert!(
        printed.starts_with("pgsecrets psql dev/app/app"),
        "{printed}"
    );
    let url = dev.url.clone();
    let out = bash(
        "pgsecrets psql dev/app/app -- -tAc 'select current_database()'",
        &[("VAULT_ADDR", &url), ("VAULT_TOKEN", &token)],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "app",
        "{out:?}"
    );
}

#[test]
fn without_postgresql_binaries_the_dev_server_says_how_to_get_them() {
    let nothing = tempfile::tempdir().unwrap();
    let empty = nothing.path().to_str().unwrap();
    let mut dev = DevServer::start(
        &[],
        &[
            ("PATH", empty),
            ("PGSECRETS_PG_VERSIONS_DIR", empty),
            ("PGSECRETS_PG_BIN", ""),
        ],
    );
    let hint = dev.line_with("PostgreSQL server binaries");
    assert!(hint.contains("apt-get install postgresql"), "{hint}");
    let url = dev.url.clone();
    wait_healthy(&url);
    // --dev-no-postgres: no hint, no PostgreSQL.
    let mut quiet = DevServer::start(&["--dev-no-postgres"], &[]);
    quiet.line_with("The database engine is mounted");
    let url = quiet.url.clone();
    wait_healthy(&url);
    let _ = quiet.child.kill();
    let rest: Vec<String> = quiet.lines.try_iter().collect();
    assert!(
        !rest
            .iter()
            .chain(&quiet.printed)
            .any(|l| l.contains("throwaway")),
        "{rest:?}"
    );
}

/// A request to a running dev server: status and JSON answer.
async fn call(
    url: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    crate::support::openbao::request(
        &reqwest::Client::new(),
        url,
        method,
        path,
        Some(token),
        body,
    )
    .await
}

/// The user's own PostgreSQL in dev mode: the root password is not
/// rotated (in-memory storage would lose it), and after `kill -9` the users
/// the dead server issued are found, and dropped, by the next dev server's
/// `reconcile`.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_dev_server_leaves_the_root_password_working_and_its_users_findable() {
    let pg = Pg::shared();
    let (user, password) = root_user(pg, "root_dev_kill").await;
    let cluster = json!({"host": pg.host(), "port": pg.port(), "username": user,
        "password": password, "ssl_mode": "disable"});
    let register = |url: String, token: String| {
        let cluster = cluster.clone();
        async move {
            let (status, answer) =
                call(&url, &token, "POST", "database/cluster/mine", Some(cluster)).await;
            assert_eq!(status, 200, "{answer}");
            assert!(answer.to_string().contains("was not rotated"), "{answer}");
        }
    };
    let mut first = DevServer::start(&["--dev-no-postgres"], &[]);
    let token = first.root_token();
    let url = first.url.clone();
    wait_healthy(&url);
    register(url.clone(), token.clone()).await;
    let (status, answer) = call(
        &url,
        &token,
        "POST",
        "database/cluster/mine/devkill",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = call(
        &url,
        &token,
        "POST",
        "database/roles/app",
        Some(json!({"default_ttl": "1h"})),
    )
    .await;
    assert!(status < 300, "{answer}");
    let mut issued = Vec::new();
    for _ in 0..2 {
        let (status, answer) =
            call(&url, &token, "GET", "database/creds/mine/devkill/app", None).await;
        assert_eq!(status, 200, "{answer}");
        issued.push(answer["data"]["username"].as_str().unwrap().to_string());
    }
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();

    assert!(
        can_login(pg, &user, &password, "postgres").await,
        "the root password still works"
    );
    for name in &issued {
        assert!(role_exists(pg, name).await, "{name} was issued");
    }
    let mut second = DevServer::start(&["--dev-no-postgres"], &[]);
    let token = second.root_token();
    let url = second.url.clone();
    wait_healthy(&url);
    register(url.clone(), token.clone()).await;
    let (status, found) = call(&url, &token, "GET", "database/reconcile/mine", None).await;
    assert_eq!(status, 200, "{found}");
    let untracked: Vec<String> =
        serde_json::from_value(found["data"]["untracked_users"].clone()).unwrap();
    for name in &issued {
        assert!(untracked.contains(name), "{name} not in {untracked:?}");
    }
    let (status, answer) = call(
        &url,
        &token,
        "POST",
        "database/reconcile/mine",
        Some(json!({"dry_run": false})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    for name in &issued {
        assert!(!role_exists(pg, name).await, "{name} is still there");
    }
}

/// The README's quickstart, top to bottom: the server command it names
/// (`cargo run --release --` being the binary cargo builds, here the test
/// build of it), then its credential command, unchanged, reach a user who
/// logs in.
#[tokio::test(flavor = "multi_thread")]
async fn the_readme_quickstart_reaches_a_credential() {
    let blocks = crate::support::readme::readme_scripts("<!-- quickstart -->");
    assert_eq!(
        blocks.len(),
        2,
        "a server command and a credential command: {blocks:?}"
    );
    let server = blocks[0].trim();
    let args = server
        .strip_prefix("cargo run --release -- ")
        .unwrap_or_else(|| panic!("the quickstart starts the server with cargo run: {server}"));
    let args: Vec<String> = args.split_whitespace().map(String::from).collect();
    let mut credential = blocks[1].trim().to_string();
    // The README's address, unless something on this machine holds it.
    let mut address = "127.0.0.1:8200".to_string();
    if std::net::TcpListener::bind(&address).is_err() {
        let free = format!("127.0.0.1:{}", free_port());
        credential = credential.replace(&address, &free);
        address = free;
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (subcommand, rest) = args.split_at(2);
    assert_eq!(subcommand, ["server", "--dev"]);
    let mut dev = DevServer::start_at(&address, rest, &[]);
    dev.line_with("curl -s");
    let out = bash(&credential, &[]);
    assert!(out.status.success(), "{credential}: {out:?}");
    let answer: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{credential}: {e}: {out:?}"));
    assert!(logs_in(&answer["data"]).await, "{answer}");
}

/// `kill -9` of the dev server leaves no throwaway PostgreSQL behind: the
/// launcher's watchdog stops it and removes its directory.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_dev_server_leaves_no_postgresql_running() {
    let mut dev = DevServer::start(&[], &[]);
    let curl = dev.line_with("curl -s").trim().to_string();
    let out = bash(&curl, &[]);
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    let port = answer["data"]["port"].as_u64().unwrap() as u16;
    dev.child.kill().unwrap(); // SIGKILL: no drop, no shutdown
    dev.child.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "PostgreSQL still listens on {port} after kill -9"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
