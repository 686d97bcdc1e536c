//! `sys/leases/*` (and Vault's legacy `sys/renew`, `sys/revoke`,
//! `sys/revoke-prefix`, `sys/revoke-force`): look up, renew, revoke and list
//! leases.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use serde_json::json;

use super::{Error, SysState};
use crate::lease::{self, ttl, LeaseManager};
use crate::logical::{handler, Field, Operation, Request, Response, Route, Secret};

fn lease_id_field() -> Field {
    Field::string(
        "lease_id",
        "The lease id, e.g. `database/creds/c1/app/ro/<random>`.",
    )
}
fn url_lease_id() -> Field {
    Field::path(
        "url_lease_id",
        "The lease id in the path (the body's `lease_id` wins).",
    )
}
fn prefix_field() -> Field {
    Field::path("prefix", "A lease id or a prefix of lease ids.")
}
fn sync_field() -> Field {
    Field::bool(
        "sync",
        "Revoke before answering (204); false hands it to the background worker (202).",
    )
    .default(json!(true))
}

pub fn routes(state: &Arc<SysState>) -> Vec<Route<Error>> {
    let renew = |template: &'static str, summary: &'static str| {
        Route::new(template, "Renew a lease.", RENEW_HELP)
            .field(lease_id_field())
            .field(url_lease_id())
            .field(Field::duration(
                "increment",
                "Requested TTL, counted from now (default: the role's default TTL).",
            ))
            .op(Operation::Write, summary, handler(state, renew))
    };
    let revoke = |template: &'static str, summary: &'static str| {
        Route::new(template, "Revoke a lease.", REVOKE_HELP)
            .field(lease_id_field())
            .field(url_lease_id())
            .field(sync_field())
            .op(Operation::Write, summary, handler(state, revoke))
    };
    let revoke_prefix = |template: &'static str, summary: &'static str| {
        Route::new(template, "Revoke every lease under a prefix.", PREFIX_HELP)
            .field(prefix_field())
            .field(sync_field())
            .sudo_op(Operation::Write, summary, handler(state, revoke_prefix))
    };
    let revoke_force = |template: &'static str, summary: &'static str| {
        Route::new(
            template,
            "Forget leases without revoking their users.",
            FORCE_HELP,
        )
        .field(prefix_field())
        .sudo_op(Operation::Write, summary, handler(state, revoke_force))
    };
    vec![
        Route::new(
            "leases/lookup/?",
            "Look up a lease; list lease prefixes.",
            LOOKUP_HELP,
        )
        .field(lease_id_field())
        .op(
            Operation::Write,
            "Look up a lease's times and state.",
            handler(state, lookup),
        )
        .sudo_op(
            Operation::List,
            "List the top-level lease prefixes.",
            handler(state, list),
        ),
        Route::new(
            "leases/lookup/{prefix*}",
            "List leases under a prefix.",
            LOOKUP_HELP,
        )
        .field(prefix_field())
        .sudo_op(
            Operation::List,
            "List leases and folders one level under a prefix.",
            handler(state, list),
        ),
        renew("leases/renew/?", "Renew the lease named in the body."),
        renew(
            "leases/renew/{url_lease_id*}",
            "Renew the lease named in the path.",
        ),
        renew("renew/?", "Renew a lease (legacy path)."),
        renew(
            "renew/{url_lease_id*}",
            "Renew a lease named in the path (legacy path).",
        ),
        revoke("leases/revoke/?", "Revoke the lease named in the body."),
        revoke(
            "leases/revoke/{url_lease_id*}",
            "Revoke the lease named in the path.",
        ),
        revoke("revoke/?", "Revoke a lease (legacy path)."),
        revoke(
            "revoke/{url_lease_id*}",
            "Revoke a lease named in the path (legacy path).",
        ),
        revoke_prefix(
            "leases/revoke-prefix/{prefix*}",
            "Revoke every lease under the prefix.",
        ),
        revoke_prefix(
            "revoke-prefix/{prefix*}",
            "Revoke every lease under the prefix (legacy path).",
        ),
        revoke_force(
            "leases/revoke-force/{prefix*}",
            "Forget every lease under the prefix without revoking.",
        ),
        revoke_force(
            "revoke-force/{prefix*}",
            "Forget leases under the prefix without revoking (legacy path).",
        ),
        Route::new(
            "leases/tidy",
            "Remove index entries that point at no lease.",
            TIDY_HELP,
        )
        .sudo_op(
            Operation::Write,
            "Tidy the lease indexes.",
            handler(state, tidy),
        ),
    ]
}

