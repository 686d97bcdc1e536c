//! Scenario `peer`: pgsecrets and OpenBao side by side in one run, on the
//! same PostgreSQL server and database, both as child processes (so each
//! one's CPU time and memory are its own), both driven over HTTP by the
//! same bare load ([`http_load`]) with an application token that may only
//! read credentials.
//!
//! Twice: in memory (pgsecrets `server --dev` against `bao server -dev`)
//! and durable (pgsecrets on its embedded SQLite storage against OpenBao on
//! its integrated raft storage). PostgreSQL is durable in both. In each:
//!
//! 1. 20,000 leases issued to each (c=16), then each server's resident
//!    memory; durable: each restarted, timed from the new process's start
//!    until `sys/health` is 200 and a renewal of one of those leases
//!    answers 200 (OpenBao's unseal included, sent as soon as it answers);
//! 2. revoke-prefix of 2,000 leases: from the request until no user of
//!    them is left in `pg_roles`;
//! 3. 2,000 leases with a 5 s TTL: from each lease's end (its request's
//!    send time + TTL, taken client-side) until its user is gone from
//!    `pg_roles`, polled every 50 ms while they are issued and after;
//! 4. credentials per second, latency and server CPU per credential at
//!    c=1 and c=16, in windows alternated OpenBao, pgsecrets, OpenBao,
//!    pgsecrets so drift weighs on both (`--quick`: one round).
//!
//! Every window and batch checks that no answer was other than 2xx and
//! that the issued users exist in `pg_roles`.

pub mod openbao;
pub mod pgsecrets;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openbao::{OpenBao, Roles};
use pgsecrets::Pgsecrets;

use super::child::Child;
use super::http_load::{self, Credential, Issued};
use super::load::{self, Sample};
use super::pg::Pg;
use super::report::{Report, Row, Target};
use super::target::{self, Cluster};
use super::{Error, Plan};
use crate::client::Client;

/// The issue's targets (pgsecrets / OpenBao), judged on the durable rows.
const TARGET_CREDS_C16: f64 = 2.5;
const TARGET_CREDS_C1: f64 = 1.7;
const TARGET_P99_C16: f64 = 0.5;
const TARGET_REVOKE_PREFIX: f64 = 6.0;
const TARGET_LAG_P99_S: f64 = 0.5;
const TARGET_RSS: f64 = 0.2;
const TARGET_RESTART: f64 = 0.1;
/// Issuing connections of the lease batches.
const BATCH_CONCURRENCY: usize = 16;
/// TTL of every lease but the expiring ones: none ends within the run.
const LONG_TTL: u64 = 3600;
/// How often `pg_roles` is polled for dropped users.
const EXPIRY_POLL: Duration = Duration::from_millis(50);
const REVOKE_POLL: Duration = Duration::from_millis(10);
/// Users checked in `pg_roles` after each window (evenly spread).
const CHECKED_PER_WINDOW: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Memory,
    Durable,
}

impl Storage {
    fn label(self) -> &'static str {
        match self {
            Storage::Memory => "in-memory",
            Storage::Durable => "durable",
        }
    }
}

/// Runs the scenario, or notes why it was skipped (no bao binary).
pub async fn peer(
    pg: &Pg,
    plan: &Plan,
    bin: Option<&Path>,
    report: &mut Report,
) -> Result<(), Error> {
    if let Some(given) = bin.filter(|p| !p.is_file()) {
        return Err(Error::Setup(format!(
            "--openbao {}: no such file",
            given.display()
        )));
    }
    let Some(bin) = openbao::find(bin) else {
        report.note(
            "peer: skipped: no OpenBao binary (give --openbao PATH, or put bao in .venv-compat/bin or on PATH)",
        );
        return Ok(());
    };
    let version = std::process::Command::new(&bin)
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    report.note(format!(
        "peer: {version} from {}; the floor column of peer rows is OpenBao's figure, ratio = pgsecrets / OpenBao; targets judged on the durable rows",
        bin.display()
    ));
    for storage in [Storage::Memory, Storage::Durable] {
        eprintln!("bench: peer: {}", storage.label());
        let rows = compare(pg, plan, &bin, storage, report).await?;
        report.add(rows);
    }
    Ok(())
}

/// One of the two servers under test.
enum Server {
    OpenBao(OpenBao, Roles),
    Pgsecrets(Pgsecrets, Cluster),
}

