//! A throwaway PostgreSQL server of the machine's own binaries, for
//! `server --dev`, `pgsecrets bench` and the tests: `initdb` into a fresh
//! temporary directory with `--auth=scram-sha-256` and a random superuser
//! password, listening on `127.0.0.1` only, on a free port.
//!
//! As root, `initdb` and `pg_ctl` run as the `postgres` user (`runuser`) in a
//! directory under `/tmp` owned by it: PostgreSQL refuses to run as root.
//! Dropping a [`LocalPg`] stops the server (`-m immediate`) and deletes the
//! directory; a small detached shell does the same within a second if this
//! process dies without dropping it (`kill -9`), so nothing is left behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

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
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

const SUPERUSER: &str = "postgres";
const HOST: &str = "127.0.0.1";
const OS_USER: &str = "postgres";

pub struct LocalPg {
    bin: PathBuf,
    /// `data/` and `server.log`; `None` once removed.
    root: Option<tempfile::TempDir>,
    data: PathBuf,
    port: u16,
    password: String,
    as_postgres: bool,
    watchdog: Option<Child>,
    options: Options,
}

/// How a server is set up.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Names the temporary directory (`pgsecrets-<purpose>-pg-…`), so a
    /// leftover says what left it.
    pub purpose: &'static str,
    /// Keep PostgreSQL's durability defaults (`fsync` and kin). Benchmarks
    /// need them (the floor is what a correct client gets from a correctly
    /// configured server); a throwaway dev server does not.
    pub durable: bool,
}

/// Where the server binaries are, first found wins: `explicit` (a flag),
/// `PGSECRETS_PG_BIN`, `pg_config --bindir`, a directory on `PATH` holding
/// them, then Debian's `/usr/lib/postgresql/<major>/bin`, newest first.
pub fn find_bin(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(dir) = explicit {
        return if has_server_binaries(dir) {
            Ok(dir.to_path_buf())
        } else {
            Err(Error::Setup(format!(
                "{} holds no initdb, pg_ctl and postgres",
                dir.display()
            )))
        };
    }
    if let Some(dir) = std::env::var_os("PGSECRETS_PG_BIN").filter(|v| !v.is_empty()) {
        return find_bin(Some(Path::new(&dir)));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server_binaries(&dir) {
            return Ok(dir);
        }
    }
    if let Some(dir) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| has_server_binaries(dir))
    {
        return Ok(dir);
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_server_binaries(dir))
        .collect();
    debian.sort();
    if let Some((_, dir)) = debian.pop() {
        return Ok(dir);
    }
    Err(Error::NotFound)
}

/// Whether `dir` holds the programs a server needs.
pub fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|b| dir.join(b).is_file())
}

impl LocalPg {
    /// Initialises and starts a server of the binaries in `bin`.
    pub fn start(bin: &Path, options: Options) -> Result<LocalPg, Error> {
        let as_postgres = running_as_root();
        let base = if as_postgres {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let root = tempfile::Builder::new()
            .prefix(&format!("pgsecrets-{}-pg-", options.purpose))
            .tempdir_in(base)?;
        let mut pg = LocalPg {
            bin: bin.to_path_buf(),
            data: root.path().join("data"),
            root: Some(root),
            port: 0,
            password: format!("pw-{}", crate::random::alphanumeric(24)),
            as_postgres,
            watchdog: None,
            options,
        };
        if as_postgres {
            pg.chown(pg.root_dir())?;
        }
        pg.watchdog = Some(pg.spawn_watchdog()?);
        pg.initdb()?;
        pg.port = free_port()?;
        pg.write_conf()?;
        let log = pg.root_dir().join("server.log");
        let out = pg
            .tool("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(&pg.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-s"])
            .output()?;
        if !out.status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(Error::Setup(format!(
                "pg_ctl start failed: {}\n{log}",
                describe(&out)
            )));
        }
        Ok(pg)
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

    /// `postgres --version`, e.g. `postgres (PostgreSQL) 15.14`.
    pub fn version(&self) -> String {
        Command::new(self.bin.join("postgres"))
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }

    /// A client over TCP with password authentication; its connection task is spawned.
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<tokio_postgres::Client, Error> {
        let (client, connection) = tokio_postgres::Config::new()
            .host(HOST)
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(db)
            .application_name("pgsecrets")
            .connect_timeout(Duration::from_secs(15))
            .connect(tokio_postgres::NoTls)
            .await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// The superuser, on database `postgres`.
    pub async fn admin(&self) -> Result<tokio_postgres::Client, Error> {
        self.connect(SUPERUSER, &self.password, "postgres").await
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
        cmd.current_dir(self.root_dir()).stdin(Stdio::null());
        cmd
    }

    fn chown(&self, path: &Path) -> Result<(), Error> {
        let out = Command::new("chown")
            .arg("-R")
            .arg(format!("{OS_USER}:"))
            .arg(path)
            .output()?;
        if !out.status.success() {
            return Err(Error::Setup(format!(
                "running as root, PostgreSQL must run as the `{OS_USER}` user: chown failed: {}",
                describe(&out)
            )));
        }
        Ok(())
    }

    fn initdb(&self) -> Result<(), Error> {
        let pwfile = self.root_dir().join("pwfile");
        std::fs::write(&pwfile, format!("{}\n", self.password))?;
        if self.as_postgres {
            self.chown(&pwfile)?;
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
        let _ = std::fs::remove_file(&pwfile);
        let out = out?;
        if !out.status.success() {
            return Err(Error::Setup(format!("initdb failed: {}", describe(&out))));
        }
        Ok(())
    }

    fn write_conf(&self) -> Result<(), Error> {
        let conf = format!(
            "listen_addresses = '{HOST}'\n\
             port = {port}\n\
             unix_socket_directories = '{socket}'\n\
             password_encryption = 'scram-sha-256'\n\
             max_connections = 200\n\
             logging_collector = off\n\
             {durability}",
            port = self.port,
            socket = self.data.display(),
            durability = if self.options.durable {
                ""
            } else {
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            },
        );
        let main = self.data.join("postgresql.conf");
        let text = std::fs::read_to_string(&main)?;
        std::fs::write(&main, format!("{text}\n# pgsecrets\n{conf}"))?;
        Ok(())
    }

    /// A detached shell that stops the server and removes its directory
    /// once this process is gone.
    fn spawn_watchdog(&self) -> Result<Child, Error> {
        use std::os::unix::process::CommandExt;
        const SCRIPT: &str = r#"
trap '' HUP INT TERM PIPE
while kill -0 "$WD_PID" 2>/dev/null; do sleep 1; done
if [ -f "$WD_DATA/postmaster.pid" ]; then
  if [ "$WD_RUNAS" = 1 ]; then
    runuser -u postgres -- "$WD_PG_CTL" stop -D "$WD_DATA" -m immediate -w -t 30 -s
  else
    "$WD_PG_CTL" stop -D "$WD_DATA" -m immediate -w -t 30 -s
  fi
fi
rm -rf "$WD_ROOT"
"#;
        Ok(Command::new("sh")
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
            .process_group(0)
            .spawn()?)
    }
}

impl Drop for LocalPg {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let _ = self
                .tool("pg_ctl")
                .arg("stop")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "-t", "30", "-s"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(root) = self.root.take() {
            let _ = root.close();
        }
        if let Some(mut child) = self.watchdog.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port the kernel just gave out for `127.0.0.1:0`, released for a server to bind.
pub fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind((HOST, 0))?.local_addr()?.port())
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn describe(out: &Output) -> String {
    format!(
        "{}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )
}
