//! A pgsecrets server started in-process on `127.0.0.1:0` and driven over HTTP.

use std::sync::Arc;

use pgsecrets::server;
use pgsecrets::storage::Storage;
use pgsecrets::wire::WireConfig;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;

pub struct TestServer {
    pub url: String,
    /// The server's clock: [`TestServer::advance`] moves it.
    pub clock: pgsecrets::logical::Clock,
    /// The storage it serves, to start another server on after a "crash".
    pub storage: Storage,
    pub root_token: String,
    pub client: reqwest::Client,
    /// Its audit devices (a test "sends SIGHUP" with `audit.reopen()`).
    pub audit: pgsecrets::audit::Broker,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A response as a test looks at it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} {}", self.status, self.text))
    }
    /// The first error message.
    pub fn error(&self) -> String {
        self.json()["errors"][0].as_str().unwrap_or("").to_string()
    }
    pub fn data(&self) -> Value {
        self.json()["data"].clone()
    }
}

impl TestServer {
    /// Fresh in-memory storage.
    pub async fn start() -> TestServer {
        let (storage, root) = server::fresh_inmem(None).await.expect("fresh storage");
        TestServer::start_on(storage, root, 32 * 1024 * 1024).await
    }

    pub async fn start_with_limit(max_request_size: usize) -> TestServer {
        let (storage, root) = server::fresh_inmem(None).await.expect("fresh storage");
        TestServer::start_on(storage, root, max_request_size).await
    }

    /// Serves already-initialised storage.
    pub async fn start_on(
        storage: Storage,
        root_token: String,
        max_request_size: usize,
    ) -> TestServer {
        TestServer::start_at(storage, root_token, max_request_size, "127.0.0.1:0").await
    }

    /// Fresh in-memory storage, served with these listener settings.
    pub async fn start_with_wire(wire: WireConfig) -> TestServer {
        let (storage, root) = server::fresh_inmem(None).await.expect("fresh storage");
        TestServer::serve(storage, root, wire, "127.0.0.1:0", Default::default()).await
    }

    /// Fresh in-memory storage, with these audit devices and settings.
    pub async fn start_with_audit(audit: pgsecrets::audit::Config) -> TestServer {
        let (storage, root) = server::fresh_inmem(None).await.expect("fresh storage");
        TestServer::start_on_with_audit(storage, root, audit).await
    }

    /// Serves already-initialised storage with these audit settings.
    pub async fn start_on_with_audit(
        storage: Storage,
        root: String,
        audit: pgsecrets::audit::Config,
    ) -> TestServer {
        let options = server::ServerOptions {
            audit,
            ..Default::default()
        };
        TestServer::serve(storage, root, WireConfig::default(), "127.0.0.1:0", options).await
    }

    /// Serves already-initialised storage on a clock of the test's: a
    /// server restarted "hours later" without a test waiting for them.
    pub async fn start_on_clock(
        storage: Storage,
        root_token: String,
        clock: pgsecrets::logical::Clock,
    ) -> TestServer {
        TestServer::start_at_on_clock(storage, root_token, "127.0.0.1:0", clock).await
    }

    /// [`TestServer::start_on_clock`] at `address`.
    pub async fn start_at_on_clock(
        storage: Storage,
        root_token: String,
        address: &str,
        clock: pgsecrets::logical::Clock,
    ) -> TestServer {
        let wire = WireConfig {
            max_request_size: 32 * 1024 * 1024,
            ..WireConfig::default()
        };
        let options = server::ServerOptions {
            clock,
            ..Default::default()
        };
        TestServer::serve(storage, root_token, wire, address, options).await
    }

    /// Serves already-initialised storage at `address`: a server coming back
    /// where its clients expect it after an outage.
    pub async fn start_at(
        storage: Storage,
        root_token: String,
        max_request_size: usize,
        address: &str,
    ) -> TestServer {
        let wire = WireConfig {
            max_request_size,
            ..WireConfig::default()
        };
        TestServer::serve(storage, root_token, wire, address, Default::default()).await
    }

    async fn serve(
        storage: Storage,
        root_token: String,
        wire: WireConfig,
        address: &str,
        options: server::ServerOptions,
    ) -> TestServer {
        let clock = options.clock.clone();
        let server::Assembled { router, workers } =
            server::assemble_options(storage.clone(), options)
                .await
                .expect("assemble");
        let audit = router.audit.clone();
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server::serve(listener, Arc::clone(&router), wire, None, async {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
            // The workers stop with the server.
            drop(workers);
        });
        TestServer {
            url,
            clock,
            storage,
            root_token,
            client: reqwest::Client::new(),
            audit,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Moves the server's clock forward, as if `by` had passed: leases and
    /// tokens due by then expire now (the workers wake), without a test
    /// waiting through their TTLs.
    pub fn advance(&self, by: std::time::Duration) {
        self.clock.advance(by);
    }

    /// Stops serving and waits until the server has finished.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut builder = self.client.request(
            method,
            format!("{}/v1/{}", self.url, path.trim_start_matches('/')),
        );
        if let Some(token) = token {
            builder = builder.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            builder = builder.json(&body);
        }
        let response = builder.send().await.expect("request sent");
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap_or_default(),
        }
    }

    pub async fn read(&self, path: &str) -> Reply {
        self.request("GET", path, Some(&self.root_token), None)
            .await
    }
    pub async fn write(&self, path: &str, body: Value) -> Reply {
        self.request("POST", path, Some(&self.root_token), Some(body))
            .await
    }
    pub async fn list(&self, path: &str) -> Reply {
        self.request("LIST", path, Some(&self.root_token), None)
            .await
    }
    pub async fn delete(&self, path: &str) -> Reply {
        self.request("DELETE", path, Some(&self.root_token), None)
            .await
    }

    pub async fn read_as(&self, token: &str, path: &str) -> Reply {
        self.request("GET", path, Some(token), None).await
    }
    pub async fn write_as(&self, token: &str, path: &str, body: Value) -> Reply {
        self.request("POST", path, Some(token), Some(body)).await
    }

    /// A GET as root in a task of its own, for a request left in flight
    /// while the test acts: its status and body.
    pub fn spawn_read(&self, path: &str) -> tokio::task::JoinHandle<(u16, String)> {
        let request = self.read_request(&self.root_token, path);
        tokio::spawn(request)
    }

    /// A GET of `path` with `token`, to run where the test likes (a task,
    /// a `JoinSet`): its status and body.
    pub fn read_request(
        &self,
        token: &str,
        path: &str,
    ) -> impl std::future::Future<Output = (u16, String)> + Send + 'static {
        let (client, url, token) = (
            self.client.clone(),
            format!("{}/v1/{path}", self.url),
            token.to_string(),
        );
        async move {
            let r = client
                .get(url)
                .header("X-Vault-Token", token)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    }

    /// Creates a token with the given policies and returns it.
    pub async fn token_with(&self, policies: &[&str]) -> String {
        let r = self
            .write(
                "auth/token/create",
                serde_json::json!({"policies": policies}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["auth"]["client_token"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
