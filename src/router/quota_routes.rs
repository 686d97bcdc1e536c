//! `sys/quotas/rate-limit/<name>` and `sys/quotas/config`: here rather
//! than in `sys` because a rule's path is checked against the mount table.

use std::sync::{Arc, Weak};

use serde_json::json;

use super::mounts::Mounts;
use crate::logical::{handler, Field, Operation, Request, Response, Route};
use crate::quota::{self, Quotas, Rule, Settings};
use crate::Error as AnyError;

pub struct QuotaRoutes {
    mounts: Weak<Mounts>,
    quotas: Quotas,
}

pub fn routes(mounts: &Arc<Mounts>, quotas: &Quotas) -> Vec<Route<AnyError>> {
    let state = Arc::new(QuotaRoutes {
        mounts: Arc::downgrade(mounts),
        quotas: quotas.clone(),
    });
    vec![
        Route::new("quotas/rate-limit/?", "List the rate-limit quotas.", HELP).op(
            Operation::List,
            "List the rules' names.",
            handler(&state, list),
        ),
        Route::new("quotas/rate-limit/{name}", "A rate-limit quota.", HELP)
            .field(Field::name("name", "The rule's name."))
            .field(Field::string(
                "path",
                "Empty (every request), a mount (`database/`) or a path below one.",
            ))
            .field(Field::string("rate", "Requests allowed per interval (> 0).").required())
            .field(Field::duration("interval", "The interval (default 1s)."))
            .field(Field::duration(
                "block_interval",
                "How long a client over the limit stays refused (default: until its bucket refills).",
            ))
            .field(Field::string("role", "Not supported: must be empty."))
            .field(Field::bool("inheritable", "Shown as given (paths below the rule's path always count)."))
            .op(Operation::Read, "Read a rule.", handler(&state, read))
            .op(Operation::Write, "Create or replace a rule.", handler(&state, write))
            .op(Operation::Delete, "Delete a rule.", handler(&state, delete)),
        Route::new("quotas/config", "Settings of the quotas.", CONFIG_HELP)
            .field(Field::list(
                "rate_limit_exempt_paths",
                "Paths no rate limit applies to.",
            ))
            .field(Field::bool("enable_rate_limit_audit_logging", "Kept and shown."))
            .field(Field::bool(
                "enable_rate_limit_response_headers",
                "Kept and shown (Retry-After is always sent with a 429).",
            ))
            .op(Operation::Read, "Read the settings.", handler(&state, read_config))
            .op(Operation::Write, "Change the settings.", handler(&state, write_config)),
    ]
}

fn rule_json(rule: &Rule) -> Response {
    Response::json(json!({
        "name": rule.name,
        "path": rule.path,
        "type": "rate-limit",
        "rate": rule.rate,
        "interval": rule.interval,
        "block_interval": rule.block_interval,
        "role": "",
        "inheritable": rule.inheritable,
    }))
}

async fn list(state: Arc<QuotaRoutes>, _req: Request) -> Result<Response, AnyError> {
    Ok(Response::list(state.quotas.names()))
}

async fn read(state: Arc<QuotaRoutes>, req: Request) -> Result<Response, AnyError> {
    Ok(state
        .quotas
        .get(&req.capture("name"))
        .map(|r| rule_json(&r))
        .unwrap_or_else(Response::empty))
}

async fn write(state: Arc<QuotaRoutes>, req: Request) -> Result<Response, AnyError> {
    let f = &req.fields;
    if f.str("role").is_some_and(|r| !r.is_empty()) {
        return Err(quota::Error::Role.into());
    }
    let rate = f
        .str("rate")
        .and_then(|r| r.trim().parse::<f64>().ok())
        .ok_or(quota::Error::BadRate)?;
    let path = f.str("path").unwrap_or_default();
    let path = path.trim_start_matches('/').to_string();
    if !path.is_empty() {
        let mounts = state
            .mounts
            .upgrade()
            .expect("mount table outlives requests");
        let probe = if path.ends_with('/') {
            path.clone()
        } else {
            format!("{path}/")
        };
        if mounts.find(&probe).is_none() {
            return Err(quota::Error::BadPath(path).into());
        }
    }
    let positive = |name: &'static str, default: u64| -> Result<u64, AnyError> {
        match f.duration(name) {
            None => Ok(default),
            Some(0) if name == "interval" => Err(quota::Error::BadDuration(name).into()),
            Some(s) => Ok(s),
        }
    };
    let rule = Rule {
        name: req.capture("name"),
        inheritable: f.bool("inheritable").unwrap_or(path.is_empty()),
        path,
        rate,
        interval: positive("interval", 1)?,
        block_interval: positive("block_interval", 0)?,
    };
    state.quotas.put(rule).await?;
    Ok(Response::empty())
}

async fn delete(state: Arc<QuotaRoutes>, req: Request) -> Result<Response, AnyError> {
    state.quotas.delete(&req.capture("name")).await?;
    Ok(Response::empty())
}

async fn read_config(state: Arc<QuotaRoutes>, _req: Request) -> Result<Response, AnyError> {
    let s = state.quotas.settings();
    Ok(Response::json(json!({
        "rate_limit_exempt_paths": s.rate_limit_exempt_paths,
        "enable_rate_limit_audit_logging": s.enable_rate_limit_audit_logging,
        "enable_rate_limit_response_headers": s.enable_rate_limit_response_headers,
    })))
}

async fn write_config(state: Arc<QuotaRoutes>, req: Request) -> Result<Response, AnyError> {
    let old = state.quotas.settings();
    let f = &req.fields;
    let settings = Settings {
        rate_limit_exempt_paths: f
            .list("rate_limit_exempt_paths")
            .unwrap_or(old.rate_limit_exempt_paths),
        enable_rate_limit_audit_logging: f
            .bool("enable_rate_limit_audit_logging")
            .unwrap_or(old.enable_rate_limit_audit_logging),
        enable_rate_limit_response_headers: f
            .bool("enable_rate_limit_response_headers")
            .unwrap_or(old.enable_rate_limit_response_headers),
    };
    state.quotas.set_settings(settings).await?;
    Ok(Response::empty())
}

const HELP: &str = "\
A rate limit: `rate` requests per `interval` for each client address, on \
every request (`path` empty), a mount's (`database/`) or those below a \
path; the rule with the longest matching path applies. Checked before the \
token is looked up. Over the limit: 429 `request path \"<p>\": rate limit \
quota exceeded`, with `Retry-After`. Behind a proxy, the client address is \
taken from `X-Forwarded-For` only when the proxy's address is listed in the \
listener's `x_forwarded_for_authorized_addrs`.";

const CONFIG_HELP: &str = "\
Paths that no rate limit applies to (default: `sys/health`, \
`sys/seal-status`, `sys/unseal`).";
