//! ACL policy routes (`sys/policy`, `sys/policies/acl`) and
//! `sys/capabilities-self`.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{Error, SysState};
use crate::auth::PolicyStore;
use crate::logical::{handler, Field, Operation, Request, Response, Route};
use crate::Error as AnyError;

pub fn routes(state: &Arc<SysState>) -> Vec<Route> {
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
            "policy/{name}",
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
        ),
        Route::new("policies/acl/?", "List ACL policies.", LIST_HELP).op(
            Operation::List,
            "List the policy names, `root` included.",
            handler(state, list_names),
        ),
        Route::new(
            "policies/acl/{name}",
            "Read, write or delete an ACL policy.",
            POLICY_HELP,
        )
        .field(name())
        .field(Field::string("policy", "The policy document, in HCL or JSON.").required())
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
        ),
        Route::new(
            "capabilities-self",
            "The calling token's capabilities on paths.",
            CAPABILITIES_HELP,
        )
        .field(Field::list("paths", "Paths to check."))
        .field(Field::string(
            "path",
            "A single path to check (older form of `paths`).",
        ))
        .op(
            Operation::Write,
            "Report the calling token's capabilities on each path.",
            handler(state, capabilities_self),
        ),
    ]
}

async fn names(state: &SysState) -> Result<Vec<String>, AnyError> {
    let mut names = state.policies.list().await?;
    names.push("root".into());
    names.sort();
    Ok(names)
}

async fn list_legacy(state: Arc<SysState>, _req: Request) -> Result<Response, AnyError> {
    let names = names(&state).await?;
    let mut response = Response::json(json!({"keys": names, "policies": names}));
    response.data_at_top_level = true;
    Ok(response)
}

async fn list_names(state: Arc<SysState>, _req: Request) -> Result<Response, AnyError> {
    Ok(Response::list(names(&state).await?))
}

/// The stored text of a policy; `root` has no rules.
async fn policy_text(
    state: &SysState,
    req: &Request,
) -> Result<Option<(String, String)>, AnyError> {
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

async fn read_legacy(state: Arc<SysState>, req: Request) -> Result<Response, AnyError> {
    Ok(match policy_text(&state, &req).await? {
        Some((name, text)) => {
            let mut r = Response::json(json!({"name": name, "rules": text}));
            r.data_at_top_level = true;
            r
        }
        None => Response::empty(),
    })
}

async fn read_acl(state: Arc<SysState>, req: Request) -> Result<Response, AnyError> {
    Ok(match policy_text(&state, &req).await? {
        Some((name, text)) => Response::json(json!({"name": name, "policy": text})),
        None => Response::empty(),
    })
}

/// Vault refuses an empty policy as it refuses a missing one; the legacy
/// `rules` is used only when `policy` is empty, with a deprecation warning.
async fn write_policy(state: Arc<SysState>, req: Request) -> Result<Response, AnyError> {
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

async fn delete_policy(state: Arc<SysState>, req: Request) -> Result<Response, AnyError> {
    state.policies.delete(&req.capture("name")).await?;
    Ok(Response::empty())
}

async fn capabilities_self(state: Arc<SysState>, req: Request) -> Result<Response, AnyError> {
    let mut paths = req.fields.list("paths").unwrap_or_default();
    if let Some(path) = req.fields.str("path") {
        paths.push(path);
    }
    paths.retain(|p| !p.is_empty());
    if paths.is_empty() {
        return Err(Error::PathsRequired.into());
    }
    let acl = state.policies.acl(&req.caller.policies).await?;
    let mut data = Map::new();
    let mut last = Vec::new();
    for path in &paths {
        let path = path.trim_start_matches('/');
        let caps: Vec<String> = if acl.is_root() {
            vec!["root".into()]
        } else {
            let set = acl.capabilities(path);
            if set.is_empty() {
                vec!["deny".into()]
            } else {
                let mut names: Vec<String> = set.iter().map(|c| c.as_str().to_string()).collect();
                names.sort(); // Vault answers capabilities in alphabetical order
                names
            }
        };
        last = caps.clone();
        data.insert(path.to_string(), json!(caps));
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
const POLICY_HELP: &str = "Policies are written in Vault's HCL or JSON form: `path \"database/creds/*\" { capabilities = [\"read\"] }`. Globs: `*` at the end matches any suffix, `+` matches one path segment. Capabilities: create, read, update, delete, list, sudo, deny. `allowed_parameters`, `denied_parameters` and `required_parameters` are enforced on reads (query) and writes (body) as Vault does: value globs (`*` at either end), a `*` key, an empty list for any value, merged across policies. pgsecrets does not wrap responses, so a rule with `min_wrapping_ttl` or `max_wrapping_ttl` refuses every request on its paths, as Vault refuses an unwrapped one. Names are case-insensitive and made of letters, digits, `-`, `_` and `.` (at most 128); Vault also accepts other characters and `/`, pgsecrets refuses them. `root` cannot be changed; `default` cannot be deleted.";
const CAPABILITIES_HELP: &str = "Returns, for each path, the capabilities the calling token's policies grant there: `[\"root\"]` for a root token, `[\"deny\"]` when nothing is granted.";
