//! A throwaway PostgreSQL server for the benchmarks: `initdb` into a fresh
//! temporary directory with `--auth=scram-sha-256` and a random superuser
//! password, listening on `127.0.0.1` only, on a free port. Unlike the test
//! fixture it keeps PostgreSQL's durability defaults (`fsync`,
//! `synchronous_commit`, `full_page_writes` on): the floor is what a correct
//! client gets from a correctly configured server.
//!
//! As root, `initdb` and `pg_ctl` run as the `postgres` user (`runuser`) in a
//! directory under `/tmp` owned by it. Dropping a [`Pg`] stops the server
//! (`-m immediate`) and deletes the directory; a small detached shell does
//! the same if this process dies without dropping it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::Error;

const SUPERUSER: &str = "postgres";
const HOST: &str = "127.0.0.1";
const OS_USER: &str = "postgres";

pub struct Pg {
    bin: PathBuf,
    /// `data/` and `server.log`; `None` once removed.
    root: Option<tempfile::TempDir>,
    data: PathBuf,
    port: u16,
    password: String,
    as_postgres: bool,
    watchdog: Option<Child>,
}

/// Where the server binaries are: `--pg-bin`, `PGSECRETS_PG_BIN`, Debian's
/// newest `/usr/lib/postgresql/<major>/bin`, then `pg_config --bindir`.
pub fn find_bin(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    let has = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(dir) = explicit {
        return if has(dir) {
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
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, dir)| has(dir))
        .collect();
    debian.sort();
    if let Some((_, dir)) = debian.pop() {
        return Ok(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has(&dir) {
            return Ok(dir);
        }
    }
    Err(Error::Setup(
        "PostgreSQL server binaries not found: install them (Debian: apt-get install postgresql) \
         or name their directory with --pg-bin or PGSECRETS_PG_BIN"
            .into(),
    ))
}

impl Pg {
    /// Initialises and starts a server of the binaries in `bin`.
    pub fn start(bin: &Path) -> Result<Pg, Error> {
        let as_postgres = running_as_root();
        let base = if as_postgres {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let root = tempfile::Builder::new()
            .prefix("pgsecrets-bench-pg-")
            .tempdir_in(base)?;
        let mut pg = Pg {
            bin: bin.to_path_buf(),
            data: root.path().join("data"),
            root: Some(root),
            port: 0,
            password: format!("pw-{}", crate::random::alphanumeric(24)),
            as_postgres,
            watchdog: None,
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
            .application_name("pgsecrets-bench")
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

    /// Drops every role whose name starts with `prefix` (they own nothing)
    /// and vacuums the catalogs that held them, so the next run starts
    /// from the same catalog. A few hundred per statement: each dropped
    /// role holds a lock until its transaction ends.
    pub async fn drop_roles(&self, prefix: &str) -> Result<(), Error> {
        let admin = self.admin().await?;
        let names: Vec<String> = admin
            .query(
                "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1)",
                &[&prefix],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for chunk in names.chunks(500) {
            let list: Vec<String> = chunk.iter().map(|n| crate::postgres::ident(n)).collect();
            admin
                .batch_execute(&format!("DROP ROLE {}", list.join(", ")))
                .await?;
        }
        self.vacuum_role_catalogs().await
    }

    /// Reclaims the catalog rows of dropped roles, so that the next measured
    /// run does not pay for the previous run's dead tuples.
    pub async fn vacuum_role_catalogs(&self) -> Result<(), Error> {
        self.admin()
            .await?
            .batch_execute("VACUUM pg_authid, pg_auth_members, pg_db_role_setting, pg_shdepend")
            .await?;
        Ok(())
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
             logging_collector = off\n",
            port = self.port,
            socket = self.data.display(),
        );
        let main = self.data.join("postgresql.conf");
        let text = std::fs::read_to_string(&main)?;
        std::fs::write(&main, format!("{text}\n# pgsecrets bench\n{conf}"))?;
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

impl Drop for Pg {
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

/// How many roles have names starting with `prefix` (`admin`: a superuser
/// connection, kept open so polling costs no new logins).
pub async fn count_roles(admin: &tokio_postgres::Client, prefix: &str) -> Result<i64, Error> {
    let row = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1)",
            &[&prefix],
        )
        .await?;
    Ok(row.get(0))
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
