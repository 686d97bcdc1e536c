//! A TCP stream that connects when first used.
//!
//! Connections are opened with `Config::connect_raw` so that the auth guard
//! can sit on the stream; the pool's connector can only fail with a
//! tokio-postgres error, which only tokio-postgres can make, so the TCP
//! connect happens inside the driver's first write and its failure reaches
//! the caller as the driver's own io error.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

enum State {
    Connecting(Connecting),
    Open(TcpStream),
    Failed(io::ErrorKind, String),
}

pub struct LazyTcp {
    state: State,
}

impl LazyTcp {
    /// A stream to `host:port` (every address the name resolves to is
    /// tried in turn), giving up after `timeout`.
    pub fn new(host: &str, port: u16, timeout: Duration) -> LazyTcp {
        let host = host.to_string();
        let connecting = async move {
            let stream = tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port)))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connection timed out"))??;
            stream.set_nodelay(true)?;
            Ok(stream)
        };
        LazyTcp {
            state: State::Connecting(Box::pin(connecting)),
        }
    }

    fn poll_open(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut TcpStream>> {
        if let State::Connecting(connecting) = &mut self.state {
            self.state = match ready!(connecting.as_mut().poll(cx)) {
                Ok(stream) => State::Open(stream),
                Err(e) => State::Failed(e.kind(), e.to_string()),
            };
        }
        match &mut self.state {
            State::Open(stream) => Poll::Ready(Ok(stream)),
            State::Failed(kind, message) => {
                Poll::Ready(Err(io::Error::new(*kind, message.clone())))
            }
            State::Connecting(_) => unreachable!("resolved above"),
        }
    }
}

impl AsyncRead for LazyTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let stream = ready!(self.poll_open(cx))?;
        Pin::new(stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LazyTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let stream = ready!(self.poll_open(cx))?;
        Pin::new(stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let stream = ready!(self.poll_open(cx))?;
        Pin::new(stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.state {
            State::Open(stream) => Pin::new(stream).poll_shutdown(cx),
            _ => Poll::Ready(Ok(())),
        }
    }
}

/// Whether two host:port pairs name the same socket address: the same
/// text, or names resolving to a common address. A name that does not
/// resolve is compared as text only.
pub async fn same_address(a: (&str, u16), b: (&str, u16)) -> bool {
    if a.1 != b.1 {
        return false;
    }
    if a.0.eq_ignore_ascii_case(b.0) {
        return true;
    }
    let (left, right) = tokio::join!(resolve(a.0, a.1), resolve(b.0, b.1));
    left.iter().any(|ip| right.contains(ip))
}

async fn resolve(host: &str, port: u16) -> Vec<std::net::IpAddr> {
    tokio::net::lookup_host((host, port))
        .await
        .map(|addrs| addrs.map(|addr| addr.ip()).collect())
        .unwrap_or_default()
}
