//! The pgsecrets under test, in-process: embedded SQLite storage in a
//! temporary directory, served on `127.0.0.1:0`, driven over HTTP like any
//! Vault client would; and the setup every scenario shares (a registered
//! cluster, a database, a role, a token that may read credentials).

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::pg::Pg;
use super::Error;
use crate::server;
use crate::storage::{sqlite::SqliteBackend, Storage};
use crate::wire::WireConfig;

/// Pool size of the benchmark cluster: the highest concurrency measured,
/// so pgsecrets may hold as many connections as the floor does.
pub const MAX_CONNECTIONS: u32 = 16;

pub struct Server {
    pub url: String,
    pub root_token: String,
    pub storage: Storage,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The storage's directory, when this server created it.
    dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A fresh server on new SQLite storage (encrypted, as in production).
    pub async fn start() -> Result<Server, Error> {
        let dir = tempfile::Builder::new()
            .prefix("pgsecrets-bench-")
            .tempdir()?;
        let backend = Arc::new(SqliteBackend::open(&dir.path().join("pgsecrets.db"))?);
        let mut key = [0u8; 32];
        crate::random::fill(&mut key);
        let storage = Storage::initialize(backend, &key).await?;
        let root = server::initialize(&storage, None).await?;
        let mut s = Server::start_on(storage, root).await?;
        s.dir = Some(dir);
        Ok(s)
    }

    /// Serves storage that is already initialised.
    pub async fn start_on(storage: Storage, root_token: String) -> Result<Server, Error> {
        let server::Assembled { router, workers } = server::assemble(storage.clone()).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = server::serve(listener, router, WireConfig::default(), None, async {
                let _ = stopped.await;
            })
            .await;
            // The workers stop with the serving task.
            drop(workers);
            if let Err(e) = served {
                eprintln!("bench: the in-process server failed: {e}");
            }
        });
        Ok(Server {
            url,
            root_token,
            storage,
            client: client(),
            stop: Some(stop),
            task: Some(task),
            dir: None,
        })
    }

    /// Stops serving and waits until the server (and its workers) are done.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        // The lease worker notices the router is gone on its next wake-up.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// Stops serving, waits `pause`, and serves the same storage again, as
    /// a restarted process would.
    pub async fn restart(mut self, pause: Duration) -> Result<Server, Error> {
        let dir = self.dir.take();
        let (storage, root) = (self.storage.clone(), self.root_token.clone());
        self.shutdown().await;
        tokio::time::sleep(pause).await;
        let mut server = Server::start_on(storage, root).await?;
        server.dir = dir;
        Ok(server)
    }

    /// A request as root; fails unless the status is 2xx.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Error> {
        call(
            &self.client,
            &self.url,
            &self.root_token,
            method,
            path,
            body,
        )
        .await
    }

    /// Registers cluster `name` on `pg` (through a root user of its own,
    /// whose password pgsecrets rotates), creates database `name_db`, and
    /// returns what the scenarios need.
    pub async fn register(&self, pg: &Pg, name: &str) -> Result<Cluster, Error> {
        let root_user = format!("bench_root_{name}");
        let root_password = crate::random::alphanumeric(24);
        pg.admin()
            .await?
            .batch_execute(&format!(
                "CREATE ROLE \"{root_user}\" WITH LOGIN CREATEROLE CREATEDB PASSWORD '{root_password}'"
            ))
            .await?;
        self.call(
            "POST",
            &format!("database/cluster/{name}"),
            Some(json!({
                "host": pg.host(),
                "port": pg.port(),
                "username": root_user,
                "password": root_password,
                "ssl_mode": "disable",
                "max_open_connections": MAX_CONNECTIONS,
                "max_idle_connections": MAX_CONNECTIONS,
            })),
        )
        .await?;
        let database = format!("{name}_db");
        self.call(
            "POST",
            &format!("database/cluster/{name}/{database}"),
            Some(json!({})),
        )
        .await?;
        let cluster = self
            .call("GET", &format!("database/cluster/{name}"), None)
            .await?;
        let db = self
            .call("GET", &format!("database/cluster/{name}/{database}"), None)
            .await?;
        let text = |v: &Value, field: &str| -> Result<String, Error> {
            v["data"][field]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| Error::Unexpected(format!("no {field} in {v}")))
        };
        Ok(Cluster {
            name: name.to_string(),
            database,
            management_role: text(&cluster, "management_role")?,
            management_password: text(&cluster, "management_password")?,
            objects_owner: text(&db, "objects_owner_role")?,
        })
    }

    /// Writes role `role` with the given TTL (seconds) and SCRAM iterations.
    pub async fn write_role(&self, role: &str, ttl: u64, iterations: u32) -> Result<(), Error> {
        self.call(
            "POST",
            &format!("database/roles/{role}"),
            Some(json!({
                "default_ttl": ttl,
                "max_ttl": ttl.max(3600),
                "password_scram_iterations": iterations,
            })),
        )
        .await?;
        Ok(())
    }

    /// A token that may only read credentials, as an application holds.
    pub async fn app_token(&self) -> Result<String, Error> {
        self.call(
            "PUT",
            "sys/policies/acl/bench-app",
            Some(json!({"policy": "path \"database/creds/*\" { capabilities = [\"read\"] }"})),
        )
        .await?;
        let reply = self
            .call(
                "POST",
                "auth/token/create",
                Some(json!({"policies": ["bench-app"], "ttl": "24h"})),
            )
            .await?;
        reply["auth"]["client_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Unexpected(format!("no client_token in {reply}")))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// What the scenarios need to know about a registered cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub database: String,
    pub management_role: String,
    pub management_password: String,
    pub objects_owner: String,
}

impl Cluster {
    pub fn creds_path(&self, role: &str) -> String {
        format!("database/creds/{}/{}/{role}", self.name, self.database)
    }
}

/// An HTTP client of its own (its own keep-alive connections).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("an HTTP client")
}

/// One request; fails unless the status is 2xx. A 204 gives `null`.
pub async fn call(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, Error> {
    let method = Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let mut request = client
        .request(method.clone(), format!("{url}/v1/{path}"))
        .header("X-Vault-Token", token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        return Err(Error::Status {
            request: format!("{method} {path}"),
            status: status.as_u16(),
            body: text,
        });
    }
    if status == StatusCode::NO_CONTENT || text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| Error::Unexpected(format!("{method} {path}: {e}")))
}
