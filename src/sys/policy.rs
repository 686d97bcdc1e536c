//! ACL policy routes (`sys/policy`, `sys/policies/acl`) and
//! `sys/capabilities-self`.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{Error, SysState};
use crate::auth::PolicyStore;
use crate::logical::{handler, Field, Operation, Request, Response, Route};

pub fn routes(state: &Arc<SysState>) -> Vec<Route<Error>> {
    let name = || Field::name("name", "The policy's name (case-insensitive).");
    vec![
        Route::new(
            "policy/?",
            "List ACL policies (legacy path).",
            LEGACY_LIST_HELP,
        )
        .op(
            Operation::Read,
            "List the policies, `root` included.",
            handler(state, list_legacy),
        )
        .op(
            Operation::List,
            "List the policies, `root` included (legacy path).",
            // Vault answers a LIST here as it answers a GET.
            handler(state, list_legacy),
        ),
        Route::new(
            "policy/{name*}",
            "Read, write or delete an ACL policy (legacy path).",
            POLICY_HELP,
        )
        .field(name())
        .field(Field::string(
            "policy",
            "The policy document, in HCL or JSON.",
        ))
        .field(Field::string(
            "rules",
            "Legacy name of `policy`, used when `policy` is empty (with a deprecation warning).",
        ))
        .op(
            Operation::Read,
            "Read a policy as `{name, rules}`.",
            handler(state, read_legacy),
        )
        .op(
            Operation::Write,
            "Create or replace a policy (legacy path).",
            handler(state, write_policy),
        )
        .op(
            Operation::Delete,
            "Delete a policy (legacy path).",
            handler(state, delete_policy),
        )
        .op(
            Operation::List,
            "List the policies named `<name>/...` (legacy path); none is a 404, where Vault answers `{\"policies\": null}`.",
            handler(state, list_legacy_prefixed),
        ),
        Route::new("policies/acl/?", "List ACL policies.", LIST_HELP).op(
            Operation::List,
            "List the policy names, `root` included.",
            handler(state, list_names),
        ),
        Route::new(
            "policies/acl/{name*}",
            "Read, write or delete an ACL policy.",
            POLICY_HELP,
        )
        .field(name())
        .field(Field::string(
            "policy",
            "The policy document, in HCL or JSON.",
        ))
        .op(
            Operation::Read,
            "Read a policy as `{name, policy}`.",
            handler(state, read_acl),
        )
        .op(
            Operation::Write,
            "Create or replace a policy.",
            handler(state, write_policy),
        )
        .op(
            Operation::Delete,
            "Delete a policy.",
            handler(state, delete_policy),
        )
        .op(
            Operation::List,
            "List the policies named `<name>/...`.",
            handler(state, list_prefixed),
        ),
        Route::new(
            "capabilities-self",
            "The calling token's capabilities on paths.",
            CAPABILITIES_HELP,
        )
        .fields(paths_fields())
        .op(
            Operation::Write,
            "Report the calling token's capabilities on each path.",
            handler(state, capabilities_self),
        ),
        Route::new(
            "capabilities",
            "Another token's capabilities on paths.",
            CAPABILITIES_OF_TOKEN_HELP,
        )
        .field(Field::string(
            "token",
            "The token whose capabilities are asked.",
        ))
        .fields(paths_fields())
        .op(
            Operation::Write,
            "Report the given token's capabilities on each path.",
            handler(state, capabilities_of_token),
        ),
        Route::new(
            "capabilities-accessor",
            "A token's capabilities on paths, by accessor.",
            CAPABILITIES_OF_ACCESSOR_HELP,
        )
        .field(Field::string(
            "accessor",
            "The accessor of the token whose capabilities are asked.",
        ))
        .fields(paths_fields())
        .op(
            Operation::Write,
            "Report the capabilities of the token with this accessor on each path.",
            handler(state, capabilities_of_accessor),
        ),
    ]
}

