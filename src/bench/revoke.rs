//! Scenario 2 (`revoke`): dropping N users, the floor (16 management-role
//! connections sending pgsecrets' revocation statements) against pgsecrets'
//! expiry worker and `sys/leases/revoke-prefix`.
//!
//! To make N leases expire at once, they are issued with a TTL just longer
//! than issuing takes, the server is stopped until every one is due and
//! then started again on the same storage: from that start to the last
//! user gone from `pg_roles` is the expiry time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::load;
use super::pg::{count_roles, Pg};
use super::report::{Row, Target};
use super::target::Server;
use super::{floor, http_load, Error, Plan};

/// Connections of the floor, and HTTP clients issuing for pgsecrets: the
/// expiry worker revokes 16 leases at a time.
const CONCURRENCY: usize = 16;
/// SCRAM iterations of the users revoked here (issuing is not measured).
const ITERATIONS: u32 = 1;
const TARGET_EXPIRY: f64 = 0.8;

fn check(what: &str, error: Option<String>) -> Result<(), Error> {
    match error {
        Some(e) => Err(Error::Failed(format!("{what}: {e}"))),
        None => Ok(()),
    }
}

pub async fn revoke(pg: &Pg, plan: &Plan) -> Result<Vec<Row>, Error> {
    let n = plan.revoke_users;
    let server = Server::start().await?;
    let cluster = server.register(pg, "revoke").await?;
    let token = server.app_token().await?;

    // The floor: create n users directly, then drop them directly.
    let clients = floor::connections(pg, &cluster, CONCURRENCY).await?;
    let created = Arc::new(Mutex::new(Vec::new()));
    let ops = floor::issue_ops(
        &clients,
        &cluster,
        "rvf",
        ITERATIONS,
        Some(Arc::clone(&created)),
    );
    let (issue_time, error) = load::run_count(ops, n).await;
    check("floor issuing", error)?;
    let queue: VecDeque<String> = created.lock().expect("created").drain(..).collect();
    let ops = floor::revoke_ops(&clients, &cluster, Arc::new(Mutex::new(queue)));
    let (floor_time, error) = load::run_count(ops, n).await;
    check("floor revoking", error)?;
    drop(clients);
    let floor_rate = n as f64 / floor_time.as_secs_f64();
    eprintln!("bench: revoke floor: {n} users in {floor_time:.2?}");
    // Each measured phase starts without the previous one's dead catalog rows.
    pg.vacuum_role_catalogs().await?;

    // Expiry: issue with a TTL that outlasts issuing (pgsecrets issues
    // slower than the floor), stop, wait until all are due, start again.
    let ttl = (issue_time.as_secs_f64() * 4.0).ceil() as u64 + 2;
    server.write_role("rvx", ttl, ITERATIONS).await?;
    let ops = http_load::creds_ops(&server.url, &cluster.creds_path("rvx"), &token, CONCURRENCY)?;
    let (_, error) = load::run_count(ops, n).await;
    check("issuing for expiry", error)?;
    let all_due = Instant::now() + Duration::from_secs(ttl + 1);
    let pause = all_due.saturating_duration_since(Instant::now());
    let admin = pg.admin().await?;
    let server = server.restart(pause).await?;
    let started = Instant::now();
    let expiring = count_roles(&admin, "v-rvx-").await?;
    wait_gone(&admin, "v-rvx-", plan.revoke_timeout).await?;
    let expiry_time = started.elapsed();
    let expiry_rate = expiring as f64 / expiry_time.as_secs_f64();
    eprintln!("bench: revoke expiry: {expiring} users in {expiry_time:.2?}");
    pg.vacuum_role_catalogs().await?;

    // revoke-prefix: one request revoking every lease of a role.
    server.write_role("rvp", 3600, ITERATIONS).await?;
    let ops = http_load::creds_ops(&server.url, &cluster.creds_path("rvp"), &token, CONCURRENCY)?;
    let (_, error) = load::run_count(ops, n).await;
    check("issuing for revoke-prefix", error)?;
    let started = Instant::now();
    server
        .call(
            "PUT",
            &format!("sys/leases/revoke-prefix/{}", cluster.creds_path("rvp")),
            None,
        )
        .await?;
    let prefix_time = started.elapsed();
    let left = count_roles(&admin, "v-rvp-").await?;
    if left != 0 {
        return Err(Error::Failed(format!(
            "revoke-prefix answered but {left} users are left"
        )));
    }
    eprintln!("bench: revoke-prefix: {n} users in {prefix_time:.2?}");
    server.shutdown().await;

    Ok(vec![
        Row::new("revoke", format!("expiry n={expiring}"), "users/s")
            .floor(floor_rate)
            .value(expiry_rate)
            .target(Target::RatioAtLeast(TARGET_EXPIRY)),
        Row::new("revoke", format!("revoke-prefix n={n}"), "users/s")
            .floor(floor_rate)
            .value(n as f64 / prefix_time.as_secs_f64()),
    ])
}

/// Waits until no role name starts with `prefix`.
async fn wait_gone(
    admin: &tokio_postgres::Client,
    prefix: &str,
    within: Duration,
) -> Result<(), Error> {
    let deadline = Instant::now() + within;
    loop {
        let left = count_roles(admin, prefix).await?;
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Failed(format!(
                "{left} users {prefix}* still exist after {within:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
