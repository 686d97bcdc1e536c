//! The HTTP listener, plain or TLS: accepts connections under a cap, bounds
//! how long a connection may stay silent or idle, and drains connections on
//! shutdown.
//!
//! Why by hand rather than `axum::serve`: that has no connection cap and no
//! timeouts, so a client that opens sockets and sends nothing holds each one
//! (and its file descriptor) for ever; enough of them and the process can no
//! longer open its storage or PostgreSQL connections. hyper's own
//! `header_read_timeout` covers a head that is sent slowly, but not the wait
//! before the first byte (hyper-util's protocol detection has no timer) nor
//! an idle keep-alive connection, so a watchdog per connection closes those.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::wire::WireConfig;

/// The listener's TLS configuration, which a reload (SIGHUP) replaces.
///
/// Why the whole `ServerConfig` is swapped rather than a certificate
/// resolver (`ResolvesServerCert`) put in one: a reload may also change the
/// client CA, and the client verifier lives in the `ServerConfig`, outside
/// any resolver. Swapping the config replaces certificate, key and CA
/// together, in one step, and the accept loop reads it once per connection:
/// connections accepted after a reload get the new one, those already open
/// keep theirs.
#[derive(Clone, Debug)]
pub struct Tls(Arc<RwLock<Arc<rustls::ServerConfig>>>);

impl Tls {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Tls {
        Tls(Arc::new(RwLock::new(config)))
    }

    /// The configuration for a connection accepted now.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.0.read().expect("listener TLS"))
    }

    /// Serves `config` to the connections accepted from now on.
    pub fn replace(&self, config: Arc<rustls::ServerConfig>) {
        *self.0.write().expect("listener TLS") = config;
    }
}

impl From<Arc<rustls::ServerConfig>> for Tls {
    fn from(config: Arc<rustls::ServerConfig>) -> Tls {
        Tls::new(config)
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets the
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    config: WireConfig,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cap = config.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(cap));
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        // A slot before the accept: past the cap, new connections wait in
        // the kernel's queue instead of taking descriptors.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let config = config.clone();
        let acceptor = tls.as_ref().map(|tls| TlsAcceptor::from(tls.current()));
        let stopping = stopping.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor {
                None => serve_connection(stream, peer, app, &config, stopping).await,
                Some(acceptor) => {
                    // The handshake counts against the header timeout: a
                    // client that connects and says nothing is gone after it.
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout(config.read_header_timeout, handshake).await {
                        Ok(Ok(tls)) => serve_connection(tls, peer, app, &config, stopping).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a slot until it ends: all slots back means
    // every request in flight has finished.
    let _ = slots.acquire_many(cap as u32).await;
    Ok(())
}

/// When a connection was last busy, and how many requests it has in flight.
struct Activity {
    in_flight: AtomicUsize,
    /// `None` until the first request arrives.
    last_done: Mutex<Option<Instant>>,
}

impl Activity {
    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    fn end(&self) {
        *self.last_done.lock().expect("activity") = Some(Instant::now());
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// When the connection should be closed if nothing happens before then;
    /// `None` while a request is in flight.
    fn deadline(&self, opened: Instant, config: &WireConfig) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(match *self.last_done.lock().expect("activity") {
            None => opened + config.read_header_timeout,
            Some(at) => at + config.idle_timeout,
        })
    }
}

/// Ends a request's count when its handler is done, even if the
/// connection drops the future half-way.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

async fn serve_connection<I>(
    io: I,
    peer: std::net::SocketAddr,
    app: axum::Router,
    config: &WireConfig,
    mut stopping: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let opened = Instant::now();
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        last_done: Mutex::new(None),
    });
    let inner = TowerToHyperService::new(app);
    let counted = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request
            .extensions_mut()
            .insert(crate::wire::RemoteAddr(peer));
        counted.begin();
        let guard = InFlight(Arc::clone(&counted));
        let call = hyper::service::Service::call(&inner, request);
        async move {
            let response = call.await;
            drop(guard);
            response
        }
    });
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.read_header_timeout);
    builder.http2().timer(TokioTimer::new());
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        let deadline = activity.deadline(opened, config);
        let idle = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                // Re-checked when the request ends (a second at most).
                None => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = idle, if !closing => {
                // The deadline is computed anew: the one slept on may be
                // stale (requests came and went meanwhile), and a busy
                // connection caught between two requests is not idle.
                if activity
                    .deadline(opened, config)
                    .is_some_and(|at| at <= Instant::now())
                {
                    if activity.last_done.lock().expect("activity").is_none() {
                        // Never sent a request: nothing to finish.
                        return;
                    }
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            _ = stopping.changed(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}
