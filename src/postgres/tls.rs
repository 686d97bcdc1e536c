//! TLS for connections to managed clusters, with libpq's `sslmode` meanings:
//! `require` encrypts without checking the certificate (unless a CA is
//! given: then, as in libpq, it checks the chain as `verify-ca` does),
//! `verify-ca` checks the chain but not the host name, `verify-full` checks
//! both. Trust roots are the given CA (inline PEM) or the system's. A client
//! certificate and key (inline PEM) answer servers whose `pg_hba.conf` asks
//! for one (`clientcert=verify-ca`). Handshake failures are told apart here:
//! a server without TLS, and why a certificate was refused.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Error, SslMode};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots_from(certs: &[CertificateDer<'static>]) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    for cert in certs {
        store
            .add(cert.clone())
            .map_err(|e| Error::Tls(format!("ssl_root_cert: {e}")))?;
    }
    Ok(store)
}

fn roots(ca_pem: Option<&str>) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    match ca_pem {
        Some(pem) => store = roots_from(&certificates("ssl_root_cert", pem)?)?,
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = store.add(cert);
            }
        }
    }
    Ok(store)
}

/// A client certificate chain and its private key, both PEM, that
/// pgsecrets shows servers asking for one. Debug never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity").finish_non_exhaustive()
    }
}

/// Whether `mode` checks the server's chain once a CA is given: libpq's
/// `require` does (it acts as `verify-ca` when a root certificate is there).
pub fn checks_chain(mode: SslMode, ca_given: bool) -> bool {
    match mode {
        SslMode::Disable => false,
        SslMode::Require => ca_given,
        SslMode::VerifyCa | SslMode::VerifyFull => true,
    }
}

/// The rustls client configuration for a mode (`None` for `disable`).
pub fn client_config(
    mode: SslMode,
    ca_pem: Option<&str>,
    identity: Option<&ClientIdentity>,
) -> Result<Option<rustls::ClientConfig>, Error> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = match mode {
        SslMode::Disable => return Ok(None),
        SslMode::Require if ca_pem.is_none() => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate)),
        SslMode::Require | SslMode::VerifyCa => {
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider())
                    .build()
                    .map_err(|e| Error::Tls(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
        }
        SslMode::VerifyFull => builder.with_root_certificates(roots(ca_pem)?),
    };
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let (chain, key) = parse_identity(identity)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::Tls(format!("ssl_cert/ssl_key: {e}")))?
        }
    };
    Ok(Some(config))
}

fn parse_identity(
    identity: &ClientIdentity,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    let chain = certificates("ssl_cert", &identity.cert_pem)?;
    if identity.key_pem.contains("ENCRYPTED PRIVATE KEY")
        || identity.key_pem.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(Error::Tls(
            "ssl_key is encrypted with a passphrase, which pgsecrets cannot use: give it decrypted (openssl pkey -in key.pem); pgsecrets stores it encrypted".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).map_err(|e| {
        Error::Tls(format!(
            "ssl_key holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"
        ))
    })?;
    Ok((chain, key))
}

/// The certificates of a PEM text, at least one.
fn certificates(field: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{field}: {e}")))?;
    if chain.is_empty() {
        return Err(Error::Tls(format!("{field} holds no PEM certificate")));
    }
    Ok(chain)
}

/// Checks what a cluster write gives before it is kept: every certificate
/// parses and is within its validity period at `now` (unix seconds), and the
/// key belongs to the client certificate.
pub fn check_settings(
    ca_pem: Option<&str>,
    identity: Option<&ClientIdentity>,
    now: i64,
) -> Result<(), (&'static str, String)> {
    if let Some(pem) = ca_pem {
        let roots =
            certificates("ssl_root_cert", pem).map_err(|e| ("ssl_root_cert", e.to_string()))?;
        for (at, cert) in roots.iter().enumerate() {
            check_validity(cert, now)
                .map_err(|why| ("ssl_root_cert", format!("certificate {} {why}", at + 1)))?;
        }
        roots_from(&roots).map_err(|e| ("ssl_root_cert", e.to_string()))?;
    }
    if let Some(identity) = identity {
        let (chain, key) = parse_identity(identity).map_err(|e| {
            let field = if e.to_string().starts_with("ssl_cert") {
                "ssl_cert"
            } else {
                "ssl_key"
            };
            (field, tls_reason(e))
        })?;
        check_validity(&chain[0], now)
            .map_err(|why| ("ssl_cert", format!("the certificate {why}")))?;
        let signing = provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| ("ssl_key", format!("unusable private key: {e}")))?;
        rustls::sign::CertifiedKey::new(chain, signing)
            .keys_match()
            .map_err(|_| {
                (
                    "ssl_key",
                    "it is not the key of the certificate in ssl_cert".to_string(),
                )
            })?;
    }
    Ok(())
}

fn tls_reason(e: Error) -> String {
    match e {
        Error::Tls(reason) => reason,
        other => other.to_string(),
    }
}

/// `Ok` when `now` is inside the certificate's validity period; otherwise
/// why not, as "expired at ..." or "is not valid until ...".
fn check_validity(cert: &CertificateDer<'_>, now: i64) -> Result<(), String> {
    use x509_cert::der::Decode;
    let parsed = x509_cert::Certificate::from_der(cert.as_ref())
        .map_err(|e| format!("cannot be read: {e}"))?;
    let validity = &parsed.tbs_certificate.validity;
    let not_before = validity.not_before.to_unix_duration().as_secs() as i64;
    let not_after = validity.not_after.to_unix_duration().as_secs() as i64;
    let show = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| t.to_string())
    };
    if now > not_after {
        return Err(format!("expired at {}", show(not_after)));
    }
    if now < not_before {
        return Err(format!("is not valid until {}", show(not_before)));
    }
    Ok(())
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
            "unknown issuer: it is not signed by the CA in ssl_root_cert (a self-signed server certificate cannot be its own CA: rustls accepts only one a CA signed)".into()
        }
        E::Other(other)
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ) =>
        {
            "it is a CA certificate, not a server's (self-signed ones made with `openssl req -x509` are): rustls accepts only a server certificate signed by a CA; give that CA as ssl_root_cert".into()
        }
        E::UnknownIssuer => "unknown issuer: it is not signed by a CA this system trusts; give the CA certificate as ssl_root_cert".into(),
        E::NotValidForName => format!(
            "name mismatch: it is not valid for {host:?}; connect by a name it holds, or use ssl_mode=verify-ca to check the CA only"
        ),
        E::NotValidForNameContext { presented, .. } if presented.is_empty() => format!(
            "name mismatch: it holds no subjectAltName, and rustls does not read host names from the common name (CN); reissue it with a subjectAltName for {host:?}"
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
