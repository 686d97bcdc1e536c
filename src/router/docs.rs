//! Documents generated from the route tables: `?help=1` answers, the
//! OpenAPI 3 document, and the Markdown reference checked in under `routes/`.
//! Nothing here is written by hand per route, so none of it can drift.

use serde_json::{json, Map, Value};

use super::mounts::MountEntry;
use super::{AnyBackend, AnyRoute};
use crate::logical::{FieldKind, Operation, Response};

/// The `?help=1` body: not enveloped, as Vault answers it.
pub fn help_response(mount: &MountEntry, route: &AnyRoute) -> Response {
    let mut paths = Map::new();
    paths.insert(
        format!("/{}{}", mount.path, route.openapi_path()),
        path_item(route),
    );
    Response::raw(
        200,
        json!({
            "help": help_text(mount, route),
            "see_also": null,
            "openapi": document(paths),
        }),
    )
}

/// Help on a mount's root (`GET /v1/database?help=1`, `vault path-help
/// database/`): the mount's description and every path it serves, with
/// the OpenAPI document of them all, in Vault's layout.
pub fn mount_help_response(mount: &MountEntry, backend: &AnyBackend) -> Response {
    let mut text = format!(
        "## DESCRIPTION\n\n{}\n\n## PATHS\n\nThe following paths are supported by this backend. To view help for\nany of the paths below, use the help command with any route matching\nthe path pattern. Note that depending on the policy of your auth token,\nyou may or may not be able to access certain paths.\n",
        mount.description
    );
    let mut paths = Map::new();
    for route in &backend.routes {
        text.push_str(&format!(
            "\n    {}\n        {}\n",
            route.regex.as_str(),
            route.synopsis
        ));
        paths.insert(format!("/{}", route.openapi_path()), path_item(route));
    }
    Response::raw(
        200,
        json!({"help": text, "see_also": null, "openapi": document(paths)}),
    )
}

/// Plain-text help in Vault's layout.
pub fn help_text(mount: &MountEntry, route: &AnyRoute) -> String {
    let mut out = format!(
        "Request:        {}{}\nMatching Route: {}\n\n{}\n",
        mount.path,
        route.openapi_path(),
        route.regex.as_str(),
        route.synopsis
    );
    if !route.fields.is_empty() {
        out.push_str("\n## PARAMETERS\n");
        for field in &route.fields {
            out.push_str(&format!(
                "\n    {} ({})\n        {}\n",
                field.name,
                field.kind.describe(),
                field.description
            ));
        }
    }
    out.push_str(&format!(
        "\n## DESCRIPTION\n\n{}\n",
        route.description.trim()
    ));
    out
}

fn method_of(op: Operation) -> &'static str {
    match op {
        Operation::Read | Operation::List => "get",
        Operation::Write => "post",
        Operation::Delete => "delete",
    }
}

fn operation_id(path: &str, op: Operation) -> String {
    let base: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    format!("{}-{}", op.as_str(), base)
}

