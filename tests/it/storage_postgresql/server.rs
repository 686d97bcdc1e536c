//! A server, and the binary, on postgresql storage: state across restarts,
//! waiting for the database at start, and the configuration as an
//! operator writes it.

use std::sync::Arc;

use pgsecrets::storage::postgresql::{PgBackend, Settings};
use pgsecrets::storage::{Backend, Error, Op, Storage};
use serde_json::json;

use super::{fresh_database, sql, table, url};
use crate::support::pg::{Pg, PgVersion};
use crate::support::server::TestServer;

/// The same server journey as `restart.rs` for SQLite: state written
/// through a real server survives a restart on PostgreSQL storage, and the
/// table holds none of it in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_postgresql_storage_keeps_its_state_across_a_restart() {
    let url = fresh_database().await;
    let key = [9u8; 32];
    let backend = Arc::new(PgBackend::connect(&Settings::new(&url)).await.unwrap());
    let storage = Storage::initialize(backend, &key).await.unwrap();
    let root = pgsecrets::server::initialize(&storage, None).await.unwrap();
    let s = TestServer::start_on(storage, root.clone(), 1 << 20).await;
    let policy = "path \"sys/mounts\" { capabilities = [\"read\"] } # marker-policy-text";
    assert_eq!(
        s.write("sys/policies/acl/keeper", json!({"policy": policy}))
            .await
            .status,
        204
    );
    let token = s.token_with(&["keeper"]).await;
    s.shutdown().await;

    let rows = table(&sql(&url).await).await;
    let contains = |needle: &str| {
        rows.iter()
            .any(|(_, v)| v.windows(needle.len()).any(|w| w == needle.as_bytes()))
    };
    assert!(!contains(&token) && !contains(&root), "a token in clear");
    assert!(!contains("marker-policy-text"), "policy text in clear");

    let backend = Arc::new(PgBackend::connect(&Settings::new(&url)).await.unwrap());
    let storage = Storage::unseal(backend, &key).await.unwrap();
    let s = TestServer::start_on(storage, root, 1 << 20).await;
    assert_eq!(s.read_as(&token, "sys/mounts").await.status, 200);
    assert_eq!(
        s.read("sys/policies/acl/keeper").await.data()["policy"],
        policy
    );
    s.shutdown().await;
}

/// Nodes and their database often start together: an unreachable database
/// is retried (capped backoff) until it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_waits_for_a_database_that_is_not_up_yet() {
    let pg = Arc::new(Pg::start(PgVersion::under_test()));
    let settings = Settings::new(url(&pg, pg.password(), "postgres"));
    pg.stop();
    let e = PgBackend::connect_retrying(&settings, Some(1))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PostgresUnreachable { .. }), "{e:?}");
    let waiting = tokio::spawn(async move { PgBackend::connect_retrying(&settings, None).await });
    let restarted = Arc::clone(&pg);
    tokio::task::spawn_blocking(move || restarted.restart())
        .await
        .unwrap();
    // A bound against hanging the run, not a timing assertion.
    let backend = tokio::time::timeout(std::time::Duration::from_secs(120), waiting)
        .await
        .expect("connected once the database was up")
        .unwrap()
        .unwrap();
    backend.apply(&[Op::put("k", "v")]).unwrap();
    assert_eq!(backend.get("k").unwrap().as_deref(), Some(&b"v"[..]));

    // A database restart while running needs no restart of ours: the pool
    // replaces the connections the restart closed. A request caught by the
    // restart may fail; the next ones succeed.
    pg.restart();
    let outcomes: Vec<bool> = (0..3)
        .map(|i| backend.apply(&[Op::put("k", format!("{i}"))]).is_ok())
        .collect();
    assert!(outcomes[1..].iter().all(|ok| *ok), "{outcomes:?}");
    assert_eq!(backend.get("k").unwrap().as_deref(), Some(&b"2"[..]));
}

/// `operator init` and `server` with `backend = "postgresql"`, the URL
/// taken from `PGSECRETS_PG_CONNECTION_URL` over the file's (whose password
/// is wrong): the environment wins, as Vault's `VAULT_PG_CONNECTION_URL`.
#[test]
fn operator_init_and_server_run_on_postgresql_storage_with_the_url_from_the_environment() {
    use crate::support::process::{binary, curl, free_port, sigterm, wait_exit, wait_healthy};
    use std::process::Stdio;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = rt.block_on(fresh_database());
    let pg = Pg::shared();
    let database = url.rsplit('/').next().unwrap();
    let file_url = self::url(pg, "not-the-password", database);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("pgsecrets.toml");
    std::fs::write(
        &config,
        format!(
            "[listener]\naddress = \"127.0.0.1:{port}\"\n[storage]\nbackend = \"postgresql\"\n\
             connection_url = \"{file_url}\"\n[seal]\nkey_file = \"unseal.key\"\n"
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut command = binary();
        command
            .args(args)
            .arg("--config")
            .arg(&config)
            .env(pgsecrets::storage::postgresql::CONNECTION_URL_ENV, &url);
        command
    };
    let out = run(&["operator", "init"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(pg.password()));
    let root = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Root Token: "))
        .expect("root token printed")
        .to_string();
    let again = run(&["operator", "init"]).output().unwrap();
    assert_eq!(again.status.code(), Some(1));

    let api = format!("http://127.0.0.1:{port}");
    for round in 0..2 {
        let mut child = run(&["server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_healthy(&api);
        if round == 0 {
            let (code, body) = curl(&[
                "-X",
                "POST",
                "-H",
                &format!("X-Vault-Token: {root}"),
                "-d",
                r#"{"policy": "path \"sys/mounts\" { capabilities = [\"read\"] }"}"#,
                &format!("{api}/v1/sys/policies/acl/survivor"),
            ]);
            assert_eq!(code, 204, "{body}");
        }
        let (code, body) = curl(&[
            "-H",
            &format!("X-Vault-Token: {root}"),
            &format!("{api}/v1/sys/policies/acl/survivor"),
        ]);
        assert_eq!(code, 200, "round {round}: {body}");
        sigterm(&child);
        assert!(wait_exit(&mut child).success());
    }

    // Without the environment, the file's wrong password is refused,
    // named by host:port and never shown.
    let out = binary()
        .args(["server", "--config"])
        .arg(&config)
        .env_remove(pgsecrets::storage::postgresql::CONNECTION_URL_ENV)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:{}", pg.host(), pg.port())),
        "{stderr}"
    );
    assert!(
        !stderr.contains("not-the-password") && !stderr.contains(pg.password()),
        "{stderr}"
    );
}
