//! Test certificates made with rcgen: a CA, and server or client
//! certificates it signs, current, expired or not yet valid.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Files of [`make`]: the CA's certificate, and a server certificate and key.
pub struct Certs {
    pub ca_pem: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// When a certificate is valid, relative to now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// From an hour ago for a day.
    Current,
    /// Ended an hour ago.
    Expired,
    /// Begins in a day.
    NotYet,
    /// From an hour ago for a year (a renewal, told apart by its expiry).
    Year,
}

/// What a leaf certificate is for (its extended key usage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
}

/// A certificate and its private key, in PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    /// Writes `<name>.pem` and `<name>.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

/// A certificate authority for one test.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

fn window(validity: Validity) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    let hour = time::Duration::hours(1);
    let day = time::Duration::days(1);
    match validity {
        Validity::Current => (now - hour, now + day),
        Validity::Expired => (now - day, now - hour),
        Validity::NotYet => (now + day, now + day + day),
        Validity::Year => (now - hour, now + day * 365),
    }
}

/// `IP:127.0.0.1` or `DNS:db.example` (openssl's notation), or a bare name.
fn san(text: &str) -> SanType {
    let value = text
        .strip_prefix("IP:")
        .or_else(|| text.strip_prefix("DNS:"))
        .unwrap_or(text);
    match value.parse() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(value.try_into().unwrap()),
    }
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        (params.not_before, params.not_after) = window(Validity::Current);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// The CA's private key, PEM (for a self-signed certificate that is
    /// its own CA).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A certificate signed by this CA with common name `cn` and the given
    /// subject alternative names.
    pub fn leaf(&self, cn: &str, sans: &[&str], usage: Usage, validity: Validity) -> Leaf {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans.iter().map(|s| san(s)).collect();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = window(validity);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A current server certificate for `san`.
    pub fn server(&self, san: &str) -> Leaf {
        self.leaf(
            "pgsecrets test server",
            &[san],
            Usage::Server,
            Validity::Current,
        )
    }

    /// A current client certificate whose common name is `cn` (PostgreSQL
    /// maps it to the user under `clientcert=verify-full`).
    pub fn client(&self, cn: &str) -> Leaf {
        self.leaf(cn, &[], Usage::Client, Validity::Current)
    }
}

/// A CA and a server certificate for `san` (e.g. `IP:127.0.0.1` or
/// `DNS:other.example`), written into `dir` as `ca.pem`, `cert.pem` and
/// `key.pem`.
pub fn make(dir: &Path, san: &str) -> Certs {
    let ca = Ca::new("pgsecrets test CA");
    let ca_pem = dir.join("ca.pem");
    std::fs::write(&ca_pem, &ca.pem).unwrap();
    let leaf = ca.server(san);
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    Certs { ca_pem, cert, key }
}
