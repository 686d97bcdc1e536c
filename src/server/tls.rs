//! The listener's TLS: certificate chain and key from PEM files, checked
//! (the key matches, the certificate is valid now) before they are served;
//! the lowest TLS version; client certificates from a CA when required;
//! ring as the provider, HTTP/2 and HTTP/1.1 offered. The same loading runs
//! at start and on SIGHUP ([`reload`]), so a pair refused at start is
//! refused on reload too, and a refused reload keeps the old one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};

use super::StartError;
use crate::config::{TlsConfig, TlsVersion};
use crate::listener;

/// Why the listener's certificate, key or client CA cannot be served; each
/// names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listener certificate {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("listener certificate {path} expired at {at}")]
    Expired { path: PathBuf, at: String },
    #[error("listener certificate {path} is not valid before {at}")]
    NotYetValid { path: PathBuf, at: String },
    #[error("listener key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("listener key {key} does not match the certificate {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("listener client CA file {path}: {reason}")]
    ClientCa { path: PathBuf, reason: String },
    #[error("listener TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A checked certificate and key, ready to serve.
pub struct Loaded {
    pub config: Arc<rustls::ServerConfig>,
    /// When the certificate expires (unix seconds), for the expiry gauge.
    pub not_after: i64,
}

/// Loads the listener's TLS for [`crate::server::serve`].
pub fn tls_config(tls: &TlsConfig) -> Result<listener::Tls, StartError> {
    Ok(listener::Tls::new(load(tls)?.config))
}

/// Reads and checks the files of `tls` and builds the rustls configuration.
pub fn load(tls: &TlsConfig) -> Result<Loaded, Error> {
    let certs = read_certificates(&tls.cert_file)?;
    let not_after = check_validity(&tls.cert_file, &certs[0], chrono::Utc::now().timestamp())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = read_key(&tls.key_file)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| Error::Key {
            path: tls.key_file.clone(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(certs, signing_key);
    if certified.keys_match().is_err() {
        return Err(Error::KeyMismatch {
            cert: tls.cert_file.clone(),
            key: tls.key_file.clone(),
        });
    }
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS12, &rustls::version::TLS13],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)?;
    // Vault reads tls_client_ca_file only when client certificates are
    // required; without that it asks for one only for its cert auth method,
    // which pgsecrets does not have, so no certificate is asked for.
    let builder = match (&tls.client_ca_file, tls.require_client_cert) {
        (Some(ca_file), true) => {
            builder.with_client_cert_verifier(client_verifier(ca_file, provider)?)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        not_after,
    })
}

/// Re-reads the files of `tls` (SIGHUP): on success the connections
/// accepted from now on get the new certificate, and the expiry gauge
/// follows it; on failure the old one keeps serving and the refusal is
/// logged.
pub fn reload(tls: &TlsConfig, live: &listener::Tls, telemetry: &crate::telemetry::Telemetry) {
    match load(tls) {
        Ok(loaded) => {
            live.replace(loaded.config);
            telemetry.certificate("listener", loaded.not_after);
            tracing::info!(
                cert_file = %tls.cert_file.display(),
                "SIGHUP: the listener serves the reloaded certificate"
            );
        }
        Err(e) => tracing::error!(
            "SIGHUP: the listener keeps its previous certificate, the new one is refused: {e}"
        ),
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let invalid = |reason: String| Error::Certificate {
        path: path.to_path_buf(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid("holds no PEM certificate".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| Error::Key {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Refuses a certificate that is not valid at `now` (unix seconds): rustls
/// would serve it, and every client would then refuse it. Returns when it
/// expires.
fn check_validity(path: &Path, cert: &CertificateDer<'_>, now: i64) -> Result<i64, Error> {
    use x509_cert::der::Decode;
    let parsed =
        x509_cert::Certificate::from_der(cert.as_ref()).map_err(|e| Error::Certificate {
            path: path.to_path_buf(),
            reason: format!("not an X.509 certificate: {e}"),
        })?;
    let validity = &parsed.tbs_certificate.validity;
    let not_before = validity.not_before.to_unix_duration().as_secs() as i64;
    let not_after = validity.not_after.to_unix_duration().as_secs() as i64;
    if now > not_after {
        return Err(Error::Expired {
            path: path.to_path_buf(),
            at: rfc3339(not_after),
        });
    }
    if now < not_before {
        return Err(Error::NotYetValid {
            path: path.to_path_buf(),
            at: rfc3339(not_before),
        });
    }
    Ok(not_after)
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| unix.to_string())
}

/// Verifies client certificates against the CAs of `path` (a PEM bundle);
/// a client without one is refused.
fn client_verifier(
    path: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, Error> {
    let invalid = |reason: String| Error::ClientCa {
        path: path.to_path_buf(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| invalid(e.to_string()))? {
        let cert = cert.map_err(|e| invalid(e.to_string()))?;
        roots.add(cert).map_err(|e| invalid(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(invalid("holds no PEM certificate".into()));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_is_named_in_rfc3339() {
        assert_eq!(rfc3339(1_796_331_600), "2026-12-03T21:00:00Z");
    }
}
