//! Scenario 3 (`scale`): many outstanding leases in the embedded storage.
//!
//! The leases are written through the lease manager's own code (the
//! durable write issuing does before creating a user) without HTTP and
//! without PostgreSQL users: their users need not exist, since revoking a
//! missing user is idempotent. Three groups: a bulk far in the future, 1%
//! (10,000 of a million) under one prefix for `LIST`, and 10% falling due
//! at one instant after the server has started. Then a server process of
//! its own is started on the storage and measured.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::child::Child;
use super::pg::{free_port, Pg};
use super::report::{Report, Row, Target};
use super::target::{self, Cluster, Server};
use super::{Error, Plan};
use crate::client::Client;
use crate::lease::{LeaseEntry, LeaseManager};
use crate::server;

const READY_TARGET_S: f64 = 2.0;
const RSS_TARGET_MIB: f64 = 200.0;
const EXPIRY_TARGET: f64 = 5000.0;
/// Tasks writing leases at once (each waits for its own durable writes).
const WRITERS: usize = 64;
const MOUNT: &str = "database/";

/// One group of leases: `count` of them under role `role`, due at `due`.
#[derive(Clone)]
struct Group {
    role: &'static str,
    count: usize,
    due: i64,
}

fn lease_id(cluster: &Cluster, role: &str, seq: usize) -> String {
    // Sequence first: ids sort (and fall due) in writing order; the length
    // of the random part of a real id.
    format!("{}/{seq:08}{}", cluster.creds_path(role), "x".repeat(16))
}

fn lease(cluster: &Cluster, group: &Group, seq: usize, now: i64) -> LeaseEntry {
    let username = format!("v-{}-{seq:08}", group.role);
    LeaseEntry {
        lease_id: lease_id(cluster, group.role, seq),
        mount: MOUNT.into(),
        path: cluster.creds_path(group.role),
        cluster: cluster.name.clone(),
        database: cluster.database.clone(),
        role: group.role.into(),
        username,
        issue_time: now,
        expire_time: group.due,
        last_renewal: None,
        max_end: group.due,
        token_hash: None,
        due: group.due,
        revoking: false,
        failures: 0,
        last_error: None,
        // Ends on the second, as leases written before ms ends did.
        expire_ms: None,
    }
}

/// Writes a group with [`WRITERS`] concurrent writers; returns the time taken.
async fn write(
    leases: &Arc<LeaseManager>,
    cluster: &Cluster,
    group: Group,
) -> Result<Duration, Error> {
    let started = Instant::now();
    let now = Utc::now().timestamp();
    let step = (group.count / 10).max(1);
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let (leases, cluster, group) = (Arc::clone(leases), cluster.clone(), group.clone());
        let done = Arc::clone(&done);
        tasks.spawn(async move {
            for seq in (writer..group.count).step_by(WRITERS) {
                let lease = lease(&cluster, &group, seq, now);
                leases.store_pending(&lease).await?.created();
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % step == 0 {
                    eprintln!(
                        "bench: scale: {n} of {} {} leases written ({:.1?})",
                        group.count,
                        group.role,
                        started.elapsed()
                    );
                }
            }
            Ok::<(), crate::lease::Error>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| Error::Failed(format!("a lease writer failed: {e}")))??;
    }
    Ok(started.elapsed())
}

/// The storage file's size (database and WAL), in MiB.
fn file_mib(db: &std::path::Path) -> f64 {
    let size = |p: std::path::PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let wal = db.with_extension("db-wal");
    (size(db.to_path_buf()) + size(wal)) as f64 / (1024.0 * 1024.0)
}