struct Side {
    server: Server,
    /// Root token.
    client: Client,
    /// The application's token: reads credentials only.
    token: String,
}

impl Side {
    fn name(&self) -> &'static str {
        match self.server {
            Server::OpenBao(..) => "openbao",
            Server::Pgsecrets(..) => "pgsecrets",
        }
    }

    fn url(&self) -> &str {
        match &self.server {
            Server::OpenBao(b, _) => &b.url,
            Server::Pgsecrets(p, _) => &p.url,
        }
    }

    fn creds_path(&self, role: &str) -> String {
        match &self.server {
            Server::OpenBao(..) => OpenBao::creds_path(role),
            Server::Pgsecrets(_, cluster) => cluster.creds_path(role),
        }
    }

    /// Role `role` as each server's default setup has it (SCRAM with 4096
    /// iterations on both: OpenBao's is fixed, pgsecrets' default).
    async fn role(&self, role: &str, ttl: u64) -> Result<(), Error> {
        match &self.server {
            Server::OpenBao(b, roles) => b.write_role(roles, role, ttl).await,
            Server::Pgsecrets(..) => {
                target::write_role(
                    &self.client,
                    role,
                    ttl,
                    crate::postgres::scram::DEFAULT_ITERATIONS,
                )
                .await
            }
        }
    }

    fn process(&self) -> Result<&Child, Error> {
        match &self.server {
            Server::OpenBao(b, _) => b.process(),
            Server::Pgsecrets(p, _) => p.process(),
        }
    }

    async fn restart(&mut self) -> Result<Instant, Error> {
        match &mut self.server {
            Server::OpenBao(b, _) => b.restart().await,
            Server::Pgsecrets(p, _) => p.restart().await,
        }
    }

    async fn stop(&mut self) {
        match &mut self.server {
            Server::OpenBao(b, _) => b.stop().await,
            Server::Pgsecrets(p, _) => p.stop().await,
        }
    }

    fn ops(&self, role: &str, concurrency: usize, issued: &Issued) -> Result<Vec<load::Op>, Error> {
        http_load::collecting_ops(
            self.url(),
            &self.creds_path(role),
            &self.token,
            concurrency,
            Some(Arc::clone(issued)),
        )
    }
}