/// The paths a capabilities request asks about: `paths`, or the older
/// single `path`.
fn paths_fields() -> [Field; 2] {
    [
        Field::list("paths", "Paths to check."),
        Field::string("path", "A single path to check (older form of `paths`)."),
    ]
}

async fn names(state: &SysState) -> Result<Vec<String>, Error> {
    let mut names = state.policies.list().await?;
    names.push("root".into());
    names.sort();
    Ok(names)
}

async fn list_legacy(state: Arc<SysState>, _req: Request) -> Result<Response, Error> {
    let names = names(&state).await?;
    let mut response = Response::json(json!({"keys": names, "policies": names}));
    response.data_at_top_level = true;
    Ok(response)
}

async fn list_names(state: Arc<SysState>, _req: Request) -> Result<Response, Error> {
    Ok(Response::list(names(&state).await?))
}

/// The policy names under `<name>/` in full (`team` lists `team/app`), as
/// Vault lists them now that names may hold `/`.
async fn names_under(state: &SysState, req: &Request) -> Result<Vec<String>, Error> {
    let prefix = format!("{}/", PolicyStore::check_name(&req.capture("name"))?);
    let mut names = names(state).await?;
    names.retain(|name| name.starts_with(&prefix));
    Ok(names)
}

async fn list_prefixed(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    Ok(Response::list(names_under(&state, &req).await?))
}

/// The legacy shape. With nothing under the prefix Vault answers 200
/// `{"policies": null}`; pgsecrets answers an empty list 404 everywhere, as
/// clients expect of a list.
async fn list_legacy_prefixed(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let names = names_under(&state, &req).await?;
    if names.is_empty() {
        return Ok(Response::list(names));
    }
    let mut response = Response::json(json!({"keys": names, "policies": names}));
    response.data_at_top_level = true;
    Ok(response)
}

/// The stored text of a policy; `root` has no rules.
async fn policy_text(state: &SysState, req: &Request) -> Result<Option<(String, String)>, Error> {
    let name = PolicyStore::check_name(&req.capture("name"))?;
    if name == "root" {
        return Ok(Some((name, String::new())));
    }
    Ok(state
        .policies
        .get(&name)
        .await?
        .map(|p| (name, p.text.clone())))
}

async fn read_legacy(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    Ok(match policy_text(&state, &req).await? {
        Some((name, text)) => {
            let mut r = Response::json(json!({"name": name, "rules": text}));
            r.data_at_top_level = true;
            r
        }
        None => Response::empty(),
    })
}

async fn read_acl(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    Ok(match policy_text(&state, &req).await? {
        Some((name, text)) => Response::json(json!({"name": name, "policy": text})),
        None => Response::empty(),
    })
}

/// Vault refuses an empty policy as it refuses a missing one; the legacy
/// `rules` is used only when `policy` is empty, with a deprecation warning.
async fn write_policy(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let given = |field| req.fields.str(field).filter(|text| !text.is_empty());
    let (text, response) = match given("policy") {
        Some(text) => (text, Response::empty()),
        None => (
            given("rules").ok_or(Error::PolicyTextRequired)?,
            Response::empty().with_warning("'rules' is deprecated, please use 'policy' instead"),
        ),
    };
    state.policies.put(&req.capture("name"), &text).await?;
    Ok(response)
}

async fn delete_policy(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    state.policies.delete(&req.capture("name")).await?;
    Ok(Response::empty())
}

async fn capabilities_self(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    capabilities(&state, &req, &req.caller.policies).await
}

/// `sys/capabilities`: another token's capabilities, the token given in
/// the body (Vault: `vault token capabilities TOKEN PATH`).
async fn capabilities_of_token(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let token = req.fields.str("token").filter(|t| !t.is_empty());
    let token = token.ok_or(Error::TokenRequired)?;
    let entry = state.tokens.lookup(&token).await?;
    let entry = entry.ok_or(Error::InvalidToken)?;
    capabilities(&state, &req, &entry.policies).await
}

