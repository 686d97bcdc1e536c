//! How client subcommands print answers: `-format=table` (default), a
//! key/value table like `vault read`'s, or `-format=json`, the server's
//! envelope as it came; `-field=NAME` prints one value alone.
//!
//! Table rules follow the `vault` CLI: lease fields first (`lease_id`,
//! `lease_duration`, `lease_renewable`), then token fields for answers with
//! an `auth` block, then `data` sorted by key; values print as Go's `%v`
//! would (`[a b]`, `map[k:v]`, `<nil>`); integer fields named like
//! durations (`ttl`, `*_ttl`, `period`, ...) print as durations (`1h`).
//! Warnings go to stderr, above the table.

use std::io::Write;

use serde_json::Value;

use super::Error;
use crate::client::Envelope;
use crate::logical::duration::format_go;

/// `-format`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// A readable key/value table.
    #[default]
    Table,
    /// The server's JSON envelope.
    Json,
}

/// `-format` alone, for commands whose answer has no single fields (list).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FormatArg {
    /// Output format: table or json.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `-format` and `-field`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct OutputArgs {
    /// Output format: table or json.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print only this field's value, as the table shows it (e.g. `token`,
    /// `lease_id`, `password`).
    #[arg(long)]
    pub field: Option<String>,
}

/// Prints an answer.
pub fn envelope(out: &OutputArgs, answer: &Envelope) -> Result<(), Error> {
    if let Some(field) = &out.field {
        let rows = table_rows(answer);
        let value = rows
            .iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v)
            .ok_or_else(|| Error::Input(format!("field {field:?} is not in the answer")))?;
        return print(&format!("{value}\n"));
    }
    match out.format {
        Format::Json => json(answer),
        Format::Table => {
            warnings(answer);
            let rows = table_rows(answer);
            if rows.is_empty() {
                return Ok(());
            }
            print(&table(("Key", "Value"), &rows))
        }
    }
}

/// Prints a list answer: sorted keys under `Keys`, or the envelope.
pub fn list(format: Format, answer: &Envelope) -> Result<(), Error> {
    match format {
        Format::Json => json(answer),
        Format::Table => {
            warnings(answer);
            let mut keys = answer.keys();
            keys.sort();
            let mut text = String::from("Keys\n----\n");
            for key in keys {
                text.push_str(&key);
                text.push('\n');
            }
            print(&text)
        }
    }
}

/// Prints a command's result when the server answered without a body: the
/// message in table format, nothing in JSON.
pub fn success(format: Format, message: &str) -> Result<(), Error> {
    match format {
        Format::Table => print(&format!("{message}\n")),
        Format::Json => Ok(()),
    }
}

/// Pretty JSON of the envelope.
pub fn json(answer: &Envelope) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(answer)
        .map_err(|e| Error::Output(std::io::Error::other(e)))?;
    print(&format!("{text}\n"))
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
pub fn print(text: &str) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Output(e)),
        _ => Ok(()),
    }
}

fn warnings(answer: &Envelope) {
    if answer.warnings().is_empty() {
        return;
    }
    let mut text =
        String::from("WARNING! The following warnings were returned from the server:\n\n");
    for warning in answer.warnings() {
        text.push_str(&format!("  * {warning}\n\n"));
    }
    eprint!("{text}");
}

