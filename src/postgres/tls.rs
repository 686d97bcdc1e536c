//! TLS for connections to managed clusters, with libpq's `sslmode` meanings:
//! `require` encrypts without checking the certificate, `verify-ca` checks
//! the chain but not the host name, `verify-full` checks both. Trust roots
//! are the given CA (inline PEM) or the system's. Handshake failures are
//! told apart here: a server without TLS, and why a certificate was refused.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Error, SslMode};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: Option<&str>) -> Result<RootCertStore, Error> {
    use rustls_pki_types::pem::PemObject;
    let mut store = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| Error::Tls(format!("ssl_root_cert: {e}")))?;
                store
                    .add(cert)
                    .map_err(|e| Error::Tls(format!("ssl_root_cert: {e}")))?;
            }
            if store.is_empty() {
                return Err(Error::Tls("ssl_root_cert holds no certificate".into()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = store.add(cert);
            }
        }
    }
    Ok(store)
}

/// The rustls client configuration for a mode (`None` for `disable`).
pub fn client_config(
    mode: SslMode,
    ca_pem: Option<&str>,
) -> Result<Option<rustls::ClientConfig>, Error> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let config = match mode {
        SslMode::Disable => return Ok(None),
        SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate))
            .with_no_client_auth(),
        SslMode::VerifyCa => {
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider())
                    .build()
                    .map_err(|e| Error::Tls(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
                .with_no_client_auth()
        }
        SslMode::VerifyFull => builder
            .with_root_certificates(roots(ca_pem)?)
            .with_no_client_auth(),
    };
    Ok(Some(config))
}

/// `sslmode=require`: encryption without authentication of the server, as
/// libpq does it when no root certificate is given.
#[derive(Debug)]
struct AnyCertificate;

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the host name
/// is not checked.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The io error a server's "no" to the TLS request surfaces as;
/// `Error::from_pg` finds it. tokio-postgres reports that answer only as
/// text, and errors are never classified by their text.
#[derive(Debug, thiserror::Error)]
#[error("the server does not accept TLS")]
pub struct TlsRefused;

/// A stream that reads the server's one-byte answer to the TLS request
/// (`S` yes, `N` no) and turns a `N` into [`TlsRefused`]; after the answer
/// everything passes untouched.
pub struct WatchAnswer<S> {
    inner: S,
    answered: bool,
}

impl<S> WatchAnswer<S> {
    pub fn new(inner: S) -> WatchAnswer<S> {
        WatchAnswer {
            inner,
            answered: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WatchAnswer<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if !self.answered && buf.filled().len() > before {
            self.answered = true;
            if buf.filled()[before] == b'N' {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    TlsRefused,
                )));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchAnswer<S> {
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

/// Why a certificate was refused, and what to do about it, in words an
/// operator registering a cluster can act on.
pub fn certificate_reason(error: &rustls::CertificateError, host: &str, ca_given: bool) -> String {
    use rustls::CertificateError as E;
    match error {
        E::UnknownIssuer if ca_given => {
            "unknown issuer: it is not signed by the CA in ssl_root_cert".into()
        }
        E::UnknownIssuer => "unknown issuer: it is not signed by a CA this system trusts; give the CA certificate as ssl_root_cert".into(),
        E::NotValidForName => format!(
            "name mismatch: it is not valid for {host:?}; connect by a name it holds, or use ssl_mode=verify-ca to check the CA only"
        ),
        E::NotValidForNameContext { presented, .. } => format!(
            "name mismatch: it is not valid for {host:?} but for {}; connect by a name it holds, or use ssl_mode=verify-ca to check the CA only",
            presented.join(", ")
        ),
        E::Expired | E::ExpiredContext { .. } => "expired: it is past its validity period".into(),
        E::NotValidYet | E::NotValidYetContext { .. } => {
            "not valid yet: its validity period has not begun (check the clocks)".into()
        }
        // webpki finds the issuer by its name; a CA of the same name but
        // another key (a regenerated CA, the wrong file) fails here.
        E::BadSignature if ca_given => "bad signature: it is not signed by the CA in ssl_root_cert, though that CA has the name of its issuer".into(),
        E::BadSignature => "bad signature: it is not signed by the CA it names".into(),
        E::InvalidPurpose | E::InvalidPurposeContext { .. } => {
            "wrong purpose: its extended key usage does not allow a TLS server".into()
        }
        E::Revoked => "revoked".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_no_to_the_tls_request_is_an_error_and_a_yes_passes() {
        let mut refused = WatchAnswer::new(&b"N"[..]);
        let e = refused.read_u8().await.unwrap_err();
        assert!(e.get_ref().unwrap().is::<TlsRefused>(), "{e}");
        let mut accepted = WatchAnswer::new(&b"SN"[..]);
        let mut out = Vec::new();
        accepted.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"SN", "only the first byte is the answer");
    }

    #[test]
    fn certificate_reasons_name_the_fault_and_the_fix() {
        use rustls::CertificateError as E;
        let reason = |e: E, ca: bool| certificate_reason(&e, "db.example", ca);
        assert!(reason(E::Expired, false).starts_with("expired"));
        assert!(reason(E::NotValidYet, false).contains("clocks"));
        let name = reason(E::NotValidForName, true);
        assert!(name.starts_with("name mismatch") && name.contains("\"db.example\""));
        assert!(name.contains("verify-ca"), "{name}");
        assert!(
            reason(E::UnknownIssuer, false).contains("give the CA certificate as ssl_root_cert")
        );
        assert!(reason(E::UnknownIssuer, true).contains("not signed by the CA in ssl_root_cert"));
    }
}