/// `sys/capabilities-accessor`: a token's capabilities, by its accessor.
async fn capabilities_of_accessor(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let accessor = req.fields.str("accessor").filter(|a| !a.is_empty());
    let accessor = accessor.ok_or(Error::AccessorRequired)?;
    let entry = state.tokens.lookup_accessor(&accessor).await?;
    let entry = entry.ok_or(Error::UnknownAccessor)?;
    capabilities(&state, &req, &entry.policies).await
}

/// The capabilities `policies` grant on each path of the request's `paths`
/// (or older `path`), answered as Vault does: each path as given is a key
/// (a leading `/` is ignored for the lookup only), `capabilities` repeats
/// the answer when one path was asked, `["root"]` for a root token,
/// `["deny"]` when nothing is granted; all in `data` and at the top level.
async fn capabilities(
    state: &SysState,
    req: &Request,
    policies: &[String],
) -> Result<Response, Error> {
    let mut paths = req.fields.list("paths").unwrap_or_default();
    if let Some(path) = req.fields.str("path") {
        paths.push(path);
    }
    if paths.is_empty() {
        return Err(Error::PathsRequired);
    }
    if paths.iter().any(|p| p.is_empty()) {
        return Err(Error::MissingPath);
    }
    let acl = state.policies.acl(policies).await?;
    let mut data = Map::new();
    let mut last = Vec::new();
    for path in &paths {
        let caps: Vec<String> = if acl.is_root() {
            vec!["root".into()]
        } else {
            let set = acl.capabilities(path.trim_start_matches('/'));
            if set.is_empty() {
                vec!["deny".into()]
            } else {
                let mut names: Vec<String> = set.iter().map(|c| c.as_str().to_string()).collect();
                names.sort(); // Vault answers capabilities in alphabetical order
                names
            }
        };
        last = caps.clone();
        data.insert(path.clone(), json!(caps));
    }
    if paths.len() == 1 {
        data.insert("capabilities".into(), Value::from(last));
    }
    let mut response = Response::data(data);
    response.data_at_top_level = true;
    Ok(response)
}

const LEGACY_LIST_HELP: &str = "GET returns `keys` and `policies`, both the sorted policy names including `root`, also at the top level of the response (Vault's legacy shape, read by vaultrs and node-vault).";
const LIST_HELP: &str = "Lists the ACL policy names, `root` included.";
const POLICY_HELP: &str = "Policies are written in Vault's HCL or JSON form: `path \"database/creds/*\" { capabilities = [\"read\"] }`. Globs: `*` at the end matches any suffix, `+` matches one path segment. Capabilities: create, read, update, delete, list, sudo, deny. `allowed_parameters`, `denied_parameters` and `required_parameters` are enforced on reads (query) and writes (body) as Vault does: value globs (`*` at either end), a `*` key, an empty list for any value, merged across policies. pgsecrets does not wrap responses, so a rule with `min_wrapping_ttl` or `max_wrapping_ttl` refuses every request on its paths, as Vault refuses an unwrapped one. Names are case-insensitive. `root` cannot be changed; `default` cannot be deleted.";
const CAPABILITIES_HELP: &str = "Returns, for each path, the capabilities the calling token's policies grant there: `[\"root\"]` for a root token, `[\"deny\"]` when nothing is granted.";
const CAPABILITIES_OF_TOKEN_HELP: &str = "Returns, for each path, the capabilities the given token's policies grant there, as `sys/capabilities-self` answers for the caller. The default policy does not grant this path: a token learning another token's capabilities is an operator's privilege. An unknown or expired token is a 400 `invalid token`.";
const CAPABILITIES_OF_ACCESSOR_HELP: &str = "Returns, for each path, the capabilities of the token with the given accessor, as `sys/capabilities-self` answers for the caller. An unknown accessor is a 400 `invalid accessor`.";