/// Both servers on `storage`, measured; the rows of their comparison.
async fn compare(
    pg: &Pg,
    plan: &Plan,
    bin: &Path,
    storage: Storage,
    report: &mut Report,
) -> Result<Vec<Row>, Error> {
    let tag = match storage {
        Storage::Memory => "m",
        Storage::Durable => "d",
    };
    let pgs = Pgsecrets::start(storage).await?;
    let pgs_client = pgs.client()?;
    let cluster = target::register(&pgs_client, pg, &format!("peer{tag}")).await?;
    let bao = OpenBao::start(bin, storage).await?;
    let roles = bao.configure(pg, &cluster.database, tag).await?;
    let bao_client = bao.client()?;
    let mut sides = [
        Side {
            token: target::app_token(&bao_client).await?,
            client: bao_client,
            server: Server::OpenBao(bao, roles),
        },
        Side {
            token: target::app_token(&pgs_client).await?,
            client: pgs_client,
            server: Server::Pgsecrets(pgs, cluster),
        },
    ];
    let admin = super::pg::admin(pg).await?;
    let label = storage.label();
    let judged = storage == Storage::Durable;
    let target = |t: Target| judged.then_some(t);
    let mut rows = Vec::new();

    // 1. Memory with many leases, and a restart with them.
    let mut rss = [0.0; 2];
    let mut restart = [f64::NAN; 2];
    for (i, side) in sides.iter_mut().enumerate() {
        side.role("hold", LONG_TTL).await?;
        let issued = issue(side, &admin, "hold", plan.peer_hold).await?;
        rss[i] = side.process()?.rss_mib()?;
        if storage == Storage::Durable {
            let last = issued
                .last()
                .map(|c| c.lease_id.clone())
                .unwrap_or_default();
            let started = side.restart().await?;
            served(&side.client, &last).await?;
            restart[i] = started.elapsed().as_secs_f64();
        }
        eprintln!(
            "bench: peer {label} {}: {} leases, RSS {:.1} MiB{}",
            side.name(),
            issued.len(),
            rss[i],
            match storage {
                Storage::Durable => format!(", restart until served {:.3} s", restart[i]),
                Storage::Memory => String::new(),
            }
        );
        // Their users go directly: the leases stay, far from their end.
        let names: Vec<String> = issued.into_iter().map(|c| c.username).collect();
        super::pg::drop_named(pg, &names).await?;
    }
    let case = |what: &str| format!("vs OpenBao, {label}, {what}");
    rows.push(
        Row::new(
            "peer",
            case(&format!("{} leases", plan.peer_hold)),
            "RSS MiB",
        )
        .floor(rss[0])
        .value(rss[1])
        .with(target(Target::RatioAtMost(TARGET_RSS))),
    );
    if storage == Storage::Durable {
        rows.push(
            Row::new(
                "peer",
                case(&format!("restart, {} leases", plan.peer_hold)),
                "until served s",
            )
            .floor(restart[0])
            .value(restart[1])
            .with(target(Target::RatioAtMost(TARGET_RESTART))),
        );
    }

    // 2. revoke-prefix.
    let n = plan.peer_leases;
    let mut rate = [0.0; 2];
    for (i, side) in sides.iter().enumerate() {
        side.role("rvp", LONG_TTL).await?;
        let issued = issue(side, &admin, "rvp", n).await?;
        let names: Vec<String> = issued.into_iter().map(|c| c.username).collect();
        let started = Instant::now();
        let path = format!("sys/leases/revoke-prefix/{}", side.creds_path("rvp"));
        side.client
            .request(reqwest::Method::PUT, &path, &[], None)
            .await?;
        let answered = started.elapsed();
        wait_gone(&admin, &names, plan.revoke_timeout).await?;
        let took = started.elapsed();
        rate[i] = n as f64 / took.as_secs_f64();
        eprintln!(
            "bench: peer {label} {}: revoke-prefix of {n}: answered in {answered:.2?}, users gone in {took:.2?}",
            side.name()
        );
    }
    rows.push(
        Row::new("peer", case(&format!("revoke-prefix n={n}")), "users/s")
            .floor(rate[0])
            .value(rate[1])
            .with(target(Target::RatioAtLeast(TARGET_REVOKE_PREFIX))),
    );

    // 3. Expiry on time.
    let mut lags = Vec::new();
    for side in &sides {
        let lag = expiry(side, &admin, n, plan.peer_ttl, plan.revoke_timeout).await?;
        eprintln!(
            "bench: peer {label} {}: expiry of {n}: lag p50 {:.3} s, p99 {:.3} s, max {:.3} s, {} early",
            side.name(),
            lag.percentile(50.0),
            lag.percentile(99.0),
            lag.percentile(100.0),
            lag.early
        );
        lags.push(lag);
    }
    let expiry_case = case(&format!("expiry n={n} ttl={}s", plan.peer_ttl.as_secs()));
    let (b, p) = (&lags[0], &lags[1]);
    rows.extend([
        Row::new("peer", &expiry_case, "lag p50 s")
            .floor(b.percentile(50.0))
            .value(p.percentile(50.0)),
        Row::new("peer", &expiry_case, "lag p99 s")
            .floor(b.percentile(99.0))
            .value(p.percentile(99.0))
            .with(target(Target::BelowAndRatioAtMost(TARGET_LAG_P99_S, 1.0))),
        Row::new("peer", &expiry_case, "lag max s")
            .floor(b.percentile(100.0))
            .value(p.percentile(100.0)),
        Row::new("peer", &expiry_case, "dropped early")
            .floor(b.early as f64)
            .value(p.early as f64)
            .with(target(Target::AtMost(0.0))),
    ]);

    // 4. Throughput, alternated.
    for concurrency in [1, 16] {
        for side in &sides {
            side.role("tp", LONG_TTL).await?;
        }
        let mut pooled: [Option<(Sample, Duration)>; 2] = [None, None];
        for _round in 0..plan.peer_rounds {
            for (i, side) in sides.iter().enumerate() {
                let (sample, cpu) = window(side, pg, &admin, concurrency, plan).await?;
                eprintln!(
                    "bench: peer {label} {} c={concurrency}: {:.0} creds/s, p99 {:.2} ms, CPU {:.2} ms/cred",
                    side.name(),
                    sample.per_second(),
                    sample.percentile_ms(99.0),
                    cpu.as_secs_f64() * 1000.0 / sample.ok.max(1) as f64
                );
                match pooled[i].as_mut() {
                    Some((s, c)) => {
                        s.absorb(sample);
                        *c += cpu;
                    }
                    None => pooled[i] = Some((sample, cpu)),
                }
            }
        }
        let [Some((bs, bc)), Some((ps, pc))] = pooled else {
            return Err(Error::Failed("a side measured no window".into()));
        };
        let cpu_per = |s: &Sample, c: Duration| c.as_secs_f64() * 1000.0 / s.ok.max(1) as f64;
        let c_case = case(&format!("c={concurrency}"));
        let (creds_target, p99_target) = match concurrency {
            16 => (TARGET_CREDS_C16, Some(TARGET_P99_C16)),
            _ => (TARGET_CREDS_C1, None),
        };
        rows.extend([
            Row::new("peer", &c_case, "creds/s")
                .floor(bs.per_second())
                .value(ps.per_second())
                .with(target(Target::RatioAtLeast(creds_target))),
            Row::new("peer", &c_case, "p50 ms")
                .floor(bs.percentile_ms(50.0))
                .value(ps.percentile_ms(50.0)),
            Row::new("peer", &c_case, "p99 ms")
                .floor(bs.percentile_ms(99.0))
                .value(ps.percentile_ms(99.0))
                .with(p99_target.and_then(|t| target(Target::RatioAtMost(t)))),
            Row::new("peer", &c_case, "CPU ms/cred")
                .floor(cpu_per(&bs, bc))
                .value(cpu_per(&ps, pc)),
        ]);
    }

    for side in &mut sides {
        side.stop().await;
    }
    report.note(format!(
        "peer {label}: server CPU is utime+stime of the server process (and any children) over each measured window; expiry lag is polled every {} ms, so it is up to that much late",
        EXPIRY_POLL.as_millis()
    ));
    Ok(rows)
}

