//! `sys/health`, `sys/seal-status`, `sys/leader`, `sys/init`: the endpoints
//! clients call before anything else. None needs a token.

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;

use super::{Error, SysState};
use crate::logical::{handler, Field, Operation, Request, Response, Route};

pub fn routes(state: &Arc<SysState>) -> Vec<Route<Error>> {
    let code = |name: &'static str, description: &'static str| Field::string(name, description);
    vec![
        Route::new("health", "Health of this server.", HEALTH_HELP)
            .unauthenticated()
            .field(Field::string(
                "standbyok",
                "Answer 200 rather than the standby code on a standby.",
            ))
            .field(Field::string(
                "perfstandbyok",
                "Accepted for compatibility; ignored.",
            ))
            .field(code(
                "activecode",
                "Status code for an active server (default 200).",
            ))
            .field(code(
                "standbycode",
                "Status code for a standby (default 429).",
            ))
            .field(code("sealedcode", "Status code when sealed (default 503)."))
            .field(code(
                "uninitcode",
                "Status code when not initialised (default 501).",
            ))
            .field(code(
                "drsecondarycode",
                "Accepted for compatibility; ignored.",
            ))
            .field(code(
                "performancestandbycode",
                "Accepted for compatibility; ignored.",
            ))
            .field(code("removedcode", "Accepted for compatibility; ignored."))
            .field(code(
                "haunhealthycode",
                "Accepted for compatibility; ignored.",
            ))
            .op(
                Operation::Read,
                "Report health; the status code tells the state.",
                handler(state, health),
            ),
        Route::new("seal-status", "Seal status of this server.", SEAL_HELP)
            .unauthenticated()
            .op(
                Operation::Read,
                "Report the seal status.",
                handler(state, seal_status),
            ),
        Route::new(
            "leader",
            "High-availability leader of this server.",
            LEADER_HELP,
        )
        .unauthenticated()
        .op(
            Operation::Read,
            "Report the HA leader.",
            handler(state, leader),
        ),
        Route::new("init", "Initialisation status.", INIT_HELP)
            .unauthenticated()
            .op(
                Operation::Read,
                "Report whether the server is initialised.",
                handler(state, init),
            ),
    ]
}

fn status_param(req: &Request, name: &'static str, default: u16) -> Result<u16, Error> {
    match req.fields.str(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(|| Error::BadQueryParameter {
                name,
                value: v,
                expected: "an HTTP status code from 100 to 599",
            }),
    }
}

async fn health(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let active = status_param(&req, "activecode", 200)?;
    for name in ["standbycode", "sealedcode", "uninitcode"] {
        status_param(&req, name, 200)?;
    }
    if let Some(v) = req.fields.str("standbyok") {
        if crate::logical::field::parse_bool(&v).is_none() {
            return Err(Error::BadQueryParameter {
                name: "standbyok",
                value: v,
                expected: "a bool",
            });
        }
    }
    let irrevocable = state.leases.irrevocable_count().await?;
    // This server is always initialised, unsealed and active (no HA yet), so
    // the active code is the answer.
    Ok(Response::raw(
        active,
        json!({
            "initialized": true,
            "sealed": false,
            "standby": false,
            "performance_standby": false,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": Utc::now().timestamp(),
            "version": crate::VERSION,
            "enterprise": false,
            "cluster_name": state.cluster.name,
            "cluster_id": state.cluster.id,
            "echo_duration_ms": 0,
            "clock_skew_ms": 0,
            "irrevocable_leases": irrevocable,
        }),
    ))
}

async fn seal_status(state: Arc<SysState>, _req: Request) -> Result<Response, Error> {
    Ok(Response::raw(
        200,
        json!({
            "type": "shamir",
            "initialized": true,
            "sealed": false,
            "t": 1,
            "n": 1,
            "progress": 0,
            "nonce": "",
            "version": crate::VERSION,
            "build_date": env!("PGSECRETS_BUILD_DATE"),
            "commit_date": env!("PGSECRETS_BUILD_DATE"),
            "migration": false,
            "recovery_seal": false,
            "storage_type": state.storage.backend_kind(),
            "cluster_name": state.cluster.name,
            "cluster_id": state.cluster.id,
        }),
    ))
}

async fn leader(state: Arc<SysState>, _req: Request) -> Result<Response, Error> {
    Ok(Response::raw(
        200,
        json!({
            "ha_enabled": false,
            "is_self": true,
            "active_time": state.active_since,
            "leader_address": "",
            "leader_cluster_address": "",
            "performance_standby": false,
            "performance_standby_last_remote_wal": 0,
        }),
    ))
}

async fn init(_state: Arc<SysState>, _req: Request) -> Result<Response, Error> {
    Ok(Response::raw(200, json!({"initialized": true})))
}

const HEALTH_HELP: &str = "Returns the health of this server. HEAD returns the same status code without a body. The code is `activecode` (200) for an active, unsealed server; the query parameters change the codes as in Vault. The JSON body goes with every code.";
const SEAL_HELP: &str = "Returns the seal status. pgsecrets unseals itself at start from its key file or environment variable, so a running server is never sealed.";
const LEADER_HELP: &str =
    "Returns the high-availability status. A single server reports itself as the leader.";
const INIT_HELP: &str = "Returns whether the server is initialised. A running server always is: `pgsecrets operator init` initialises storage before the first start.";
