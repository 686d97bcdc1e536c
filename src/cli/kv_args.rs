//! `key=value` arguments, as the `vault` CLI reads them.
//!
//! Like Vault's kv-builder:
//! - `key=value` sets a string; a repeated key collects its values in an array;
//! - `key=@file` takes the file's contents, `key=-` takes standard input
//!   (once), `key=\@x` is the literal `@x`;
//! - a bare `-` (or `@file`) merges a JSON object read from standard input
//!   (or the file) into the data.
//!
//! One difference, on purpose: an inline value that is a JSON array or
//! object (`creation_statements='["CREATE ..."]'`, `meta='{"team":"a"}'`) is
//! sent as JSON. The `vault` CLI sends it as a string and relies on Vault's
//! server to decode it; pgsecrets' comma-list fields do not, so the JSON is
//! decoded here. Values read from a file or stdin stay text, so a JSON
//! policy document given as `policy=@p.json` is still a string.

use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

/// Why an argument was refused; the message names the argument.
#[derive(Debug, thiserror::Error)]
#[error("invalid key/value pair {arg:?}: {reason}")]
pub struct Error {
    pub arg: String,
    pub reason: String,
}

/// Builds the data of a request from `args`; `stdin` is read at most once.
pub fn parse(args: &[String], stdin: &mut dyn Read) -> Result<Map<String, Value>, Error> {
    let mut data = Map::new();
    let mut stdin_used = false;
    for arg in args {
        add(&mut data, arg, stdin, &mut stdin_used).map_err(|reason| Error {
            arg: arg.clone(),
            reason,
        })?;
    }
    Ok(data)
}

/// Data as query parameters: arrays become repeated parameters, other
/// non-strings their JSON text.
pub fn to_query(data: &Map<String, Value>) -> Vec<(String, String)> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = Vec::new();
    for (key, value) in data {
        match value {
            Value::Array(items) => out.extend(items.iter().map(|i| (key.clone(), text(i)))),
            other => out.push((key.clone(), text(other))),
        }
    }
    out
}

fn add(
    data: &mut Map<String, Value>,
    raw: &str,
    stdin: &mut dyn Read,
    stdin_used: &mut bool,
) -> Result<(), String> {
    if raw.is_empty() {
        return Ok(());
    }
    let Some((key, value)) = raw.split_once('=') else {
        if raw == "-" {
            let text = read_stdin(stdin, stdin_used)?;
            return merge_object(data, &text, "standard input");
        }
        if let Some(file) = raw.strip_prefix('@') {
            let text = read_file(file)?;
            return merge_object(data, &text, file);
        }
        return Err("expected key=value".into());
    };
    if key.is_empty() {
        return Err("the key is empty".into());
    }
    let value = if let Some(file) = value.strip_prefix('@') {
        Value::String(read_file(file)?)
    } else if let Some(literal) = value.strip_prefix('\\').filter(|v| v.starts_with('@')) {
        Value::String(literal.to_string())
    } else if value == "-" {
        Value::String(read_stdin(stdin, stdin_used)?)
    } else {
        inline(value)
    };
    match data.get_mut(key) {
        None => {
            data.insert(key.to_string(), value);
        }
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
    }
    Ok(())
}

/// An inline value: JSON when it is a JSON array or object, else the text.
fn inline(value: &str) -> Value {
    let trimmed = value.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        if let Ok(json @ (Value::Array(_) | Value::Object(_))) = serde_json::from_str(value) {
            return json;
        }
    }
    Value::String(value.to_string())
}

fn read_file(file: &str) -> Result<String, String> {
    if file.is_empty() {
        return Err("no file name after @".into());
    }
    std::fs::read_to_string(Path::new(file)).map_err(|e| format!("cannot read {file}: {e}"))
}

fn read_stdin(stdin: &mut dyn Read, used: &mut bool) -> Result<String, String> {
    if *used {
        return Err("standard input is already used by another argument".into());
    }
    *used = true;
    let mut text = String::new();
    stdin
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    Ok(text)
}

fn merge_object(data: &mut Map<String, Value>, text: &str, source: &str) -> Result<(), String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => {
            data.extend(object);
            Ok(())
        }
        Ok(_) => Err(format!("{source} does not hold a JSON object")),
        Err(e) => Err(format!("{source} is not JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn parse_with(list: &[&str], stdin: &str) -> Result<Value, Error> {
        parse(&args(list), &mut stdin.as_bytes()).map(Value::Object)
    }

    #[test]
    fn plain_repeated_escaped_and_json_values() {
        let v = parse_with(
            &[
                "a=1",
                "b=x=y",
                "p=one",
                "p=two",
                "e=\\@literal",
                "l=[\"s1\",\"s2\"]",
                "m={\"k\":\"v\"}",
                "notjson=[oops",
                "empty=",
            ],
            "",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({
                "a": "1", "b": "x=y", "p": ["one", "two"], "e": "@literal",
                "l": ["s1", "s2"], "m": {"k": "v"}, "notjson": "[oops", "empty": ""
            })
        );
    }

    #[test]
    fn files_and_stdin_give_text_and_bare_forms_give_objects() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.json");
        std::fs::write(&file, "{\"path\": {}}\n").unwrap();
        let at = format!("policy=@{}", file.display());
        let v = parse_with(&[&at, "password=-"], "s3cret\n").unwrap();
        assert_eq!(
            v,
            json!({"policy": "{\"path\": {}}\n", "password": "s3cret\n"})
        );

        let v = parse_with(&["-", "x=1"], "{\"ttl\": 60, \"x\": \"0\"}").unwrap();
        assert_eq!(v, json!({"ttl": 60, "x": ["0", "1"]}));
        let bare = format!("@{}", file.display());
        assert_eq!(parse_with(&[&bare], "").unwrap(), json!({"path": {}}));
    }

    #[test]
    fn malformed_arguments_say_what_is_wrong() {
        let e = parse_with(&["novalue"], "").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid key/value pair \"novalue\": expected key=value"
        );
        assert!(parse_with(&["=v"], "")
            .unwrap_err()
            .reason
            .contains("empty"));
        assert!(parse_with(&["a=-", "b=-"], "x")
            .unwrap_err()
            .reason
            .contains("already used"));
        assert!(parse_with(&["a=@/nonexistent/file"], "")
            .unwrap_err()
            .reason
            .contains("cannot read /nonexistent/file"));
        assert!(parse_with(&["-"], "[1]")
            .unwrap_err()
            .reason
            .contains("JSON object"));
    }

    #[test]
    fn query_parameters_repeat_for_arrays() {
        let data = parse(&args(&["a=1", "a=2", "b=x"]), &mut "".as_bytes()).unwrap();
        assert_eq!(
            to_query(&data),
            vec![
                ("a".to_string(), "1".to_string()),
                ("a".to_string(), "2".to_string()),
                ("b".to_string(), "x".to_string())
            ]
        );
    }
}