/// `n` credentials of `role` at c=16, all answered 2xx, their users checked.
async fn issue(
    side: &Side,
    admin: &tokio_postgres::Client,
    role: &str,
    n: usize,
) -> Result<Vec<Credential>, Error> {
    let issued: Issued = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let ops = side.ops(role, BATCH_CONCURRENCY, &issued)?;
    let (_, error) = load::run_count(ops, n).await;
    if let Some(e) = error {
        return Err(Error::Failed(format!(
            "{} issuing {n} of {role}: a non-2xx answer: {e}",
            side.name()
        )));
    }
    let issued = std::mem::take(&mut *issued.lock().expect("issued"));
    check_exist(side, admin, &issued, issued.len()).await?;
    Ok(issued)
}

/// That `checked` of the issued users, spread evenly, are in `pg_roles`.
async fn check_exist(
    side: &Side,
    admin: &tokio_postgres::Client,
    issued: &[Credential],
    checked: usize,
) -> Result<(), Error> {
    let step = (issued.len() / checked.max(1)).max(1);
    let names: Vec<String> = issued
        .iter()
        .step_by(step)
        .map(|c| c.username.clone())
        .collect();
    let found = present(admin, &names).await?;
    if found.len() != names.len() {
        return Err(Error::Failed(format!(
            "{}: {} of {} issued users checked are not in pg_roles",
            side.name(),
            names.len() - found.len(),
            names.len()
        )));
    }
    Ok(())
}

/// Which of `names` exist now.
async fn present(
    admin: &tokio_postgres::Client,
    names: &[String],
) -> Result<std::collections::HashSet<String>, Error> {
    let rows = admin
        .query(
            "SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)",
            &[&names],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn wait_gone(
    admin: &tokio_postgres::Client,
    names: &[String],
    within: Duration,
) -> Result<(), Error> {
    let deadline = Instant::now() + within;
    loop {
        let left = present(admin, names).await?.len();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Failed(format!(
                "{left} users still exist {within:?} after revoke-prefix"
            )));
        }
        tokio::time::sleep(REVOKE_POLL).await;
    }
}

