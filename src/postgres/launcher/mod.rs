//! A throwaway PostgreSQL server of the machine's own binaries, for
//! `server --dev`, `pgsecrets bench` and the tests: `initdb` into a fresh
//! temporary directory with `--auth=scram-sha-256` and a random superuser
//! password, listening on `127.0.0.1` only, on a free port, with its unix
//! socket inside the data directory. Several can run at once.
//!
//! As root, `initdb` and `pg_ctl` run as the `postgres` user (`runuser`) in a
//! directory under `/tmp` owned by it: PostgreSQL refuses to run as root.
//! Dropping a [`LocalPg`] stops the server (`-m immediate`) and deletes the
//! directory; a watchdog (a detached shell) does the same within a second if
//! this process dies without dropping it (`kill -9`), so nothing is left
//! behind.

mod bin;
mod watchdog;

pub use bin::{find_bin, has_server_binaries};

use std::collections::HashSet;
use std::fs;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Why a server could not be found or started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "PostgreSQL server binaries not found: install them (Debian: apt-get install \
         postgresql; macOS: brew install postgresql) or name their directory in PGSECRETS_PG_BIN"
    )]
    NotFound,
    #[error("{0}")]
    Setup(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

const SUPERUSER: &str = "postgres";
const HOST: &str = "127.0.0.1";
/// The unprivileged account the server runs as when we run as root.
const OS_USER: &str = "postgres";
/// Seconds `pg_ctl` waits for a start or a stop.
const PG_CTL_WAIT: &str = "60";
/// How often a start is retried on another port when the port was taken
/// between our picking it and the server binding it.
const PORT_ATTEMPTS: usize = 8;

/// How a server is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// Names the temporary directory (`pgsecrets-<purpose>-pg-…`), so a
    /// leftover says what left it, and the `application_name` of
    /// [`LocalPg::connect`] (`pgsecrets-<purpose>`), so its sessions are
    /// told apart from the server's own.
    pub purpose: &'static str,
    /// Keep PostgreSQL's durability defaults (`fsync` and kin). Benchmarks
    /// need them (the floor is what a correct client gets from a correctly
    /// configured server); a throwaway server does not. Without them a
    /// commit still survives the server being killed ([`LocalPg::kill`]):
    /// `synchronous_commit` stays on, so the WAL reaches the OS at commit;
    /// only a machine crash loses it.
    pub durable: bool,
    /// More `postgresql.conf` settings, after ours (so they win); a value
    /// is quoted unless it already is.
    pub extra_conf: Vec<(String, String)>,
}

impl Options {
    /// A throwaway server for `purpose`, with no settings of its own.
    pub fn new(purpose: &'static str) -> Options {
        Options {
            purpose,
            durable: false,
            extra_conf: Vec::new(),
        }
    }
}

pub struct LocalPg {
    bin: PathBuf,
    /// `data/` and `server.log`; `None` once removed.
    root: Option<tempfile::TempDir>,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    password: String,
    as_postgres: bool,
    watchdog: Option<Child>,
    options: Options,
}

impl std::fmt::Debug for LocalPg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPg")
            .field("port", &self.port)
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

