//! Metrics, rendered in the Prometheus text format by `sys/metrics`, under
//! Vault's names so Vault dashboards keep working. Each server owns its
//! registry (no process-wide recorder): two servers in one process, as in
//! the tests, never count each other's requests.
//!
//! Counts the lower layers already keep (leases, audit failures) are read
//! when scraped; what happens per event (a user created, a request
//! handled, a PostgreSQL error) is recorded here as it happens. No label
//! ever holds a lease id, a user name or a token: labels are a cluster's
//! name and fixed words.

use std::sync::Arc;
use std::time::Instant;

use metrics::{Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Vault's metric names.
pub mod name {
    pub const NUM_LEASES: &str = "vault_expire_num_leases";
    pub const NUM_IRREVOCABLE_LEASES: &str = "vault_expire_num_irrevocable_leases";
    pub const LEASE_EXPIRATION: &str = "vault_expire_lease_expiration";
    pub const LEASE_EXPIRATION_ERROR: &str = "vault_expire_lease_expiration_error";
    pub const CREATE_USER: &str = "vault_database_CreateUser";
    pub const CREATE_USER_ERROR: &str = "vault_database_CreateUser_error";
    pub const REVOKE_USER: &str = "vault_database_RevokeUser";
    pub const REVOKE_USER_ERROR: &str = "vault_database_RevokeUser_error";
    pub const RENEW_USER: &str = "vault_database_RenewUser";
    pub const RENEW_USER_ERROR: &str = "vault_database_RenewUser_error";
    pub const HANDLE_REQUEST: &str = "vault_core_handle_request";
    pub const AUDIT_REQUEST_FAILURE: &str = "vault_audit_log_request_failure";
    pub const AUDIT_RESPONSE_FAILURE: &str = "vault_audit_log_response_failure";
    pub const POSTGRES_ERRORS: &str = "pgsecrets_postgres_errors";
    pub const TLS_CERT_EXPIRY: &str = "pgsecrets_tls_cert_expiry_seconds";
}

/// A server's metrics; cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Certificates watched, by use: when each expires (unix seconds).
    certificates: std::sync::Mutex<std::collections::BTreeMap<String, i64>>,
}

impl Default for Telemetry {
    fn default() -> Telemetry {
        let recorder = PrometheusBuilder::new()
            // Vault's summaries: median, 90th and 99th percentile.
            .set_quantiles(&[0.5, 0.9, 0.99])
            .expect("fixed quantiles are valid")
            .build_recorder();
        let handle = recorder.handle();
        Telemetry {
            inner: Arc::new(Inner {
                recorder,
                handle,
                certificates: Default::default(),
            }),
        }
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Telemetry")
    }
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, v.to_string()))
        .collect();
    Key::from_parts(name, labels)
}

impl Telemetry {
    /// Milliseconds since `started` into the summary `name` (Vault's unit).
    pub fn measure(&self, name: &'static str, started: Instant) {
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        self.inner
            .recorder
            .register_histogram(&key(name, &[]), &METADATA)
            .record(ms);
    }

    /// Adds one to the counter `name` with `labels`.
    pub fn count(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        self.inner
            .recorder
            .register_counter(&key(name, labels), &METADATA)
            .increment(1);
    }

    /// Sets the gauge `name`.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        self.inner
            .recorder
            .register_gauge(&key(name, labels), &METADATA)
            .set(value);
    }

    /// Sets the counter `name` to a total kept elsewhere.
    pub fn total(&self, name: &'static str, value: u64) {
        self.inner
            .recorder
            .register_counter(&key(name, &[]), &METADATA)
            .absolute(value);
    }

    /// Reports `pgsecrets_tls_cert_expiry_seconds{use}` for a certificate
    /// expiring at `not_after` (unix seconds), counted down at each scrape.
    pub fn certificate(&self, use_: &str, not_after: i64) {
        let mut watched = self.inner.certificates.lock().expect("certificates");
        watched.insert(use_.to_string(), not_after);
    }

    /// Folds the samples recorded since into the summaries. Summaries keep
    /// each sample until this runs, so a server nobody scrapes runs it on
    /// a timer ([`Telemetry::keep_up`]) to keep its memory flat.
    pub fn upkeep(&self) {
        self.inner.handle.run_upkeep();
    }

    /// Runs [`Telemetry::upkeep`] every few seconds until `stopped` changes.
    pub async fn keep_up(self, mut stopped: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => self.upkeep(),
                _ = stopped.changed() => return,
            }
        }
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        let now = chrono::Utc::now().timestamp();
        let watched = self
            .inner
            .certificates
            .lock()
            .expect("certificates")
            .clone();
        for (use_, not_after) in watched {
            self.gauge(
                name::TLS_CERT_EXPIRY,
                &[("use", &use_)],
                (not_after - now) as f64,
            );
        }
        self.inner.handle.run_upkeep();
        self.inner.handle.render()
    }
}

/// When the first certificate of a PEM chain expires (unix seconds);
/// `None` when the PEM holds no certificate it can read.
pub fn not_after(pem: &[u8]) -> Option<i64> {
    use rustls_pki_types::pem::PemObject;
    use x509_cert::der::Decode;
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .next()?
        .ok()?;
    let cert = x509_cert::Certificate::from_der(der.as_ref()).ok()?;
    let not_after = cert
        .tbs_certificate
        .validity
        .not_after
        .to_unix_duration()
        .as_secs() as i64;
    Some(not_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_server_has_its_own_counts_in_vaults_shape() {
        let a = Telemetry::default();
        let b = Telemetry::default();
        let started = Instant::now();
        for _ in 0..3 {
            a.measure(name::CREATE_USER, started);
        }
        a.count(
            name::POSTGRES_ERRORS,
            &[("cluster", "main"), ("kind", "unreachable")],
        );
        a.gauge(name::NUM_LEASES, &[], 7.0);
        a.total(name::AUDIT_REQUEST_FAILURE, 2);
        let text = a.render();
        assert!(text.contains("vault_database_CreateUser_count 3"), "{text}");
        assert!(text.contains("quantile=\"0.99\""), "{text}");
        assert!(
            text.contains("pgsecrets_postgres_errors{cluster=\"main\",kind=\"unreachable\"} 1"),
            "{text}"
        );
        assert!(text.contains("vault_expire_num_leases 7"), "{text}");
        assert!(text.contains("vault_audit_log_request_failure 2"), "{text}");
        assert!(
            !b.render().contains("CreateUser"),
            "b counts nothing of a's"
        );
    }
}
