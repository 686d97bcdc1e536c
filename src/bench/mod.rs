//! `pgsecrets bench`: throughput, latency and scale, measured against what
//! PostgreSQL itself allows on the same machine in the same run (absolute
//! figures are noise on a shared machine; ratios are not).
//!
//! It starts its own PostgreSQL server ([`pg`]), its own pgsecrets servers
//! (in-process on `127.0.0.1:0` with embedded SQLite storage in a temporary
//! directory, [`target`]; a child process for the scale scenario,
//! [`child`]), runs the scenarios and prints a table ([`report`]) and one
//! summary line. Nothing here is used by the server itself.
//!
//! Scenarios, one file each: [`issue`] (1) and its `iterations` variant
//! (4), [`revoke`] (2), [`scale`] (3), [`kv`] (5, `storage`). The floor's
//! direct PostgreSQL work is in [`floor`], the closed-loop load in [`load`].
//! [`peer`] (not run by default) compares pgsecrets with OpenBao.

pub mod audit;
pub mod child;
pub mod floor;
pub mod http_load;
pub mod issue;
pub mod kv;
pub mod load;
pub mod peer;
pub mod pg;
pub mod procfs;
pub mod report;
pub mod revoke;
pub mod scale;
pub mod target;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use report::Report;

/// What can stop a benchmark run; each message says what failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("setup: {0}")]
    Setup(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("PostgreSQL: {}", pg_text(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Client(#[from] crate::client::Error),
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    #[error("pgsecrets: {0}")]
    Start(#[from] crate::server::StartError),
    #[error("config: {0}")]
    Config(#[from] crate::config::Error),
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::Error),
    #[error("leases: {0}")]
    Lease(#[from] crate::lease::Error),
    #[error("{0}")]
    Failed(String),
    #[error("interrupted")]
    Interrupted,
}

/// A PostgreSQL error with the server's message when there is one.
pub fn pg_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// The scenarios, by the name `--scenario` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// 1: credentials per second and latency, floor vs pgsecrets, c = 1, 4, 16.
    Issue,
    /// 2: users revoked per second, floor vs expiry vs revoke-prefix.
    Revoke,
    /// 3: a million leases: start time, memory, LIST, expiry throughput.
    Scale,
    /// 4: scenario 1 at 1 SCRAM iteration (and 4096 beside it).
    Iterations,
    /// 5: storage put/get/scan, encrypted vs plaintext.
    Storage,
    /// pgsecrets vs OpenBao in the same run (needs a bao binary; not in
    /// the default set).
    Peer,
    /// 6: creds/s with a file audit device vs without.
    Audit,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Issue,
        Scenario::Revoke,
        Scenario::Scale,
        Scenario::Iterations,
        Scenario::Storage,
        Scenario::Audit,
    ];

    fn needs_postgres(self) -> bool {
        self != Scenario::Storage
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Tiny versions of everything (seconds): checks the harness, not speed.
    pub quick: bool,
    /// Empty: all.
    pub scenarios: Vec<Scenario>,
    /// Leases in the scale scenario (default 1,000,000; quick 2,000).
    pub leases: Option<usize>,
    /// PostgreSQL server binaries (see [`pg::find_bin`]).
    pub pg_bin: Option<PathBuf>,
    /// OpenBao's `bao` for the peer scenario (see [`peer::openbao::find`]).
    pub openbao: Option<PathBuf>,
}

/// Sizes and durations of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub warmup: Duration,
    pub window: Duration,
    pub revoke_users: usize,
    pub revoke_timeout: Duration,
    pub leases: usize,
    /// Time between the scale scenario's last write and its leases falling due.
    pub scale_margin: Duration,
    pub kv_keys: usize,
    /// Peer scenario: each measured window, leases revoked by prefix and
    /// expiring, leases held for the memory and restart figures, and the
    /// expiring leases' TTL.
    pub peer_window: Duration,
    /// Rounds of alternated windows (OpenBao, pgsecrets) per concurrency.
    pub peer_rounds: usize,
    pub peer_leases: usize,
    pub peer_hold: usize,
    pub peer_ttl: Duration,
}

impl Plan {
    pub fn new(options: &Options) -> Plan {
        let mut plan = if options.quick {
            Plan {
                warmup: Duration::from_millis(100),
                window: Duration::from_millis(400),
                revoke_users: 64,
                revoke_timeout: Duration::from_secs(60),
                leases: 2_000,
                scale_margin: Duration::from_secs(3),
                kv_keys: 2_000,
                // The peer scenario issues at 4096 SCRAM iterations: a
                // few hundred credentials per second on a small machine.
                peer_window: Duration::from_millis(300),
                peer_rounds: 1,
                peer_leases: 100,
                peer_hold: 100,
                peer_ttl: Duration::from_secs(1),
            }
        } else {
            Plan {
                warmup: Duration::from_secs(1),
                window: Duration::from_secs(10),
                revoke_users: 10_000,
                revoke_timeout: Duration::from_secs(1800),
                leases: 1_000_000,
                scale_margin: Duration::from_secs(15),
                kv_keys: 100_000,
                peer_window: Duration::from_secs(5),
                peer_rounds: 2,
                peer_leases: 2_000,
                peer_hold: 20_000,
                peer_ttl: Duration::from_secs(5),
            }
        };
        if let Some(leases) = options.leases {
            plan.leases = leases.max(100);
        }
        plan
    }
}

/// Runs the selected scenarios and prints the table and the summary line;
/// ctrl-c stops it and still removes what it started.
pub async fn run(options: Options) -> Result<(), Error> {
    tokio::select! {
        result = run_scenarios(options) => result,
        _ = tokio::signal::ctrl_c() => Err(Error::Interrupted),
    }
}

async fn run_scenarios(options: Options) -> Result<(), Error> {
    let plan = Plan::new(&options);
    let scenarios = if options.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        options.scenarios.clone()
    };
    let mut report = Report::default();
    let pg = if scenarios.iter().any(|s| s.needs_postgres()) {
        let bin = pg::find_bin(options.pg_bin.as_deref())?;
        let pg = pg::start(&bin)?;
        report.note(format!(
            "{} from {}, durability defaults (fsync on)",
            pg.version(),
            bin.display()
        ));
        Some(pg)
    } else {
        None
    };
    let started = Instant::now();
    for scenario in scenarios {
        eprintln!("bench: scenario {scenario:?}");
        let pg = pg.as_ref();
        let pg = || pg.ok_or_else(|| Error::Setup("no PostgreSQL".into()));
        match scenario {
            Scenario::Issue => report.add(issue::issue(pg()?, &plan).await?),
            Scenario::Revoke => report.add(revoke::revoke(pg()?, &plan).await?),
            Scenario::Scale => scale::scale(pg()?, &plan, &mut report).await?,
            Scenario::Iterations => report.add(issue::iterations(pg()?, &plan).await?),
            Scenario::Storage => report.add(kv::storage(&plan).await?),
            Scenario::Audit => report.add(audit::audit(pg()?, &plan).await?),
            Scenario::Peer => {
                peer::peer(pg()?, &plan, options.openbao.as_deref(), &mut report).await?
            }
        }
    }
    report.note(format!(
        "ran in {:.0} s{}",
        started.elapsed().as_secs_f64(),
        if options.quick {
            " (--quick: figures check the harness, not speed)"
        } else {
            ""
        }
    ));
    println!();
    print!("{}", report.table());
    println!();
    for note in &report.notes {
        println!("note: {note}");
    }
    println!("{}", report.summary());
    Ok(())
}
