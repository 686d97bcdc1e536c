//! The pgsecrets under test, in-process: embedded SQLite storage in a
//! temporary directory, served on `127.0.0.1:0`, driven over HTTP like any
//! Vault client would; and the setup every scenario shares (a registered
//! cluster, a database, a role, a token that may read credentials).
//!
//! Setup and checks go through [`crate::client::Client`]; only the measured
//! load has a client of its own ([`super::http_load`] says why).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::oneshot;

use super::pg::Pg;
use super::Error;
use crate::client::{Client, Envelope, Settings};
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
    /// With the root token.
    pub client: Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The storage's directory, when this server created it.
    dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A fresh server on new SQLite storage (encrypted, as in production).
    pub async fn start() -> Result<Server, Error> {
        Server::start_with(server::ServerOptions::default()).await
    }

    /// [`Server::start`] with options (an audit device, say).
    pub async fn start_with(options: server::ServerOptions) -> Result<Server, Error> {
        let dir = tempfile::Builder::new()
            .prefix("pgsecrets-bench-")
            .tempdir()?;
        let backend = Arc::new(SqliteBackend::open(&dir.path().join("pgsecrets.db"))?);
        let mut key = [0u8; 32];
        crate::random::fill(&mut key);
        let storage = Storage::initialize(backend, &key).await?;
        let root = server::initialize(&storage, None).await?;
        let mut s = Server::start_on_with(storage, root, options).await?;
        s.dir = Some(dir);
        Ok(s)
    }

    /// Serves storage that is already initialised.
    pub async fn start_on(storage: Storage, root_token: String) -> Result<Server, Error> {
        Server::start_on_with(storage, root_token, server::ServerOptions::default()).await
    }

    async fn start_on_with(
        storage: Storage,
        root_token: String,
        options: server::ServerOptions,
    ) -> Result<Server, Error> {
        let server::Assembled { router, workers } =
            server::assemble_options(storage.clone(), options).await?;
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
            client: client(&url, &root_token)?,
            url,
            root_token,
            storage,
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

    /// [`register`] on this server.
    pub async fn register(&self, pg: &Pg, name: &str) -> Result<Cluster, Error> {
        register(&self.client, pg, name).await
    }

    /// [`write_role`] on this server.
    pub async fn write_role(&self, role: &str, ttl: u64, iterations: u32) -> Result<(), Error> {
        write_role(&self.client, role, ttl, iterations).await
    }

    /// [`app_token`] on this server.
    pub async fn app_token(&self) -> Result<String, Error> {
        app_token(&self.client).await
    }
}

/// Registers cluster `name` on `pg` with the pgsecrets server of `client`
/// (through a root user of its own, whose password pgsecrets rotates),
/// creates database `name_db`, and returns what the scenarios need.
pub async fn register(client: &Client, pg: &Pg, name: &str) -> Result<Cluster, Error> {
    let root_user = format!("bench_root_{name}");
    let root_password = crate::random::alphanumeric(24);
    pg.admin()
        .await?
        .batch_execute(&format!(
            "CREATE ROLE \"{root_user}\" WITH LOGIN CREATEROLE CREATEDB PASSWORD '{root_password}'"
        ))
        .await?;
    client
        .write(
            &format!("database/cluster/{name}"),
            &json!({
                "host": pg.host(),
                "port": pg.port(),
                "username": root_user,
                "password": root_password,
                "ssl_mode": "disable",
                "max_open_connections": MAX_CONNECTIONS,
                "max_idle_connections": MAX_CONNECTIONS,
            }),
        )
        .await?;
    let database = format!("{name}_db");
    client
        .write(&format!("database/cluster/{name}/{database}"), &json!({}))
        .await?;
    let cluster = client.read(&format!("database/cluster/{name}")).await?;
    let db = client
        .read(&format!("database/cluster/{name}/{database}"))
        .await?;
    let text = |e: &Envelope, field: &str| -> Result<String, Error> {
        e.data_str(field)
            .map(str::to_string)
            .ok_or_else(|| Error::Unexpected(format!("no {field} in {e:?}")))
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
pub async fn write_role(
    client: &Client,
    role: &str,
    ttl: u64,
    iterations: u32,
) -> Result<(), Error> {
    let body = json!({
        "default_ttl": ttl,
        "max_ttl": ttl.max(3600),
        "password_scram_iterations": iterations,
    });
    client
        .write(&format!("database/roles/{role}"), &body)
        .await?;
    Ok(())
}

/// A token that may only read credentials, as an application holds
/// (the same requests serve OpenBao).
pub async fn app_token(client: &Client) -> Result<String, Error> {
    let policy = "path \"database/creds/*\" { capabilities = [\"read\"] }";
    client
        .write("sys/policies/acl/bench-app", &json!({ "policy": policy }))
        .await?;
    let body = json!({"policies": ["bench-app"], "ttl": "24h"});
    let reply = client.write("auth/token/create", &body).await?;
    reply
        .and_then(|r| r.auth)
        .map(|auth| auth.client_token)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| Error::Unexpected("no client_token from auth/token/create".into()))
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

/// A client of the server at `url` with `token`. The timeout is generous:
/// revoking a million leases by prefix is one request.
pub fn client(url: &str, token: &str) -> Result<Client, Error> {
    let mut settings = Settings::new(url);
    settings.token = Some(token.to_string());
    settings.timeout = Duration::from_secs(120);
    Ok(Client::new(settings)?)
}
