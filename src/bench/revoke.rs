//! Scenario 2 (`revoke`): dropping N users, the floor (16 management-role
//! connections sending pgsecrets' revocation statements) against pgsecrets'
//! expiry worker and `sys/leases/revoke-prefix`.
//!
//! The floor is measured twice, before and after expiry, and pooled.
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

    // The floor is measured before and after expiry, and the two pooled:
    // on a shared machine whose speed drifts within minutes, one floor
    // measurement half a minute away from pgsecrets' is a different machine.
    let (before, issue_time) = floor_run(pg, &cluster, n).await?;

    // Expiry: issue with a TTL that outlasts issuing (pgsecrets issues
    // slower than the floor), stop, wait until all are due, start again.
    let ttl = (issue_time.as_secs_f64() * 4.0).ceil() as u64 + 2;
    server.write_role("rvx", ttl, ITERATIONS).await?;
    let ops = http_load::creds_ops(&server.url, &cluster.creds_path("rvx"), &token, CONCURRENCY)?;
    let (_, error) = load::run_count(ops, n).await;
    check("issuing for expiry", error)?;
    let all_due = Instant::now() + Duration::from_secs(ttl + 1);
    let pause = all_due.saturating_duration_since(Instant::now());
    let admin = super::pg::admin(pg).await?;
    let server = server.restart(pause).await?;
    let started = Instant::now();
    let expiring = count_roles(&admin, "v-rvx-").await?;
    wait_gone(&admin, "v-rvx-", plan.revoke_timeout).await?;
    let expiry_time = started.elapsed();
    let expiry_rate = expiring as f64 / expiry_time.as_secs_f64();
    eprintln!("bench: revoke expiry: {expiring} users in {expiry_time:.2?}");
    super::pg::vacuum_role_catalogs(pg).await?;
    let (after, _) = floor_run(pg, &cluster, n).await?;
    let floor_rate = (2 * n) as f64 / (before + after).as_secs_f64();
    eprintln!(
        "bench: revoke floor: {:.0} users/s before expiry, {:.0} after",
        n as f64 / before.as_secs_f64(),
        n as f64 / after.as_secs_f64()
    );

    // revoke-prefix: one request revoking every lease of a role.
    server.write_role("rvp", 3600, ITERATIONS).await?;
    let ops = http_load::creds_ops(&server.url, &cluster.creds_path("rvp"), &token, CONCURRENCY)?;
    let (_, error) = load::run_count(ops, n).await;
    check("issuing for revoke-prefix", error)?;
    let started = Instant::now();
    let prefix = format!("sys/leases/revoke-prefix/{}", cluster.creds_path("rvp"));
    server
        .client
        .request(reqwest::Method::PUT, &prefix, &[], None)
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

/// The floor once: `n` users created directly, then dropped directly (the
/// drop is what is measured). Returns the drop's and the creation's time.
async fn floor_run(
    pg: &Pg,
    cluster: &super::target::Cluster,
    n: usize,
) -> Result<(Duration, Duration), Error> {
    let clients = floor::connections(pg, cluster, CONCURRENCY).await?;
    let created = Arc::new(Mutex::new(Vec::new()));
    let ops = floor::issue_ops(
        &clients,
        cluster,
        "rvf",
        ITERATIONS,
        Some(Arc::clone(&created)),
        None,
    );
    let (issue_time, error) = load::run_count(ops, n).await;
    check("floor issuing", error)?;
    let queue: VecDeque<String> = created.lock().expect("created").drain(..).collect();
    let ops = floor::revoke_ops(&clients, cluster, Arc::new(Mutex::new(queue)));
    let (floor_time, error) = load::run_count(ops, n).await;
    check("floor revoking", error)?;
    drop(clients);
    eprintln!("bench: revoke floor: {n} users in {floor_time:.2?}");
    // Each measured phase starts without the previous one's dead catalog rows.
    super::pg::vacuum_role_catalogs(pg).await?;
    Ok((floor_time, issue_time))
}

/// Waits until no role name starts with `prefix`.
async fn wait_gone(
    admin: &tokio_postgres::Client,
    prefix: &str,
    within: Duration,
) -> Result<(), Error> {
    let deadline = Instant::now() + within;
    while any_role(admin, prefix).await? {
        if Instant::now() > deadline {
            let left = count_roles(admin, prefix).await?;
            return Err(Error::Failed(format!(
                "{left} users {prefix}* still exist after {within:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Whether any role name starts with `prefix` (ASCII, not empty): one probe
/// of `pg_authid`'s name index. Polled while expiry runs, so it must cost
/// PostgreSQL next to nothing; counting `pg_roles` reads every role (about
/// 1.2 ms per poll with 10,000 of them, every 20 ms).
async fn any_role(admin: &tokio_postgres::Client, prefix: &str) -> Result<bool, Error> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let end = String::from_utf8(end)
        .map_err(|_| Error::Failed(format!("role prefix {prefix:?} is not ASCII")))?;
    let row = admin
        .query_opt(
            "SELECT 1 FROM pg_authid WHERE rolname >= $1 AND rolname < $2 LIMIT 1",
            &[&prefix, &end],
        )
        .await?;
    Ok(row.is_some())
}
