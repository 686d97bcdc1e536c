//! The `sys/` routes that belong to the router: the mount table
//! (`sys/mounts`, and `sys/auth` for the auth mounts) and the OpenAPI
//! document (`sys/internal/specs/openapi`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use serde_json::{json, Map, Value};

use super::mount_input::{config_json, MountInput};
use super::mounts::{self, MountEntry, MountSettings, Mounts};
use super::Error;
use crate::auth::token::SYSTEM_MAX_TTL;
use crate::auth::{Acl, PolicyStore, TokenStore};
use crate::lease::LeaseManager;
use crate::logical::{handler, Field, Operation, Request, Response, Route};
use crate::sys;
use crate::Error as AnyError;

/// Handlers hold the table weakly: the table owns the `sys/` backend that
/// owns these handlers.
pub struct MountRoutes {
    mounts: Weak<Mounts>,
    leases: Arc<LeaseManager>,
    tokens: TokenStore,
    policies: PolicyStore,
    /// `sys/remount` answers with a migration id that
    /// `sys/remount/status/<id>` reports on; moves finish before the answer,
    /// so this only remembers them (until restart).
    migrations: Mutex<BTreeMap<String, (String, String)>>,
}

impl MountRoutes {
    fn mounts(&self) -> Arc<Mounts> {
        self.mounts
            .upgrade()
            .expect("mount table outlives requests")
    }
}

/// The tune fields, the same for `sys/mounts/<p>/tune` and
/// `sys/auth/<p>/tune`.
fn tune_route(template: &'static str, state: &Arc<MountRoutes>) -> Route<AnyError> {
    let mut route = Route::new(template, "Tune a mount's settings.", TUNE_HELP)
        .field(Field::path("path", "The mount path, e.g. `database`."))
        .field(Field::string(
            "default_lease_ttl",
            "Default lease TTL of the mount (duration, or `system` for 768h; empty: unchanged).",
        ))
        .field(Field::string(
            "max_lease_ttl",
            "Maximum lease TTL of the mount (duration, or `system` for 768h; empty: unchanged).",
        ))
        .field(Field::string(
            "description",
            "New description of the mount.",
        ))
        .field(Field::map("options", "Engine options (kept, unused)."))
        .field(Field::string(
            "listing_visibility",
            "`unauth` lists the mount in `sys/internal/ui/mounts` without a token; `hidden` or empty do not.",
        ))
        .field(Field::bool("force_no_cache", "Accepted for compatibility; ignored."))
        .field(Field::string("token_type", "Accepted for compatibility; ignored."))
        .field(Field::string("plugin_version", "Accepted for compatibility; ignored."));
    for key in MountSettings::LIST_KEYS {
        route = route.field(Field::list(
            key,
            "Kept and shown for Vault clients; not acted on.",
        ));
    }
    let (read, write) = if template.starts_with("auth/") {
        (
            "Read an auth method's settings.",
            "Change an auth method's settings.",
        )
    } else {
        ("Read a mount's settings.", "Change a mount's settings.")
    };
    // Vault's root paths include `auth/*`: tuning an auth method, or even
    // reading its settings, needs sudo; a secrets mount's tune does not.
    if template.starts_with("auth/") {
        route
            .sudo_op(Operation::Read, read, handler(state, read_tune))
            .sudo_op(Operation::Write, write, handler(state, write_tune))
    } else {
        route
            .op(Operation::Read, read, handler(state, read_tune))
            .op(Operation::Write, write, handler(state, write_tune))
    }
}