/// The rows `vault read` would show for this answer.
pub fn table_rows(answer: &Envelope) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |k: &str, v: String| rows.push((k.to_string(), v));
    if answer.lease_duration > 0 {
        if answer.lease_id.is_empty() {
            row("refresh_interval", format_go(answer.lease_duration));
        } else {
            row("lease_id", answer.lease_id.clone());
            row("lease_duration", format_go(answer.lease_duration));
            row("lease_renewable", answer.renewable.to_string());
        }
    }
    if let Some(auth) = &answer.auth {
        row("token", auth.client_token.clone());
        row("token_accessor", auth.accessor.clone());
        row(
            "token_duration",
            match auth.lease_duration {
                0 => "∞".to_string(),
                s => format_go(s),
            },
        );
        row("token_renewable", auth.renewable.to_string());
        row("token_policies", quoted_list(&auth.token_policies));
        row(
            "identity_policies",
            quoted_list(auth.identity_policies.as_deref().unwrap_or(&[])),
        );
        row("policies", quoted_list(&auth.policies));
        if let Some(meta) = &auth.metadata {
            let mut keys: Vec<&String> = meta.keys().collect();
            keys.sort();
            for k in keys {
                row(&format!("token_meta_{k}"), go_value(&meta[k]));
            }
        }
    }
    let fields = match &answer.data {
        Some(data) => Some(data),
        // Not an envelope (e.g. `sys/health`): show the body's own keys.
        None if answer.request_id.is_empty() && answer.auth.is_none() => Some(&answer.other),
        None => None,
    };
    if let Some(fields) = fields {
        let mut keys: Vec<&String> = fields.keys().collect();
        keys.sort();
        for k in keys {
            let v = &fields[k];
            let text = match v.as_u64() {
                Some(seconds) if looks_like_duration(k) => format_go(seconds),
                _ => go_value(v),
            };
            row(k, text);
        }
    }
    rows
}

/// Two columns, the first padded, a dashed line under the header.
pub fn table(header: (&str, &str), rows: &[(String, String)]) -> String {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .chain([header.0.chars().count()])
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let mut line = |k: &str, v: &str| {
        let pad = width - k.chars().count();
        out.push_str(&format!("{k}{}    {v}\n", " ".repeat(pad)));
    };
    line(header.0, header.1);
    line(&"-".repeat(header.0.len()), &"-".repeat(header.1.len()));
    for (k, v) in rows {
        line(k, v);
    }
    out
}

/// Vault prints these integer fields as durations.
fn looks_like_duration(key: &str) -> bool {
    key == "period"
        || key.ends_with("_period")
        || key == "ttl"
        || key.ends_with("_ttl")
        || key == "duration"
        || key.ends_with("_duration")
        || key == "lease_max"
        || key == "ttl_max"
}

/// A JSON value as Go's `%v` prints the decoded value.
fn go_value(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(go_value).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_value(&map[k])))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

/// A string list as Go's `%q` prints it: `["a" "b"]`.
fn quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| Value::String(s.clone()).to_string())
        .collect();
    format!("[{}]", quoted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_leased_secret_shows_lease_fields_then_sorted_data() {
        let e: Envelope = serde_json::from_value(json!({
            "request_id": "r", "lease_id": "database/creds/c/d/app/X", "renewable": true,
            "lease_duration": 3600,
            "data": {"username": "v-app-1", "port": 5432, "default_ttl": 90, "tags": ["a", "b"],
                      "expire_time": null, "meta": {"z": 1, "a": "x"}}
        }))
        .unwrap();
        let text = table(("Key", "Value"), &table_rows(&e));
        assert_eq!(
            text,
            "Key                Value\n\
             ---                -----\n\
             lease_id           database/creds/c/d/app/X\n\
             lease_duration     1h\n\
             lease_renewable    true\n\
             default_ttl        1m30s\n\
             expire_time        <nil>\n\
             meta               map[a:x z:1]\n\
             port               5432\n\
             tags               [a b]\n\
             username           v-app-1\n"
        );
    }

    #[test]
    fn a_token_answer_shows_token_fields() {
        let e: Envelope = serde_json::from_value(json!({
            "request_id": "r", "lease_duration": 0, "data": null,
            "auth": {"client_token": "hvs.x", "accessor": "acc", "policies": ["app", "default"],
                     "token_policies": ["app", "default"], "lease_duration": 3600, "renewable": true}
        }))
        .unwrap();
        let rows = table_rows(&e);
        assert_eq!(rows[0], ("token".into(), "hvs.x".into()));
        assert_eq!(rows[2], ("token_duration".into(), "1h".into()));
        assert_eq!(
            rows[4],
            ("token_policies".into(), "[\"app\" \"default\"]".into())
        );
        assert_eq!(rows[5], ("identity_policies".into(), "[]".into()));
    }
}
