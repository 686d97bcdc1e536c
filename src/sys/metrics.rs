//! `sys/metrics?format=prometheus`: the server's metrics in the Prometheus
//! text format, under Vault's names. Needs `read` on `sys/metrics`, unless
//! the listener sets `unauthenticated_metrics_access` (then any scraper
//! may read it, as in Vault).

use std::sync::Arc;

use super::{Error, SysState};
use crate::logical::{handler, Field, Operation, Request, Response, Route};
use crate::telemetry::name;

pub fn routes(state: &Arc<SysState>) -> Vec<Route<Error>> {
    let route = Route::new("metrics", "The server's metrics.", HELP)
        .field(Field::string(
            "format",
            "`prometheus`: the Prometheus text format (the only one served).",
        ))
        .op(
            Operation::Read,
            "Render the metrics.",
            handler(state, metrics),
        );
    vec![if state.unauthenticated_metrics {
        route.unauthenticated()
    } else {
        route
    }]
}

async fn metrics(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let format = req.fields.str("format").unwrap_or_default();
    if format != "prometheus" {
        return Err(Error::MetricsFormat(format));
    }
    let t = &state.telemetry;
    // The counts kept elsewhere, read now.
    t.gauge(name::NUM_LEASES, &[], state.leases.count().await? as f64);
    t.gauge(
        name::NUM_IRREVOCABLE_LEASES,
        &[],
        state.leases.irrevocable_count().await? as f64,
    );
    let failures = state.audit.failures();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    t.total(name::AUDIT_REQUEST_FAILURE, load(&failures.request));
    t.total(name::AUDIT_RESPONSE_FAILURE, load(&failures.response));
    Ok(Response::text(t.render()))
}

const HELP: &str = "\
The server's metrics in the Prometheus text format (`?format=prometheus`), \
with Vault's names: `vault_expire_num_leases`, \
`vault_expire_num_irrevocable_leases`, `vault_expire_lease_expiration` \
(and `_error`), `vault_database_CreateUser`/`RevokeUser`/`RenewUser` \
(summaries in milliseconds, and `_error` counters), \
`vault_core_handle_request`, `vault_audit_log_request_failure` and \
`_response_failure`; and pgsecrets' own `pgsecrets_postgres_errors{cluster,kind}` \
and `pgsecrets_tls_cert_expiry_seconds{use}`. No label holds a lease id, a \
user name or a token. Needs `read` on `sys/metrics` unless the listener \
sets `unauthenticated_metrics_access = true`.";