pub fn routes(
    mounts: &Arc<Mounts>,
    leases: &Arc<LeaseManager>,
    tokens: &TokenStore,
    policies: &PolicyStore,
) -> Vec<Route<AnyError>> {
    let state = Arc::new(MountRoutes {
        mounts: Arc::downgrade(mounts),
        leases: Arc::clone(leases),
        tokens: tokens.clone(),
        policies: policies.clone(),
        migrations: Mutex::default(),
    });
    vec![
        Route::new("mounts", "List the mounted secrets engines.", MOUNTS_HELP).op(
            Operation::Read,
            "List the mounted secrets engines.",
            handler(&state, list_mounts),
        ),
        Route::new("auth/?", "List the enabled auth methods.", AUTH_HELP).op(
            Operation::Read,
            "List the enabled auth methods.",
            handler(&state, list_auth),
        ),
        tune_route("mounts/{path*}/tune", &state),
        tune_route("auth/{path*}/tune", &state),
        Route::new("auth/{path*}", "Read an auth method.", AUTH_MOUNT_HELP)
            .field(Field::path("path", "The auth method's path, e.g. `token`."))
            .sudo_op(
                Operation::Read,
                "Read one auth method.",
                handler(&state, read_auth),
            ),
        Route::new("remount", "Move a secrets engine to a new path.", REMOUNT_HELP)
            .field(Field::string("from", "The mount's current path, e.g. `db2`.").required())
            .field(Field::string("to", "The new path, e.g. `db3`.").required())
            // A root path in Vault: moving a mount moves what every policy
            // on its path granted.
            .sudo_op(
                Operation::Write,
                "Move the mount.",
                handler(&state, remount),
            ),
        Route::new(
            "remount/status/{migration_id}",
            "The outcome of a mount move.",
            REMOUNT_HELP,
        )
        .field(Field::name("migration_id", "The id `sys/remount` answered with."))
        .op(
            Operation::Read,
            "Read how a move ended.",
            handler(&state, remount_status),
        ),
        Route::new(
            "internal/ui/mounts",
            "The mounts the caller can use.",
            UI_MOUNTS_HELP,
        )
        .unauthenticated()
        .op(
            Operation::Read,
            "List the mounts the caller can use.",
            handler(&state, ui_mounts),
        ),
        Route::new(
            "internal/ui/mounts/{path*}",
            "The mount serving a path, if the caller can use it.",
            UI_MOUNTS_HELP,
        )
        .field(Field::path("path", "A path, e.g. `database/creds/x`."))
        // As in Vault: no ACL check on the route itself, the handler
        // decides from the token's policies (a token is needed).
        .unauthenticated()
        .op(
            Operation::Read,
            "Read the mount serving the path.",
            handler(&state, ui_mount),
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
        .field(Field::object(
            "config",
            "Mount settings: `default_lease_ttl` and `max_lease_ttl` (durations or `system`), `listing_visibility`, and Vault's list settings (kept, unused); other keys are ignored.",
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
        .field(Field::bool(
            "external_entropy_access",
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
    let mut config = config_json(entry);
    if entry.kind == "token" {
        config["token_type"] = json!("default-service");
    }
    json!({
        "type": entry.kind,
        "description": entry.description,
        "accessor": entry.accessor,
        "uuid": entry.uuid,
        "local": entry.local,
        "seal_wrap": entry.seal_wrap,
        "external_entropy_access": false,
        // An engine mount enabled without options shows `{}`, as in Vault.
        "options": match &entry.options {
            None if entry.kind == "database" => json!({}),
            options => json!(options),
        },
        "plugin_version": "",
        "running_plugin_version": "",
        "running_sha256": "",
        "config": config,
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
            data.insert(path.to_string(), mount_json(&entry));
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

async fn read_auth(state: Arc<MountRoutes>, req: Request) -> Result<Response, AnyError> {
    let path = mounts::normalize(&format!("auth/{}", req.capture("path")));
    match state.mounts().get(&path) {
        Some(entry) => {
            let mut response = Response::json(mount_json(&entry));
            response.data_at_top_level = true;
            Ok(response)
        }
        None => Err(Error::NoMount { path }.into()),
    }
}

async fn enable_mount(state: Arc<MountRoutes>, req: Request) -> Result<Response, AnyError> {
    let path = req.capture("path");
    let kind = req.fields.str("type").unwrap_or_default();
    let mut entry = MountEntry::new(&mounts::normalize(&path), &kind, "");
    entry.description = req.fields.str("description").unwrap_or_default();
    // Vault shows `{}` for a mount enabled without options.
    entry.options = Some(req.fields.map("options").unwrap_or_default());
    if let Some(config) = req.fields.object("config") {
        MountInput::from_config(&config)?.apply(&mut entry)?;
    }
    state.mounts().enable(entry).await?;
    Ok(Response::empty())
}

async fn disable_mount(state: Arc<MountRoutes>, req: Request) -> Result<Response, AnyError> {
    state.mounts().disable(&req.capture("path")).await?;
    Ok(Response::empty())
}

/// The mount a tune route names: `sys/auth/<p>/tune` tunes `auth/<p>/`.
fn tuned_path(req: &Request) -> String {
    let path = req.capture("path");
    if req.path.starts_with("auth/") {
        mounts::normalize(&format!("auth/{path}"))
    } else {
        mounts::normalize(&path)
    }
}

async fn read_tune(state: Arc<MountRoutes>, req: Request) -> Result<Response, AnyError> {
    let path = tuned_path(&req);
    let entry = state.mounts().get(&path).ok_or(Error::NoMount { path })?;
    let mut data = config_json(&entry);
    data["default_lease_ttl"] = json!(effective(entry.config.default_lease_ttl));
    data["max_lease_ttl"] = json!(effective(entry.config.max_lease_ttl));
    data["description"] = json!(entry.description);
    if entry.kind == "token" {
        data["token_type"] = json!("default-service");
    }
    // As Vault: `options` only when the mount has some.
    if let Some(options) = entry.options.as_ref().filter(|o| !o.is_empty()) {
        data["options"] = json!(options);
    }
    let mut response = Response::json(data);
    response.data_at_top_level = true;
    Ok(response)
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
    let path = tuned_path(&req);
    let mounts = state.mounts();
    let mut tuned = mounts
        .get(&path)
        .ok_or(Error::NoMount { path: path.clone() })?;
    let input = MountInput::from_tune(&req.fields)?;
    // Checked on a copy first: a refused tune changes nothing.
    input.apply(&mut tuned)?;
    mounts
        .tune(&path, |entry| {
            *entry = tuned.clone();
        })
        .await?;
    Ok(Response::empty())
}

async fn remount(state: Arc<MountRoutes>, req: Request) -> Result<Response, AnyError> {
    let (from, to) = (req.capture("from"), req.capture("to"));
    let leases = Arc::clone(&state.leases);
    let late = Arc::clone(&state.leases);
    let moved = state
        .mounts()
        .remount(
            &from,
            &to,
            move |path: String| {
                let leases = Arc::clone(&leases);
                Box::pin(async move {
                    leases
                        .leases_under(&path)
                        .await
                        .map(|l| l.len())
                        .map_err(|e| e.to_string())
                })
            },
            // Leases issued on the old path while it moved: their IDs name
            // a path that no longer serves, so they are revoked now (the
            // old engine is still registered for them) rather than leaked.
            move |path: String| {
                let late = Arc::clone(&late);
                Box::pin(async move {
                    let revoked = late
                        .revoke_prefix(&path, true)
                        .await
                        .map_err(|e| e.to_string())?;
                    if revoked > 0 {
                        tracing::warn!(mount = %path, revoked, "leases issued during a mount move were revoked");
                    }
                    Ok(())
                })
            },
        )
        .await?;
    // The old path's engine is gone; the new one registered itself.
    state.leases.unregister(&mounts::normalize(&from));
    let id = crate::random::uuid();
    state
        .migrations
        .lock()
        .expect("migrations")
        .insert(id.clone(), (mounts::normalize(&from), moved.path));
    let mut response = Response::json(json!({ "migration_id": id }));
    response.data_at_top_level = true;
    response.warnings.push(
        "The mount was moved before this answer; sys/remount/status/<migration_id> reports it"
            .into(),
    );
    Ok(response)
}

async fn remount_status(state: Arc<MountRoutes>, req: Request) -> Result<Response, AnyError> {
    let id = req.capture("migration_id");
    let found = state
        .migrations
        .lock()
        .expect("migrations")
        .get(&id)
        .cloned();
    Ok(match found {
        Some((source, target)) => Response::json(json!({
            "migration_id": id,
            "migration_info": {"source_mount": source, "target_mount": target, "status": "success"},
        })),
        None => Response::empty(),
    })
}

/// `sys/internal/ui/mounts`: with a token, every mount it can use (Vault's
/// test: anything granted at or below the mount); without one, only mounts
/// tuned `listing_visibility=unauth`, as `{type, description, options}`.
/// The ACL of the token an unauthenticated route was given, if any. A
/// token that is given but is not one is refused (Vault's 403) rather than
/// answered as an anonymous caller.
async fn given_token_acl(state: &MountRoutes, req: &Request) -> Result<Option<Arc<Acl>>, AnyError> {
    let Some(token) = &req.caller.token else {
        return Ok(None);
    };
    let entry = state
        .tokens
        .lookup(token)
        .await?
        .ok_or(Error::MissingToken)?;
    Ok(Some(state.policies.acl(&entry.policies).await?))
}

async fn ui_mounts(state: Arc<MountRoutes>, req: Request) -> Result<Response, AnyError> {
    let acl = given_token_acl(&state, &req).await?;
    let (mut secret, mut auth) = (Map::new(), Map::new());
    for entry in state.mounts().entries() {
        let shown = match &acl {
            Some(acl) => acl.grants_anything_under(&entry.path),
            None => entry.settings.listing_visibility == "unauth",
        };
        if !shown {
            continue;
        }
        let json = if acl.is_some() {
            mount_json(&entry)
        } else {
            json!({"type": entry.kind, "description": entry.description, "options": entry.options})
        };
        match entry.path.strip_prefix("auth/") {
            Some(path) => auth.insert(path.to_string(), json),
            None => secret.insert(entry.path.clone(), json),
        };
    }
    Ok(Response::json(json!({"secret": secret, "auth": auth})))
}

/// `sys/internal/ui/mounts/<path>`: the mount serving `path`, with its
/// path, if the token can use it; otherwise Vault's 403.
async fn ui_mount(state: Arc<MountRoutes>, req: Request) -> Result<Response, AnyError> {
    let path = req.capture("path");
    let acl = given_token_acl(&state, &req)
        .await?
        .ok_or(Error::MissingToken)?;
    let asked = mounts::normalize(&path);
    let found = state.mounts().find(&asked).map(|(entry, _, _)| entry);
    match found {
        Some(entry) if acl.grants_anything_under(&entry.path) => {
            let mut json = mount_json(&entry);
            json["path"] = json!(entry.path.strip_prefix("auth/").unwrap_or(&entry.path));
            Ok(Response::json(json))
        }
        _ => Err(sys::Error::Preflight { path: asked }.into()),
    }
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
const TUNE_HELP: &str = "Reads or changes a mount's settings: its default and maximum lease TTLs (credentials issued under the mount use the role's TTLs when set, else these), description, options and `listing_visibility`; Vault's audit and header lists are kept and shown but not acted on. An empty TTL leaves it unchanged. `sys/auth/token/tune` tunes the token store.";
const AUTH_MOUNT_HELP: &str = "Reads one auth method, as an entry of `sys/auth`. pgsecrets has one, the token store at `token/`.";
const REMOUNT_HELP: &str = "Moves a secrets engine to a new path: its clusters, databases and roles go with it. A mount that holds leases is not moved (their IDs name the mount's path): revoke them first. The move is finished when the answer comes; its `migration_id` can be read at `sys/remount/status/<id>` (until the server restarts).";
const UI_MOUNTS_HELP: &str = "Lists the mounts a token can use (it is granted something at or below them), under `secret` and `auth`; without a token, only the mounts tuned with `listing_visibility=unauth`. With a path, returns the mount serving it, if the token can use it.";
const OPENAPI_HELP: &str = "Returns an OpenAPI 3.0.2 document generated from the route tables of every mount. No token is needed.";