fn path_item(route: &AnyRoute) -> Value {
    let captures = route.capture_names();
    let parameters: Vec<Value> = captures
        .iter()
        .map(|name| {
            let field = route.fields.iter().find(|f| f.name == *name);
            json!({
                "name": name,
                "description": field.map(|f| f.description).unwrap_or(""),
                "in": "path",
                "required": true,
                "schema": {"type": "string"},
            })
        })
        .collect();
    let body_fields: Vec<_> = route
        .fields
        .iter()
        .filter(|f| !captures.contains(&f.name))
        .collect();
    let mut item = Map::new();
    item.insert("description".into(), json!(route.synopsis));
    if !parameters.is_empty() {
        item.insert("parameters".into(), Value::Array(parameters));
    }
    if route.unauthenticated {
        item.insert("x-vault-unauthenticated".into(), json!(true));
    }
    if route.existence.is_some() {
        // Vault's flag: a write needs `create` for a new item, `update`
        // for an existing one.
        item.insert("x-vault-createSupported".into(), json!(true));
    }
    let id_base = route.openapi_path();
    for spec in &route.operations {
        let method = method_of(spec.operation);
        let mut op = Map::new();
        op.insert("summary".into(), json!(spec.summary));
        op.insert(
            "operationId".into(),
            json!(operation_id(&id_base, spec.operation)),
        );
        if spec.sudo {
            op.insert("x-vault-sudo".into(), json!(true));
        }
        match spec.operation {
            Operation::List => {
                op.insert(
                    "parameters".into(),
                    json!([{"name": "list", "description": "Must be set to `true`",
                        "in": "query", "required": true, "schema": {"type": "string", "enum": ["true"]}}]),
                );
            }
            Operation::Write if !body_fields.is_empty() => {
                let mut properties = Map::new();
                for field in &body_fields {
                    let mut schema = field.kind.openapi();
                    let obj = schema.as_object_mut().expect("schemas are objects");
                    obj.insert("description".into(), json!(field.description));
                    if let Some(default) = &field.default {
                        obj.insert("default".into(), default.clone());
                    }
                    if field.sensitive {
                        obj.insert("x-vault-sensitive".into(), json!(true));
                    }
                    properties.insert(field.name.into(), schema);
                }
                let required: Vec<&str> = body_fields
                    .iter()
                    .filter(|f| f.required)
                    .map(|f| f.name)
                    .collect();
                let mut schema = json!({"type": "object", "properties": properties});
                if !required.is_empty() {
                    schema["required"] = json!(required);
                }
                op.insert(
                    "requestBody".into(),
                    json!({"required": !required.is_empty(),
                        "content": {"application/json": {"schema": schema}}}),
                );
            }
            _ => {}
        }
        op.insert(
            "responses".into(),
            json!({"200": {"description": "OK"}, "204": {"description": "empty body"}}),
        );
        // A route with both read and list shares `get`; the list variant keeps
        // the list-specific parameter under its own key.
        let key = if spec.operation == Operation::List && route.operation(Operation::Read).is_some()
        {
            "x-vault-list".to_string()
        } else {
            method.to_string()
        };
        item.insert(key, Value::Object(op));
    }
    Value::Object(item)
}

fn document(paths: Map<String, Value>) -> Value {
    json!({
        "openapi": "3.0.2",
        "info": {
            "title": "pgsecrets",
            "description": "Vault-compatible HTTP API of pgsecrets, generated from its route tables.",
            "version": crate::VERSION,
            "license": {"name": "Apache-2.0"},
        },
        "paths": paths,
    })
}

/// The OpenAPI document of every mount.
pub fn openapi(backends: &[(MountEntry, std::sync::Arc<AnyBackend>)]) -> Value {
    let mut paths = Map::new();
    for (mount, backend) in backends {
        for route in &backend.routes {
            paths.insert(
                format!("/{}{}", mount.path, route.openapi_path()),
                path_item(route),
            );
        }
    }
    document(paths)
}

/// The Markdown reference of one mount's routes.
pub fn markdown(mount: &MountEntry, backend: &AnyBackend, title: &str, regenerate: &str) -> String {
    let mut out = format!(
        "<!-- Generated from the route table by `{regenerate}`. Do not edit by hand. -->\n\n# {title}\n\nMounted at `{}` (type `{}`).\n",
        mount.path, mount.kind
    );
    for route in &backend.routes {
        out.push_str(&format!(
            "\n## `{}{}`\n\n{}\n\nPattern: `{}`{}\n\n| method | operation | summary |\n|---|---|---|\n",
            mount.path,
            route.openapi_path(),
            route.synopsis,
            route.regex.as_str(),
            if route.unauthenticated { " (no token needed)" } else { "" },
        ));
        for spec in &route.operations {
            let method = match spec.operation {
                Operation::Read => "GET",
                Operation::List => "LIST",
                Operation::Write => "POST",
                Operation::Delete => "DELETE",
            };
            let capability = match spec.operation {
                Operation::Write if route.existence.is_some() => {
                    "create (new) or update (existing)"
                }
                other => other.as_str(),
            };
            out.push_str(&format!(
                "| `{method}` | {}{} | {} |\n",
                capability,
                if spec.sudo { " (sudo)" } else { "" },
                spec.summary
            ));
        }
        if !route.fields.is_empty() {
            out.push_str(
                "\n| field | type | default | required | description |\n|---|---|---|---|---|\n",
            );
            for field in &route.fields {
                let kind = if field.kind == FieldKind::Name || field.kind == FieldKind::Path {
                    "string (path)"
                } else {
                    field.kind.describe()
                };
                out.push_str(&format!(
                    "| `{}` | {} | {} | {} | {} |\n",
                    field.name,
                    kind,
                    field
                        .default
                        .as_ref()
                        .map(|d| format!("`{d}`"))
                        .unwrap_or_default(),
                    if field.required { "yes" } else { "" },
                    field.description.replace('|', "\\|").replace('\n', " ")
                ));
            }
        }
        out.push_str(&format!("\n{}\n", route.description.trim()));
    }
    out
}