fn rfc3339(unix: i64) -> String {
    Utc.timestamp_opt(unix, 0)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The instant `unix_ms` to the millisecond, as Vault shows lease ends.
fn rfc3339_ms(unix_ms: i64) -> String {
    Utc.timestamp_millis_opt(unix_ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// The lease id of a request: the body's, else the path's.
fn requested_id(req: &Request) -> String {
    req.fields
        .str("lease_id")
        .filter(|s| !s.is_empty())
        .or_else(|| req.fields.str("url_lease_id"))
        .unwrap_or_default()
        .trim_matches('/')
        .to_string()
}

async fn lookup(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let id = requested_id(&req);
    if id.is_empty() {
        return Err(lease::Error::MissingLeaseId.into());
    }
    let lease = state
        .leases
        .get(&id)
        .await?
        .ok_or(lease::Error::InvalidLease)?;
    let now_ms = state.leases.clock.now_ms();
    let mut data = json!({
        "id": lease.lease_id,
        "issue_time": rfc3339(lease.issue_time),
        "expire_time": rfc3339_ms(lease.end_ms()),
        "last_renewal": lease.last_renewal.map(rfc3339),
        // Rounded down: never more than is left.
        "ttl": ttl::remaining_ms(lease.end_ms(), now_ms),
        "renewable": !lease.revoking && lease.end_ms() > now_ms,
        "path": lease.path,
    });
    if lease.failures > 0 {
        data["revoke_failures"] = json!(lease.failures);
        data["irrevocable"] = json!(LeaseManager::is_irrevocable(&lease));
        data["revoke_error"] = json!(lease.last_error);
    }
    Ok(Response::json(data))
}

async fn list(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let prefix = req.fields.str("prefix").unwrap_or_default();
    let prefix = match prefix.trim_matches('/') {
        "" => String::new(),
        p => format!("{p}/"),
    };
    Ok(Response::list(state.leases.list(&prefix).await?))
}

async fn renew(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let id = requested_id(&req);
    if id.starts_with("auth/") {
        return Err(
            lease::Error::Refused("tokens cannot be renewed through this endpoint".into()).into(),
        );
    }
    let increment = req.fields.duration("increment").unwrap_or(0);
    let (lease, ttl, warning) = state.leases.renew(&id, increment).await?;
    let mut response = Response {
        secret: Some(Secret {
            lease_id: lease.lease_id,
            ttl,
            renewable: true,
        }),
        ..Response::default()
    };
    if let Some(w) = warning {
        response.warnings.push(w);
    }
    Ok(response)
}

async fn revoke(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let id = requested_id(&req);
    if id.is_empty() {
        return Err(lease::Error::MissingLeaseId.into());
    }
    if req.fields.bool("sync").unwrap_or(true) {
        state.leases.revoke(&id).await?;
        return Ok(Response::empty());
    }
    state.leases.expire_now(&id).await?;
    Ok(Response {
        status: Some(202),
        ..Response::default()
    })
}

async fn revoke_prefix(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let prefix = req.capture("prefix");
    let sync = req.fields.bool("sync").unwrap_or(true);
    state.leases.revoke_prefix(&prefix, sync).await?;
    Ok(if sync {
        Response::empty()
    } else {
        Response {
            status: Some(202),
            ..Response::default()
        }
    })
}

async fn revoke_force(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let count = state.leases.revoke_force(&req.capture("prefix")).await?;
    tracing::warn!(count, prefix = %req.capture("prefix"), "leases forgotten without revocation (revoke-force)");
    Ok(Response::empty())
}

async fn tidy(state: Arc<SysState>, _req: Request) -> Result<Response, Error> {
    let removed = state.leases.tidy().await?;
    Ok(Response::json(json!({"removed_index_entries": removed})))
}

const LOOKUP_HELP: &str = "PUT/POST with `lease_id` returns the lease's issue and expiry times, TTL, whether it can be renewed and its path; a lease whose revocation failed also shows `revoke_failures`, `irrevocable` (5 failures in a row) and `revoke_error`. LIST (needs sudo) returns the lease ids and folders one level under a prefix.";
const RENEW_HELP: &str = "Renews a lease: the new TTL counts from now (`increment`, else the role's default TTL) and is capped by the role's `max_ttl` from the issue time, with a warning when capped. The user's `VALID UNTIL` moves too. Refused when the lease's cluster or database is disabled or its role deleted (the lease is still revoked on expiry), and with `lease is being revoked` once a revocation of the lease was accepted.";
const REVOKE_HELP: &str = "Revokes a lease: its user's sessions are terminated, its objects reassigned to the objects-owner role and the user dropped. With `sync` (the default) this happens before the answer (204; a failure is a 400 and the lease stays). With `sync=false` the lease is handed to the background worker (202). Either way the lease is durably marked before anything else, so no renewal succeeds afterwards and a crash does not undo the revocation. An unknown lease id succeeds.";
const PREFIX_HELP: &str = "Revokes every lease under the prefix (or the one lease the prefix names), e.g. `database/creds/c1/` for a cluster. Needs sudo.";
const FORCE_HELP: &str = "Forgets every lease under the prefix without dropping its users, even when revocation keeps failing. The users stay in PostgreSQL: `database/reconcile/<cluster>` lists them. Needs sudo.";
const TIDY_HELP: &str = "Removes expiry-index entries that point at no lease (left by crashes between two writes of older versions). Needs sudo.";
