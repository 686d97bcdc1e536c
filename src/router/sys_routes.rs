//! The `sys/` routes that belong to the router: the mount table
//! (`sys/mounts`, and `sys/auth` for the auth mounts) and the OpenAPI
//! document (`sys/internal/specs/openapi`).

use std::sync::{Arc, Weak};

use serde_json::{json, Map, Value};

use super::mounts::{self, MountConfig, MountEntry, Mounts};
use super::Error;
use crate::auth::token::SYSTEM_MAX_TTL;
use crate::logical::{duration, handler, Field, Operation, Request, Response, Route};
use crate::sys;
use crate::Error as AnyError;

/// Handlers hold the table weakly: the table owns the `sys/` backend that
/// owns these handlers.
pub struct MountRoutes {
    mounts: Weak<Mounts>,
}

impl MountRoutes {
    fn mounts(&self) -> Arc<Mounts> {
        self.mounts
            .upgrade()
            .expect("mount table outlives requests")
    }
}

pub fn routes(mounts: &Arc<Mounts>) -> Vec<Route> {
    let state = Arc::new(MountRoutes {
        mounts: Arc::downgrade(mounts),
    });
    vec![
        Route::new("mounts/?", "List the mounted secrets engines.", MOUNTS_HELP).op(
            Operation::Read,
            "List the mounted secrets engines.",
            handler(&state, list_mounts),
        ),
        Route::new("auth/?", "List the enabled auth methods.", AUTH_HELP).op(
            Operation::Read,
            "List the enabled auth methods.",
            handler(&state, list_auth),
        ),
        Route::new(
            "mounts/{path*}/tune",
            "Tune a mount's lease TTLs.",
            TUNE_HELP,
        )
        .field(Field::path("path", "The mount path, e.g. `database`."))
        .field(Field::string(
            "default_lease_ttl",
            "Default lease TTL of the mount (duration, or `system` for 768h).",
        ))
        .field(Field::string(
            "max_lease_ttl",
            "Maximum lease TTL of the mount (duration, or `system` for 768h).",
        ))
        .field(Field::string(
            "description",
            "New description of the mount.",
        ))
        .op(
            Operation::Read,
            "Read a mount's lease TTLs.",
            handler(&state, read_tune),
        )
        .op(
            Operation::Write,
            "Change a mount's lease TTLs.",
            handler(&state, write_tune),
        ),
        Route::new(
            "mounts/{path*}",
            "Enable, read or disable a secrets engine.",
            MOUNT_HELP,
        )
        .field(Field::path(
            "path",
            "The path to mount the engine at, e.g. `database`.",
        ))
        .field(
            Field::string(
                "type",
                "The engine type; `database` is the one pgsecrets provides.",
            )
            .required(),
        )
        .field(Field::string(
            "description",
            "A human-friendly description.",
        ))
        .field(Field::map(
            "config",
            "Mount settings: `default_lease_ttl` and `max_lease_ttl` (durations or `system`).",
        ))
        .field(Field::map("options", "Engine options (kept, unused)."))
        .field(Field::bool("local", "Accepted for compatibility; ignored."))
        .field(Field::bool(
            "seal_wrap",
            "Accepted for compatibility; ignored.",
        ))
        .field(Field::string(
            "plugin_name",
            "Accepted for compatibility; ignored.",
        ))
        .field(Field::string(
            "plugin_version",
            "Accepted for compatibility; ignored.",
        ))
        .op(
            Operation::Read,
            "Read one mount.",
            handler(&state, read_mount),
        )
        .op(
            Operation::Write,
            "Enable a secrets engine at this path.",
            handler(&state, enable_mount),
        )
        .op(
            Operation::Delete,
            "Disable the secrets engine at this path and revoke its leases.",
            handler(&state, disable_mount),
        ),
        Route::new(
            "internal/specs/openapi",
            "The OpenAPI 3 document of every mounted route.",
            OPENAPI_HELP,
        )
        .unauthenticated()
        .op(
            Operation::Read,
            "Generate the OpenAPI document of every mounted route.",
            handler(&state, openapi),
        ),
    ]
}

/// The JSON shape Vault clients expect for one mount.
pub fn mount_json(entry: &MountEntry) -> Value {
    json!({
        "type": entry.kind,
        "description": entry.description,
        "accessor": entry.accessor,
        "uuid": entry.uuid,
        "local": entry.local,
        "seal_wrap": entry.seal_wrap,
        "external_entropy_access": false,
        "options": entry.options,
        "plugin_version": "",
        "running_plugin_version": "",
        "running_sha256": "",
        "config": {
            "default_lease_ttl": entry.config.default_lease_ttl,
            "max_lease_ttl": entry.config.max_lease_ttl,
            "force_no_cache": false,
        },
    })
}

async fn list_mounts(state: Arc<MountRoutes>, _req: Request) -> Result<Response, AnyError> {
    let mut data = Map::new();
    for entry in state.mounts().entries() {
        if entry.kind == "token" {
            continue; // an auth method, listed by sys/auth in Vault
        }
        data.insert(entry.path.clone(), mount_json(&entry));
    }
    let mut response = Response::data(data);
    response.data_at_top_level = true;
    Ok(response)
}

/// `sys/auth`: the auth mounts (only `token/`), keyed without `auth/`.
async fn list_auth(state: Arc<MountRoutes>, _req: Request) -> Result<Response, AnyError> {
    let mut data = Map::new();
    for entry in state.mounts().entries() {
        if let Some(path) = entry.path.strip_prefix("auth/") {
            let mut json = mount_json(&entry);
            json["config"]["token_type"] = json!("default-service");
            data.insert(path.to_string(), json);
        }
    }
    let mut response = Response::data(data);
    response.data_at_top_level = true;
    Ok(response)
}