impl LocalPg {
    /// Initialises and starts a server of the binaries in `bin`; it accepts
    /// connections when this returns.
    pub fn start(bin: &Path, options: Options) -> Result<LocalPg, Error> {
        let password = format!("pw-{}", crate::random::alphanumeric(24));
        // From here on an error drops the `LocalPg`, which cleans up.
        let pg = LocalPg::prepare(bin, password, options)?;
        pg.initdb()?;
        pg.boot()
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
    /// The data directory (owned by `postgres` when we run as root).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// `postgres --version`, e.g. `postgres (PostgreSQL) 15.14`.
    pub fn version(&self) -> String {
        Command::new(self.bin.join("postgres"))
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }

    /// The server's log (the stderr of `postgres`); empty before the first start.
    pub fn log_contents(&self) -> std::io::Result<String> {
        match fs::read(&self.log) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e),
        }
    }

    /// The last `lines` lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_contents().unwrap_or_default(), lines)
    }

    /// A client over TCP with password authentication; its connection task is spawned.
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::Config::new()
            .host(HOST)
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(db)
            .application_name(format!("pgsecrets-{}", self.options.purpose))
            .connect_timeout(Duration::from_secs(15))
            .connect(tokio_postgres::NoTls)
            .await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// The superuser, on database `postgres`.
    pub async fn admin(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        self.connect(SUPERUSER, &self.password, "postgres").await
    }

    /// `pg_ctl stop -m fast`; the data stays, [`LocalPg::restart`] starts it again.
    pub fn stop(&self) -> Result<(), Error> {
        self.shutdown("fast")
    }

    /// An immediate stop (no checkpoint, like a crash); [`LocalPg::restart`] recovers.
    pub fn kill(&self) -> Result<(), Error> {
        self.shutdown("immediate")
    }

    /// Starts the server again on the same port and data, stopping it
    /// first if it runs.
    pub fn restart(&self) -> Result<(), Error> {
        if self.pid_file_exists() {
            self.shutdown("fast")?;
        }
        // The port was free while the server was down and someone may hold
        // it briefly: wait for it rather than move, as clients keep the port.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.pg_ctl_start() {
                Ok(()) => break,
                Err(e) if e.port_taken && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(500))
                }
                Err(e) => {
                    return Err(Error::Setup(format!(
                        "restarting PostgreSQL on port {} failed: {}",
                        self.port, e.message
                    )))
                }
            }
        }
        self.wait_accepting()
    }

    /// A second server started from a copy of this one's data directory (a
    /// restored backup: same roles and passwords), on a new port. This
    /// server is stopped (`-m fast`) while copying, then started again.
    pub fn restored_copy(&self) -> Result<LocalPg, Error> {
        let was_running = self.pid_file_exists();
        if was_running {
            self.shutdown("fast")?;
        }
        let copy = LocalPg::prepare(&self.bin, self.password.clone(), self.options.clone())?;
        let copied = Command::new("cp")
            .arg("-a")
            .arg(&self.data)
            .arg(&copy.data)
            .output();
        // Started again before any error is reported: the copy is not its concern.
        if was_running {
            self.restart()?;
        }
        let out = copied?;
        if !out.status.success() {
            return Err(Error::Setup(format!(
                "copying {} to {} failed: {}",
                self.data.display(),
                copy.data.display(),
                describe(&out)
            )));
        }
        if copy.as_postgres {
            chown_to_postgres(&copy.data)?;
        }
        let _ = fs::remove_file(copy.data.join("postmaster.pid"));
        copy.boot()
    }

    // ---- internals ----

    /// A `LocalPg` for a new, not yet initialised directory, with its watchdog.
    fn prepare(bin: &Path, password: String, options: Options) -> Result<LocalPg, Error> {
        let as_postgres = running_as_root();
        let bin = if as_postgres {
            require_os_user()?;
            bin::reachable_by_postgres(bin)?
        } else {
            bin.to_path_buf()
        };
        let root = tempfile::Builder::new()
            .prefix(&format!("pgsecrets-{}-pg-", options.purpose))
            .tempdir_in(temp_base(as_postgres))?;
        let mut pg = LocalPg {
            bin,
            data: root.path().join("data"),
            log: root.path().join("server.log"),
            root: Some(root),
            port: 0,
            password,
            as_postgres,
            watchdog: None,
            options,
        };
        if as_postgres {
            chown_to_postgres(pg.root_dir())?;
        }
        pg.watchdog = Some(watchdog::spawn(
            &pg.bin.join("pg_ctl"),
            &pg.data,
            pg.root_dir(),
            as_postgres,
        )?);
        Ok(pg)
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
        // Our cwd may be unreadable for `postgres`.
        cmd.current_dir(self.root_dir()).stdin(Stdio::null());
        cmd
    }

    fn initdb(&self) -> Result<(), Error> {
        let pwfile = self.root_dir().join("pwfile");
        fs::write(&pwfile, format!("{}\n", self.password))?;
        fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600))?;
        if self.as_postgres {
            chown_to_postgres(&pwfile)?;
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
        let out = out?;
        if !out.status.success() {
            return Err(Error::Setup(format!("initdb failed: {}", describe(&out))));
        }
        Ok(())
    }

    /// Writes the settings, picks a port and starts; retries on another
    /// port when the picked one was taken in the meantime.
    fn boot(mut self) -> Result<LocalPg, Error> {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = reserve_port()?;
            self.port = port;
            self.write_conf()?;
            match self.pg_ctl_start() {
                Ok(()) => {
                    self.wait_accepting()?;
                    return Ok(self);
                }
                Err(e) if e.port_taken => {
                    release_port(port);
                    self.port = 0;
                    last = e.message;
                }
                Err(e) => return Err(Error::Setup(format!("pg_ctl start failed: {}", e.message))),
            }
        }
        Err(Error::Setup(format!(
            "PostgreSQL found no free port after {PORT_ATTEMPTS} attempts; last: {last}"
        )))
    }

    /// `pgsecrets.conf` in the data directory, included from
    /// `postgresql.conf`: a file of its own, so that a retry on another
    /// port rewrites it rather than appending.
    fn write_conf(&self) -> Result<(), Error> {
        let port = self.port.to_string();
        let socket_dir = self.data.display().to_string();
        let mut settings: Vec<(&str, &str)> = vec![
            ("listen_addresses", HOST),
            ("port", &port),
            ("unix_socket_directories", &socket_dir),
            ("password_encryption", "scram-sha-256"),
            ("max_connections", "200"),
            // The log file is `pg_ctl -l`, which catches stderr.
            ("logging_collector", "off"),
            ("log_destination", "stderr"),
        ];
        if !self.options.durable {
            settings.extend([("fsync", "off"), ("full_page_writes", "off")]);
        }
        settings.extend(
            self.options
                .extra_conf
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let include = self.data.join("pgsecrets.conf");
        fs::write(&include, conf_text(&settings))?;
        fs::set_permissions(&include, fs::Permissions::from_mode(0o644))?;
        if self.as_postgres {
            chown_to_postgres(&include)?;
        }
        let main = self.data.join("postgresql.conf");
        let text = fs::read_to_string(&main)?;
        let line = "include_if_exists = 'pgsecrets.conf'";
        if !text.contains(line) {
            fs::write(&main, format!("{text}\n{line}\n"))?;
        }
        Ok(())
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
            .map_err(|e| StartError {
                port_taken: false,
                message: format!("cannot run {}: {e}", self.bin.join("pg_ctl").display()),
            })?;
        if out.status.success() {
            return Ok(());
        }
        // Only this start's lines: an earlier start may have met a taken port.
        let log = self.log_contents().unwrap_or_default();
        let new_log = log.get(log_len as usize..).unwrap_or(&log);
        let port_taken = [
            "could not bind",
            "Address already in use",
            "could not create any TCP/IP sockets",
        ]
        .iter()
        .any(|s| new_log.contains(s));
        // A failed start can leave a postmaster behind (e.g. `-w` timed out).
        self.shutdown_quietly();
        Err(StartError {
            port_taken,
            message: format!(
                "{}\n--- server log ---\n{}",
                describe(&out),
                tail(new_log, 40)
            ),
        })
    }

    /// Waits until a TCP connection to the port succeeds: `pg_ctl -w` may
    /// return once the socket file is there, before TCP is.
    fn wait_accepting(&self) -> Result<(), Error> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            if Instant::now() > deadline {
                return Err(Error::Setup(format!(
                    "PostgreSQL started but does not accept connections on {addr}\n--- server log ---\n{}",
                    self.log_tail(40)
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn shutdown(&self, mode: &str) -> Result<(), Error> {
        if !self.pid_file_exists() {
            return Ok(());
        }
        let out = self
            .tool("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", mode, "-w", "-t", PG_CTL_WAIT, "-s"])
            .output()?;
        if !out.status.success() && self.pid_file_exists() {
            return Err(Error::Setup(format!(
                "pg_ctl stop -m {mode} failed: {}",
                describe(&out)
            )));
        }
        Ok(())
    }

    /// For `Drop` and failure paths: never fails.
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
    }

    fn pid_file_exists(&self) -> bool {
        self.data.join("postmaster.pid").exists()
    }
}

impl Drop for LocalPg {
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
        if let Some(mut child) = self.watchdog.take() {
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

/// `key = 'value'` lines; a value already in quotes is taken as written.
fn conf_text(settings: &[(&str, &str)]) -> String {
    let mut conf = String::from("# written by pgsecrets' launcher\n");
    for (key, value) in settings {
        if value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'') {
            conf.push_str(&format!("{key} = {value}\n"));
        } else {
            conf.push_str(&format!("{key} = '{}'\n", value.replace('\'', "''")));
        }
    }
    conf
}

/// A port the kernel just gave out for `127.0.0.1:0`, released for a server to bind.
pub fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind((HOST, 0))?.local_addr()?.port())
}

/// Ports handed to servers of this process that are still in use: the
/// kernel may hand out a port again once its listener is closed, before
/// the server that got it first binds it.
static PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A [`free_port`] no other live server of this process holds.
fn reserve_port() -> Result<u16, Error> {
    let mut ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let ports = ports.get_or_insert_with(HashSet::new);
    for _ in 0..100 {
        let port = free_port()?;
        if ports.insert(port) {
            return Ok(port);
        }
    }
    Err(Error::Setup(format!("no free TCP port on {HOST}")))
}

fn release_port(port: u16) {
    if let Some(ports) = PORTS.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        ports.remove(&port);
    }
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

fn require_os_user() -> Result<(), Error> {
    let exists = Command::new("id")
        .arg("-u")
        .arg(OS_USER)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if exists {
        return Ok(());
    }
    Err(Error::Setup(format!(
        "running as root, PostgreSQL must run as the `{OS_USER}` user, which does not exist; \
         install PostgreSQL's server package (apt-get install postgresql creates it) or run as an ordinary user"
    )))
}

fn chown_to_postgres(path: &Path) -> Result<(), Error> {
    let out = Command::new("chown")
        .arg("-R")
        .arg(format!("{OS_USER}:"))
        .arg(path)
        .output()?;
    if !out.status.success() {
        return Err(Error::Setup(format!(
            "running as root, PostgreSQL must run as the `{OS_USER}` user: chown {} failed: {}",
            path.display(),
            describe(&out)
        )));
    }
    Ok(())
}

/// Where the temporary directories go: `/tmp` as root (the `postgres` user
/// must reach it), else the usual temp dir unless its path is so long that
/// the unix socket path (inside the data directory) would not fit.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_values_are_quoted_unless_they_already_are() {
        let text = conf_text(&[
            ("port", "5432"),
            ("ssl_cert_file", "'/tmp/a b.crt'"),
            ("application_name", "it's"),
        ]);
        assert!(text.contains("port = '5432'\n"), "{text}");
        assert!(text.contains("ssl_cert_file = '/tmp/a b.crt'\n"), "{text}");
        assert!(text.contains("application_name = 'it''s'\n"), "{text}");
    }

    #[test]
    fn a_reserved_port_is_not_handed_out_again_until_released() {
        let a = reserve_port().unwrap();
        let b = reserve_port().unwrap();
        assert_ne!(a, b);
        assert!(PORTS.lock().unwrap().as_ref().unwrap().contains(&a));
        release_port(a);
        release_port(b);
        assert!(!PORTS.lock().unwrap().as_ref().unwrap().contains(&a));
    }
}