pub async fn scale(pg: &Pg, plan: &Plan, report: &mut Report) -> Result<(), Error> {
    let total = plan.leases;
    let listed = (total / 100).max(1);
    let expiring = (total / 10).max(1);
    let bulk = total.saturating_sub(listed + expiring);

    let dir = tempfile::Builder::new()
        .prefix("pgsecrets-bench-scale-")
        .tempdir()?;
    let db = dir.path().join("pgsecrets.db");
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let (config_path, config, root) = super::child::durable_config(dir.path(), port).await?;
    let storage = server::unseal(&config).await?;

    // The cluster and database the leases name, so the expiry worker can
    // reach PostgreSQL to find their users gone.
    let setup = Server::start_on(storage.clone(), root.clone()).await?;
    let cluster = setup.register(pg, "scale").await?;
    setup.shutdown().await;

    let leases = LeaseManager::new(storage.clone());
    let far = Utc::now().timestamp() + 30 * 24 * 3600;
    let mut written = Duration::ZERO;
    for (role, count) in [("bulk", bulk), ("list", listed)] {
        written += write(
            &leases,
            &cluster,
            Group {
                role,
                count,
                due: far,
            },
        )
        .await?;
    }
    let rate = (bulk + listed) as f64 / written.as_secs_f64();
    // Due once the server has started and been measured: writing them
    // takes about expiring / rate.
    let expire_at = Utc::now().timestamp()
        + (expiring as f64 / rate * 1.5).ceil() as i64
        + plan.scale_margin.as_secs() as i64;
    let group = Group {
        role: "expire",
        count: expiring,
        due: expire_at,
    };
    written += write(&leases, &cluster, group).await?;
    drop(leases);
    drop(storage);
    report.note(format!(
        "scale: {total} leases written through LeaseManager::store_pending by {WRITERS} tasks in {:.1} s ({:.0} leases/s); storage file {:.0} MiB",
        written.as_secs_f64(),
        total as f64 / written.as_secs_f64(),
        file_mib(&db)
    ));

    let (child, ready) = Child::start(
        &config_path,
        &url,
        &dir.path().join("server.log"),
        Duration::from_secs(120),
    )
    .await?;
    let rss = child.rss_mib()?;
    let client = target::client(&url, &root)?;
    let list_prefix = format!("sys/leases/lookup/{}/", cluster.creds_path("list"));
    let mut list_times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let reply = client.list(&list_prefix).await?;
        list_times.push(started.elapsed().as_secs_f64() * 1000.0);
        let keys = reply.keys().len();
        if keys != listed {
            return Err(Error::Failed(format!(
                "LIST {list_prefix} gave {keys} keys, expected {listed}"
            )));
        }
    }
    list_times.sort_by(f64::total_cmp);
    let list_ms = list_times[list_times.len() / 2];

    let now = Utc::now().timestamp();
    if now >= expire_at {
        report.note(format!(
            "scale: the {expiring} expiring leases fell due {} s before the measurements ended; expiry is timed from now",
            now - expire_at
        ));
    }
    let until_due = Duration::from_secs(expire_at.saturating_sub(now).max(0) as u64);
    tokio::time::sleep(until_due).await;
    let due = Instant::now();
    let last = lease_id(&cluster, "expire", expiring - 1);
    wait_revoked(&client, &last, &cluster, plan.revoke_timeout).await?;
    let expiry = due.elapsed();
    let peak = child.peak_rss_mib()?;
    child.stop().await;
    report.note(format!(
        "scale: LIST of {listed} leases: median {list_ms:.1} ms of 5 ({}); server peak RSS {peak:.0} MiB (VmHWM, after the expiry)",
        list_times
            .iter()
            .map(|t| format!("{t:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let case = format!("{total} leases");
    report.add([
        Row::new("scale", &case, "ready s")
            .value(ready.as_secs_f64())
            .target(Target::Below(READY_TARGET_S)),
        Row::new("scale", &case, "RSS MiB")
            .value(rss)
            .target(Target::Below(RSS_TARGET_MIB)),
        Row::new("scale", format!("LIST {listed}-lease prefix"), "ms").value(list_ms),
        Row::new("scale", format!("{expiring} expire at once"), "leases/s")
            .value(expiring as f64 / expiry.as_secs_f64())
            .target(Target::AtLeast(EXPIRY_TARGET)),
    ]);
    Ok(())
}

/// Waits until the last lease to fall due is gone, then until its whole
/// prefix is empty (a failed revocation would stay listed).
async fn wait_revoked(
    client: &Client,
    last: &str,
    cluster: &Cluster,
    within: Duration,
) -> Result<(), Error> {
    let deadline = Instant::now() + within;
    let prefix = format!("sys/leases/lookup/{}/", cluster.creds_path("expire"));
    loop {
        let gone = match client.lease_lookup(last).await {
            Err(e) if e.status() == Some(400) => match client.list(&prefix).await {
                Err(e) if e.is_not_found() => true,
                Ok(reply) => reply.keys().is_empty(),
                Err(e) => return Err(e.into()),
            },
            Ok(_) => false,
            Err(e) => return Err(e.into()),
        };
        if gone {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Failed(format!(
                "leases under {prefix} still there after {within:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