async fn read_mount(state: Arc<MountRoutes>, req: Request) -> Result<Response, AnyError> {
    let path = mounts::normalize(&req.capture("path"));
    match state.mounts().get(&path) {
        Some(entry) => {
            // Repeated at the top level, as Vault does for sys/mounts.
            let mut response = Response::json(mount_json(&entry));
            response.data_at_top_level = true;
            Ok(response)
        }
        None => Err(Error::NoMount { path }.into()),
    }
}

/// `"system"`, empty or absent mean 0 (the system default).
fn parse_ttl(field: &'static str, value: Option<String>) -> Result<u64, AnyError> {
    let Some(value) = value else { return Ok(0) };
    if value.is_empty() || value == "system" {
        return Ok(0);
    }
    let seconds = duration::parse_seconds(&value).map_err(|reason| sys::Error::InvalidTtl {
        field,
        reason: format!("{value:?}: {reason}"),
    })?;
    if seconds < 0.0 {
        return Err(sys::Error::InvalidTtl {
            field,
            reason: format!("cannot provide negative value '{value}'"),
        }
        .into());
    }
    let seconds = seconds as u64;
    if seconds > SYSTEM_MAX_TTL {
        return Err(sys::Error::InvalidTtl {
            field,
            reason: format!(
                "{value:?} is greater than the system maximum of {}",
                duration::format_go(SYSTEM_MAX_TTL)
            ),
        }
        .into());
    }
    Ok(seconds)
}

fn check_config(config: MountConfig) -> Result<MountConfig, AnyError> {
    if config.default_lease_ttl > 0
        && config.max_lease_ttl > 0
        && config.default_lease_ttl > config.max_lease_ttl
    {
        return Err(sys::Error::InvalidTtl {
            field: "default_lease_ttl",
            reason: "it must not be greater than max_lease_ttl".into(),
        }
        .into());
    }
    Ok(config)
}

async fn enable_mount(state: Arc<MountRoutes>, req: Request) -> Result<Response, AnyError> {
    let path = req.capture("path");
    let kind = req.fields.str("type").unwrap_or_default();
    let mut entry = MountEntry::new(&mounts::normalize(&path), &kind, "");
    entry.description = req.fields.str("description").unwrap_or_default();
    entry.options = req.fields.map("options");
    if let Some(config) = req.fields.map("config") {
        entry.config = check_config(MountConfig {
            default_lease_ttl: parse_ttl(
                "default_lease_ttl",
                config.get("default_lease_ttl").cloned(),
            )?,
            max_lease_ttl: parse_ttl("max_lease_ttl", config.get("max_lease_ttl").cloned())?,
        })?;
    }
    state.mounts().enable(entry).await?;
    Ok(Response::empty())
}

async fn disable_mount(state: Arc<MountRoutes>, req: Request) -> Result<Response, AnyError> {
    state.mounts().disable(&req.capture("path")).await?;
    Ok(Response::empty())
}

async fn read_tune(state: Arc<MountRoutes>, req: Request) -> Result<Response, AnyError> {
    let path = mounts::normalize(&req.capture("path"));
    let entry = state.mounts().get(&path).ok_or(Error::NoMount { path })?;
    Ok(Response::json(json!({
        "description": entry.description,
        "default_lease_ttl": effective(entry.config.default_lease_ttl),
        "max_lease_ttl": effective(entry.config.max_lease_ttl),
        "force_no_cache": false,
        "options": entry.options,
    })))
}

/// Tune reads report the effective value, so 0 shows as the system's.
fn effective(ttl: u64) -> u64 {
    if ttl == 0 {
        SYSTEM_MAX_TTL
    } else {
        ttl
    }
}

async fn write_tune(state: Arc<MountRoutes>, req: Request) -> Result<Response, AnyError> {
    let path = mounts::normalize(&req.capture("path"));
    let mounts = state.mounts();
    let entry = mounts
        .get(&path)
        .ok_or(Error::NoMount { path: path.clone() })?;
    let mut config = entry.config;
    if req.fields.is_set("default_lease_ttl") {
        config.default_lease_ttl =
            parse_ttl("default_lease_ttl", req.fields.str("default_lease_ttl"))?;
    }
    if req.fields.is_set("max_lease_ttl") {
        config.max_lease_ttl = parse_ttl("max_lease_ttl", req.fields.str("max_lease_ttl"))?;
    }
    mounts.tune(&path, check_config(config)?).await?;
    Ok(Response::empty())
}

async fn openapi(state: Arc<MountRoutes>, _req: Request) -> Result<Response, AnyError> {
    Ok(Response::raw(
        200,
        super::docs::openapi(&state.mounts().backends()),
    ))
}

const MOUNTS_HELP: &str = "Lists every mounted secrets engine with its type, accessor and lease settings. The keys are the mount paths with a trailing slash; they are repeated at the top level of the response, as Vault does.";
const MOUNT_HELP: &str = "POST enables a secrets engine (`type=database`) at the path; the path must not overlap an existing mount. GET reads the mount. DELETE disables it: every lease issued under it is revoked first, and the engine's stored configuration is removed. Deleting a path that is not mounted succeeds.";
const AUTH_HELP: &str = "Lists the enabled auth methods with their type, accessor and settings. pgsecrets has one, the token store at `token/`; enabling others is not supported. The keys are repeated at the top level of the response, as Vault does.";
const TUNE_HELP: &str = "Reads or changes the default and maximum lease TTLs of a mount. Credentials issued under the mount use the role's TTLs when set, else these.";
const OPENAPI_HELP: &str = "Returns an OpenAPI 3.0.2 document generated from the route tables of every mount. No token is needed.";
