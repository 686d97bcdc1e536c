//! `sys/audit` (the devices) and `sys/audit-hash` (a value as a device
//! hashes it). All need `sudo`, as in Vault; enabling through the API also
//! needs `unsafe_allow_api_audit_creation` (see [`crate::audit`]).

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{Error, SysState};
use crate::audit::Spec;
use crate::logical::{handler, Field, Operation, Request, Response, Route};

pub fn routes(state: &Arc<SysState>) -> Vec<Route<Error>> {
    let path = || Field::path("path", "The device's path, e.g. `file`.");
    vec![
        Route::new("audit", "List the audit devices.", LIST_HELP).sudo_op(
            Operation::Read,
            "Map each device's path (`file/`) to its type, description and options.",
            handler(state, list),
        ),
        Route::new("audit/{path*}", "Enable or disable an audit device.", DEVICE_HELP)
            .field(path())
            .field(Field::string("type", "`file` or `socket`."))
            .field(Field::string("description", "What the device is for."))
            .field(Field::map(
                "options",
                "`file`: `file_path` (absolute, `stdout` or `discard`), `mode` (octal, default \"0600\", never executable); `socket`: `address`, `socket_type` (`tcp`), `write_timeout` (default 2s); both: `hmac_accessor` (default true), `prefix`, `format` (`json`). `log_raw` only in the configuration file.",
            ))
            .field(Field::bool("local", "Accepted for compatibility (one node)."))
            .sudo_op(
                Operation::Write,
                "Enable a device; it must write a test record first (needs unsafe_allow_api_audit_creation).",
                handler(state, enable),
            )
            .sudo_op(
                Operation::Delete,
                "Disable a device and drop its key; an absent device is no error.",
                handler(state, disable),
            ),
        Route::new("audit-hash/{path*}", "Hash a value as an audit device does.", HASH_HELP)
            .field(path())
            .field(Field::string("input", "The value to hash.").sensitive())
            .sudo_op(
                Operation::Write,
                "Answer `hmac-sha256:<hex>` of `input` under the device's key.",
                handler(state, hash),
            ),
    ]
}

fn spec_json(spec: &Spec) -> Value {
    json!({
        "type": spec.kind,
        "description": spec.description,
        "options": spec.options,
        "local": spec.local,
        "path": spec.path,
    })
}

async fn list(state: Arc<SysState>, _req: Request) -> Result<Response, Error> {
    let mut data = Map::new();
    for spec in state.audit.list() {
        data.insert(spec.path.clone(), spec_json(&spec));
    }
    let mut response = Response::data(data);
    response.data_at_top_level = true;
    Ok(response)
}

async fn enable(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let spec = Spec {
        path: req.capture("path"),
        kind: req.fields.str("type").unwrap_or_default(),
        description: req.fields.str("description").unwrap_or_default(),
        options: req.fields.map("options").unwrap_or_default(),
        local: req.fields.bool("local").unwrap_or(false),
    };
    state.audit.enable(spec).await?;
    Ok(Response::empty())
}

async fn disable(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    state.audit.disable(&req.capture("path")).await?;
    Ok(Response::empty())
}

async fn hash(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let input = req.fields.str("input").unwrap_or_default();
    let hash = state.audit.hash(&req.capture("path"), &input)?;
    let mut response = Response::json(json!({ "hash": hash }));
    response.data_at_top_level = true;
    Ok(response)
}

const LIST_HELP: &str = "\
Lists the enabled audit devices, declared in the configuration file or \
enabled through the API, by path. Needs sudo.";

const DEVICE_HELP: &str = "\
An audit device writes a record of every request before its handler runs \
and of every response, one JSON object per line, tokens and every string \
of the data replaced by `hmac-sha256:<hex>` under the device's own key \
(lease ids, paths, numbers stay in clear). While any device is enabled a \
request runs only if at least one device took its record. Enabling \
through the API needs `unsafe_allow_api_audit_creation = true` in the \
configuration file; devices there are declared with `[[audit]]`. Needs sudo.";

const HASH_HELP: &str = "\
Hashes `input` with the device's key, as the device writes it, so a known \
value (a token, a user's password) can be found in the log. Needs sudo.";
