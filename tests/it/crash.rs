//! The product's promise under a hard crash: the server is SIGKILLed in the
//! middle of a stream of concurrent credential requests; after a restart no
//! `v-` user exists that no lease tracks, and every tracked one is still
//! revoked on expiry.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::pg::{Pg, PgVersion};
use crate::support::process::{
    call, durable_server, register_over_http, start_with_config as start,
    wait_healthy_async as wait_healthy,
};

/// `v-` users that are neither management nor objects-owner roles.
async fn issued_users(pg: &Pg) -> Vec<String> {
    pg.admin()
        .await
        .query(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'v-%' AND rolname NOT LIKE 'v-manage-%' AND rolname NOT LIKE 'v-owner-%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_during_issuing_leaves_no_untracked_user() {
    let pg = Pg::start(PgVersion::under_test());
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (config, url, root, mut server) = durable_server(dir.path(), &client).await;
    register_over_http(
        &client,
        &url,
        &root,
        &pg,
        "crash",
        json!({"default_ttl": "8s", "password_scram_iterations": 1}),
    )
    .await;

    // A stream of concurrent requests, and a SIGKILL in the middle of it.
    let creds = format!("{url}/v1/database/creds/crash/crashdb/app");
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (client, creds, root) = (client.clone(), creds.clone(), root.clone());
        workers.push(tokio::spawn(async move {
            let mut issued = 0;
            for _ in 0..500 {
                match client
                    .get(&creds)
                    .header("X-Vault-Token", &root)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => issued += 1,
                    Ok(_) => {}
                    Err(_) => break, // the server is gone
                }
            }
            issued
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Command::new("kill")
        .args(["-KILL", &server.id().to_string()])
        .status()
        .unwrap();
    let _ = server.wait();
    let mut issued = 0;
    for w in workers {
        issued += w.await.unwrap();
    }
    assert!(issued > 0, "no credential was issued before the kill");
    let users_at_crash = issued_users(&pg).await.len();

    // Restart on the same storage (a second later, so intents of the killed
    // process are older than the new one).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut server = start(&config);
    wait_healthy(&client, &url).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = call(
            &client,
            "GET",
            &format!("{url}/v1/database/reconcile/crash"),
            &root,
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (_, leases) = call(
            &client,
            "LIST",
            &format!("{url}/v1/sys/leases/lookup/database/creds/crash/crashdb/app"),
            &root,
            None,
        )
        .await;
        let lease_count = leases["data"]["keys"]
            .as_array()
            .map(|k| k.len())
            .unwrap_or(0);
        let users = issued_users(&pg).await.len();
        if body["data"]["untracked_users"] == json!([]) && users <= lease_count {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after restart: {users} users, {lease_count} leases, reconcile {body}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("issued {issued} before the kill; {users_at_crash} users existed at the crash");
    // Every tracked user is still revoked on expiry.
    let deadline = Instant::now() + Duration::from_secs(40);
    while !issued_users(&pg).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "users left after expiry: {:?}",
            issued_users(&pg).await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    let _ = server.wait();
}
