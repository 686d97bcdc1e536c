//! A guard on what a PostgreSQL server may ask pgsecrets to send.
//!
//! pgsecrets holds root and management passwords for whole fleets. A
//! server that answers the startup message with `AuthenticationCleartextPassword`
//! (or `AuthenticationMD5Password`, whose digest is as good as the password
//! for logging in elsewhere and falls to a dictionary attack) would receive
//! the password itself. SCRAM reveals nothing a server can log in with, so a
//! fake server learns nothing from it; cleartext and md5 are answered only
//! when TLS has verified the server's identity (`ssl_mode=verify-full`), as
//! libpq's `require_auth=scram-sha-256` lets operators insist.
//!
//! tokio-postgres has no switch for this (its `channel_binding=require` also
//! refuses SCRAM without TLS), so the guard sits on the stream the protocol
//! runs over: it reads the server's messages ahead of tokio-postgres until
//! authentication succeeds, and fails the read before a refused request
//! reaches the driver, which therefore never writes the password.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// The password requests pgsecrets refuses on an unverified channel.
const CLEARTEXT: i32 = 3;
const MD5: i32 = 5;
/// `AuthenticationOk`: from here on the stream is passed through untouched.
const AUTH_OK: i32 = 0;

/// The io error a refused request surfaces as; `Error::from_pg` finds it.
#[derive(Debug, thiserror::Error)]
#[error("the server asked for the password {method}, which pgsecrets sends only over TLS with a verified server certificate (ssl_mode=verify-full)")]
pub struct InsecureAuthRequest {
    pub method: &'static str,
}

/// A stream whose server-to-client bytes are vetted until authentication
/// completes.
pub struct Guarded<S> {
    inner: S,
    /// Whether cleartext and md5 requests may pass (TLS verified the server).
    allow_password: bool,
    /// Bytes read from `inner` not yet handed on; the first `vetted` of them
    /// may be.
    pending: Vec<u8>,
    vetted: usize,
    /// Bytes of the current message still to vet (known to be harmless).
    skip: usize,
    /// The current message is `AuthenticationOk`.
    ok_seen: bool,
    /// Authentication is over: everything passes.
    done: bool,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, allow_password: bool) -> Guarded<S> {
        Guarded {
            inner,
            allow_password,
            pending: Vec::new(),
            vetted: 0,
            skip: 0,
            ok_seen: false,
            done: false,
        }
    }

    /// Vets as many whole messages at the front of `pending` as are there.
    fn vet(&mut self) -> io::Result<()> {
        loop {
            let unvetted = self.pending.len() - self.vetted;
            if self.done {
                self.vetted = self.pending.len();
                return Ok(());
            }
            if self.skip > 0 {
                let n = self.skip.min(unvetted);
                self.vetted += n;
                self.skip -= n;
                if self.skip > 0 {
                    return Ok(());
                }
                self.done = self.ok_seen;
                continue;
            }
            let rest = &self.pending[self.vetted..];
            // A backend message: type byte, then its length (counting itself).
            if rest.len() < 5 {
                return Ok(());
            }
            let length = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            if length < 4 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "malformed message from the server",
                ));
            }
            if rest[0] == b'R' {
                if rest.len() < 9 {
                    return Ok(());
                }
                let code = i32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
                let method = match code {
                    CLEARTEXT => Some("in cleartext"),
                    MD5 => Some("as an md5 digest"),
                    _ => None,
                };
                if let (Some(method), false) = (method, self.allow_password) {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        InsecureAuthRequest { method },
                    ));
                }
                // The rest of this message passes, then everything after it.
                self.ok_seen = code == AUTH_OK;
            }
            self.skip = 1 + length;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.vetted > 0 {
                let n = this.vetted.min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.drain(..n);
                this.vetted -= n;
                return Poll::Ready(Ok(()));
            }
            if this.done && this.pending.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 4096];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    // End of stream: a partial message is of no use to anyone.
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => {
                    this.pending.extend_from_slice(read.filled());
                    this.vet()?;
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: TlsStream + Unpin> TlsStream for Guarded<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

/// A TLS connector for `host` whose streams are guarded.
pub struct GuardedTls<M> {
    pub make: M,
    pub host: String,
    pub allow_password: bool,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, M> TlsConnect<S> for GuardedTls<M>
where
    M: MakeTlsConnect<S>,
    M::TlsConnect: Send + 'static,
    <M::TlsConnect as TlsConnect<S>>::Future: Send + 'static,
    S: Send + 'static,
{
    type Stream = Guarded<M::Stream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Stream, BoxError>> + Send>>;

    fn connect(mut self, stream: S) -> Self::Future {
        let allow = self.allow_password;
        // An invalid server name fails the handshake, as in tokio-postgres.
        let connector = self.make.make_tls_connect(&self.host).map_err(Into::into);
        Box::pin(async move {
            let handshake = connector?.connect(stream);
            Ok(Guarded::new(handshake.await.map_err(Into::into)?, allow))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn auth(code: i32, extra: &[u8]) -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend_from_slice(&(8 + extra.len() as u32).to_be_bytes());
        m.extend_from_slice(&code.to_be_bytes());
        m.extend_from_slice(extra);
        m
    }

    async fn read_all(bytes: Vec<u8>, allow: bool) -> io::Result<Vec<u8>> {
        let mut guarded = Guarded::new(&bytes[..], allow);
        let mut out = Vec::new();
        guarded.read_to_end(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn cleartext_and_md5_requests_are_refused_before_they_are_read() {
        for code in [CLEARTEXT, MD5] {
            let extra: &[u8] = if code == MD5 { b"salt" } else { b"" };
            let e = read_all(auth(code, extra), false).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
            assert!(e.to_string().contains("verify-full"), "{e}");
        }
    }

    #[tokio::test]
    async fn they_pass_on_a_verified_channel() {
        let bytes = auth(CLEARTEXT, b"");
        assert_eq!(read_all(bytes.clone(), true).await.unwrap(), bytes);
    }

    #[tokio::test]
    async fn scram_then_ok_then_anything_passes_untouched() {
        let mut bytes = auth(10, b"SCRAM-SHA-256\0\0");
        bytes.extend(auth(11, b"r=abc,s=xyz,i=4096"));
        bytes.extend(auth(12, b"v=proof"));
        bytes.extend(auth(AUTH_OK, b""));
        // After authentication, bytes that would look like a request pass.
        bytes.extend(auth(CLEARTEXT, b""));
        assert_eq!(read_all(bytes.clone(), false).await.unwrap(), bytes);
    }

    #[tokio::test]
    async fn a_request_split_across_reads_is_still_seen() {
        // One byte per read: the guard must assemble the header first.
        struct Trickle(Vec<u8>);
        impl AsyncRead for Trickle {
            fn poll_read(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                if !self.0.is_empty() {
                    let b = self.0.remove(0);
                    buf.put_slice(&[b]);
                }
                Poll::Ready(Ok(()))
            }
        }
        let mut bytes = b"N\0\0\0\x05x".to_vec(); // a notice first
        bytes.extend(auth(CLEARTEXT, b""));
        let mut guarded = Guarded::new(Trickle(bytes), false);
        let mut out = Vec::new();
        let e = guarded.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(out, b"N\0\0\0\x05x");
    }
}