/// After a window of issuing, renews until the server serves `lease_id`
/// (the restarted server answers `sys/health` before it may serve leases).
async fn served(client: &Client, lease_id: &str) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match client.lease_renew(lease_id, None).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(Error::Failed(format!(
                    "the restarted server did not renew {lease_id}: {e}"
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// One measured window of `side` at `concurrency` after a warm-up, and the
/// server's CPU time over it; its users checked, then dropped.
async fn window(
    side: &Side,
    pg: &Pg,
    admin: &tokio_postgres::Client,
    concurrency: usize,
    plan: &Plan,
) -> Result<(Sample, Duration), Error> {
    let issued: Issued = Arc::new(Mutex::new(Vec::new()));
    let ops = side.ops("tp", concurrency, &issued)?;
    let warm = load::run(ops.clone(), Duration::ZERO, plan.warmup).await;
    let before = side.process()?.cpu()?;
    let sample = load::run(ops, Duration::ZERO, plan.peer_window).await;
    let cpu = side.process()?.cpu()?.saturating_sub(before);
    for s in [&warm, &sample] {
        if s.errors > 0 {
            return Err(Error::Failed(format!(
                "{} c={concurrency}: {} of {} answers were not 2xx; first: {}",
                side.name(),
                s.errors,
                s.errors + s.ok,
                s.first_error.as_deref().unwrap_or("")
            )));
        }
    }
    if sample.ok == 0 {
        return Err(Error::Failed(format!(
            "{} c={concurrency}: nothing issued in the window",
            side.name()
        )));
    }
    let issued = std::mem::take(&mut *issued.lock().expect("issued"));
    check_exist(side, admin, &issued, CHECKED_PER_WINDOW).await?;
    let names: Vec<String> = issued.into_iter().map(|c| c.username).collect();
    super::pg::drop_named(pg, &names).await?;
    Ok((sample, cpu))
}

/// How late users were dropped after their lease's end.
struct Lag {
    /// Seconds, sorted; negative: before the end.
    seconds: Vec<f64>,
    early: usize,
}

impl Lag {
    fn percentile(&self, p: f64) -> f64 {
        if self.seconds.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.seconds.len() as f64).ceil() as usize;
        self.seconds[rank.clamp(1, self.seconds.len()) - 1]
    }
}

/// `n` leases of `ttl` issued at c=16 while `pg_roles` is polled: each
/// user's drop is seen at the first poll whose answer lacks it.
async fn expiry(
    side: &Side,
    admin: &tokio_postgres::Client,
    n: usize,
    ttl: Duration,
    within: Duration,
) -> Result<Lag, Error> {
    side.role("exp", ttl.as_secs()).await?;
    let issued: Issued = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let ops = side.ops("exp", BATCH_CONCURRENCY, &issued)?;
    let issuing = tokio::spawn(load::run_count(ops, n));
    let mut pending: HashMap<String, Instant> = HashMap::new();
    let mut taken = 0;
    let mut lag = Lag {
        seconds: Vec::with_capacity(n),
        early: 0,
    };
    loop {
        // Before taking the issued: once finished, all are in the list.
        let done = issuing.is_finished();
        {
            let issued = issued.lock().expect("issued");
            for c in &issued[taken..] {
                pending.insert(c.username.clone(), c.sent + ttl);
            }
            taken = issued.len();
        }
        if !pending.is_empty() {
            let names: Vec<String> = pending.keys().cloned().collect();
            let found = present(admin, &names).await?;
            // The poll's answer: every user missing from it was gone by now.
            let seen = Instant::now();
            for name in names.iter().filter(|n| !found.contains(*n)) {
                if let Some(end) = pending.remove(name) {
                    if seen < end {
                        lag.early += 1;
                        lag.seconds.push(-(end - seen).as_secs_f64());
                    } else {
                        lag.seconds.push((seen - end).as_secs_f64());
                    }
                }
            }
        }
        if done && taken < n {
            break;
        }
        if done && pending.is_empty() {
            break;
        }
        let now = Instant::now();
        if !pending.is_empty() && pending.values().all(|end| now > *end + within) {
            return Err(Error::Failed(format!(
                "{}: {} users still exist {within:?} after their lease's end",
                side.name(),
                pending.len()
            )));
        }
        tokio::time::sleep(EXPIRY_POLL).await;
    }
    let (_, error) = issuing.await.map_err(|e| Error::Failed(e.to_string()))?;
    if let Some(e) = error {
        return Err(Error::Failed(format!(
            "{} issuing {n} expiring leases (stopped at {taken}): a non-2xx answer: {e}",
            side.name()
        )));
    }
    lag.seconds.sort_by(f64::total_cmp);
    Ok(lag)
}
