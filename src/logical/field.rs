//! Typed field schemas and the parsed values handlers read.
//!
//! Every route declares its fields here; the router turns the request's raw
//! JSON (body, query or path captures) into a [`FieldData`] before a handler
//! runs, so handlers never touch raw JSON and a wrong type is always a 400
//! naming the field. Parsing follows Vault's weak typing (`"true"` is a bool,
//! `"3600"` and `"1h"` are durations) because Vault clients rely on it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::duration;

/// The type of a field, as documented in help and OpenAPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    String,
    Int,
    Bool,
    /// Seconds; accepts integers, `"3600"`, `"1h30m"`, `"2d"`.
    Duration,
    /// Accepts `"a,b"` or `["a","b"]`.
    CommaList,
    /// Accepts `["a","b"]`, or one string as a one-item list (never split:
    /// SQL statements hold commas).
    StringList,
    /// A JSON object of string values.
    Map,
    /// A JSON object of any values, kept as given for the handler to read
    /// (Vault's mount `config`, whose keys hold strings, lists and nulls).
    Object,
    /// A path capture following Vault's generic name pattern.
    Name,
    /// A path capture that may contain slashes (lease prefixes).
    Path,
}

impl FieldKind {
    pub fn describe(self) -> &'static str {
        match self {
            FieldKind::String | FieldKind::Name | FieldKind::Path => "string",
            FieldKind::Int => "int",
            FieldKind::Bool => "bool",
            FieldKind::Duration => "duration (sec)",
            FieldKind::CommaList => "comma-separated list or array",
            FieldKind::StringList => "array of strings",
            FieldKind::Map => "map of strings",
            FieldKind::Object => "map",
        }
    }

    /// The OpenAPI schema of this kind.
    pub fn openapi(self) -> Value {
        match self {
            FieldKind::String | FieldKind::Name | FieldKind::Path => {
                serde_json::json!({"type": "string"})
            }
            FieldKind::Int => serde_json::json!({"type": "integer"}),
            FieldKind::Bool => serde_json::json!({"type": "boolean"}),
            FieldKind::Duration => serde_json::json!({"type": "string", "format": "duration"}),
            FieldKind::CommaList | FieldKind::StringList => {
                serde_json::json!({"type": "array", "items": {"type": "string"}})
            }
            FieldKind::Map => {
                serde_json::json!({"type": "object", "additionalProperties": {"type": "string"}})
            }
            FieldKind::Object => serde_json::json!({"type": "object"}),
        }
    }
}

/// One declared field of a route.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: &'static str,
    pub kind: FieldKind,
    pub description: &'static str,
    pub default: Option<Value>,
    /// Required for write operations.
    pub required: bool,
    /// Never echoed in logs or audit records.
    pub sensitive: bool,
}

impl Field {
    pub fn new(name: &'static str, kind: FieldKind, description: &'static str) -> Field {
        Field {
            name,
            kind,
            description,
            default: None,
            required: false,
            sensitive: false,
        }
    }
    pub fn string(name: &'static str, description: &'static str) -> Field {
        Field::new(name, FieldKind::String, description)
    }
    pub fn int(name: &'static str, description: &'static str) -> Field {
        Field::new(name, FieldKind::Int, description)
    }
    pub fn bool(name: &'static str, description: &'static str) -> Field {
        Field::new(name, FieldKind::Bool, description)
    }
    pub fn duration(name: &'static str, description: &'static str) -> Field {
        Field::new(name, FieldKind::Duration, description)
    }
    pub fn list(name: &'static str, description: &'static str) -> Field {
        Field::new(name, FieldKind::CommaList, description)
    }
    pub fn strings(name: &'static str, description: &'static str) -> Field {
        Field::new(name, FieldKind::StringList, description)
    }
    pub fn map(name: &'static str, description: &'static str) -> Field {
        Field::new(name, FieldKind::Map, description)
    }
    pub fn object(name: &'static str, description: &'static str) -> Field {
        Field::new(name, FieldKind::Object, description)
    }
    pub fn name(name: &'static str, description: &'static str) -> Field {
        Field::new(name, FieldKind::Name, description)
    }
    pub fn path(name: &'static str, description: &'static str) -> Field {
        Field::new(name, FieldKind::Path, description)
    }
    pub fn default(mut self, value: Value) -> Field {
        self.default = Some(value);
        self
    }
    pub fn required(mut self) -> Field {
        self.required = true;
        self
    }
    pub fn sensitive(mut self) -> Field {
        self.sensitive = true;
        self
    }
}

/// A field whose value could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    #[error("Field validation failed: error converting input for field {field:?}: {reason}")]
    Invalid { field: String, reason: String },
    #[error(
        "Field validation failed: cannot provide negative value '{value}' for field {field:?}"
    )]
    Negative { field: String, value: String },
    #[error("missing required field {field:?}")]
    Missing { field: String },
    #[error("failed to decode JSON input: {0}")]
    Json(String),
}

/// A parsed value of one field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    String(String),
    Int(i64),
    Bool(bool),
    Duration(u64),
    List(Vec<String>),
    Map(BTreeMap<String, String>),
    Object(Map<String, Value>),
}

/// The validated values of a request, read by handlers through the schema.
#[derive(Debug, Clone, Default)]
pub struct FieldData {
    given: BTreeMap<&'static str, FieldValue>,
    defaults: BTreeMap<&'static str, FieldValue>,
    /// Names in the request that no field declares, sorted (for Vault's warning).
    pub unknown: Vec<String>,
}

impl FieldData {
    /// Parses `raw` (body or query) against `schema`; path `captures` win over
    /// body fields of the same name, as in Vault.
    pub fn parse(
        schema: &[Field],
        raw: &Map<String, Value>,
        captures: &BTreeMap<String, String>,
    ) -> Result<FieldData, FieldError> {
        let mut data = FieldData::default();
        for field in schema {
            if let Some(default) = &field.default {
                data.defaults.insert(field.name, convert(field, default)?);
            }
            let value = match captures.get(field.name) {
                Some(captured) => Some(Value::String(captured.clone())),
                None => raw.get(field.name).cloned(),
            };
            // JSON null and "" mean "not given" for non-strings (hvac sends
            // `"increment": null`).
            let value = match value {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.is_empty() && field.kind != FieldKind::String => None,
                Some(v) => Some(v),
            };
            if let Some(value) = value {
                data.given.insert(field.name, convert(field, &value)?);
            }
        }
        let mut unknown: Vec<String> = raw
            .keys()
            .filter(|k| !schema.iter().any(|f| f.name == k.as_str()))
            .cloned()
            .collect();
        unknown.sort();
        data.unknown = unknown;
        Ok(data)
    }

    /// Fails with the first required field that was not given.
    pub fn check_required(&self, schema: &[Field]) -> Result<(), FieldError> {
        for field in schema.iter().filter(|f| f.required) {
            if !self.given.contains_key(field.name) {
                return Err(FieldError::Missing {
                    field: field.name.to_string(),
                });
            }
        }
        Ok(())
    }

    fn value(&self, name: &str) -> Option<&FieldValue> {
        self.given.get(name).or_else(|| self.defaults.get(name))
    }

    /// Whether the request carried this field (defaults do not count).
    pub fn is_set(&self, name: &str) -> bool {
        self.given.contains_key(name)
    }

    pub fn str(&self, name: &str) -> Option<String> {
        match self.value(name)? {
            FieldValue::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        match self.value(name)? {
            FieldValue::Int(i) => Some(*i),
            FieldValue::Duration(d) => i64::try_from(*d).ok(),
            _ => None,
        }
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.value(name)? {
            FieldValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Seconds.
    pub fn duration(&self, name: &str) -> Option<u64> {
        match self.value(name)? {
            FieldValue::Duration(d) => Some(*d),
            FieldValue::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        }
    }

    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        match self.value(name)? {
            FieldValue::List(l) => Some(l.clone()),
            FieldValue::String(s) => Some(vec![s.clone()]),
            _ => None,
        }
    }

    pub fn map(&self, name: &str) -> Option<BTreeMap<String, String>> {
        match self.value(name)? {
            FieldValue::Map(m) => Some(m.clone()),
            _ => None,
        }
    }

    pub fn object(&self, name: &str) -> Option<Map<String, Value>> {
        match self.value(name)? {
            FieldValue::Object(m) => Some(m.clone()),
            _ => None,
        }
    }
}

impl std::fmt::Display for FieldValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldValue::String(s) => f.write_str(s),
            FieldValue::Int(i) => write!(f, "{i}"),
            FieldValue::Bool(b) => write!(f, "{b}"),
            FieldValue::Duration(d) => write!(f, "{d}"),
            FieldValue::List(l) => f.write_str(&l.join(",")),
            FieldValue::Map(m) => write!(f, "{m:?}"),
            FieldValue::Object(m) => write!(f, "{}", Value::Object(m.clone())),
        }
    }
}

fn invalid(field: &Field, reason: impl Into<String>) -> FieldError {
    FieldError::Invalid {
        field: field.name.to_string(),
        reason: reason.into(),
    }
}

/// A JSON value's type as error messages (and the differential tests) name it.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go's `strconv.ParseBool`, which Vault uses for weakly typed bools.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn convert(field: &Field, value: &Value) -> Result<FieldValue, FieldError> {
    match field.kind {
        FieldKind::String | FieldKind::Name | FieldKind::Path => match value {
            Value::String(s) => Ok(FieldValue::String(s.clone())),
            Value::Number(n) => Ok(FieldValue::String(n.to_string())),
            Value::Bool(b) => Ok(FieldValue::String(b.to_string())),
            other => Err(invalid(
                field,
                format!("expected a string, got {}", type_name(other)),
            )),
        },
        FieldKind::Int => match value {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Ok(FieldValue::Int(i))
                } else {
                    match n.as_f64() {
                        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                            Ok(FieldValue::Int(f as i64))
                        }
                        _ => Err(invalid(field, format!("expected an integer, got {n}"))),
                    }
                }
            }
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(FieldValue::Int)
                .map_err(|_| invalid(field, format!("expected an integer, got {s:?}"))),
            other => Err(invalid(
                field,
                format!("expected an integer, got {}", type_name(other)),
            )),
        },
        FieldKind::Bool => match value {
            Value::Bool(b) => Ok(FieldValue::Bool(*b)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Ok(FieldValue::Bool(i != 0)),
                None => Err(invalid(field, format!("expected a bool, got {n}"))),
            },
            Value::String(s) => parse_bool(s.trim())
                .map(FieldValue::Bool)
                .ok_or_else(|| invalid(field, format!("expected a bool, got {s:?}"))),
            other => Err(invalid(
                field,
                format!("expected a bool, got {}", type_name(other)),
            )),
        },
        FieldKind::Duration => {
            let seconds = match value {
                Value::Number(n) => {
                    if let Some(i) = n.as_i64() {
                        i as f64
                    } else {
                        n.as_f64().ok_or_else(|| {
                            invalid(field, format!("expected a duration, got {n}"))
                        })?
                    }
                }
                Value::String(s) => duration::parse_seconds(s.trim()).map_err(|reason| {
                    invalid(field, format!("invalid duration {s:?}: {reason}"))
                })?,
                other => {
                    return Err(invalid(
                        field,
                        format!("expected a duration, got {}", type_name(other)),
                    ))
                }
            };
            if seconds < 0.0 {
                return Err(FieldError::Negative {
                    field: field.name.to_string(),
                    value: value_text(value),
                });
            }
            // Sub-second parts truncate, as in Vault.
            Ok(FieldValue::Duration(seconds.trunc() as u64))
        }
        FieldKind::StringList => match value {
            Value::String(s) => Ok(FieldValue::List(vec![s.clone()])),
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(invalid(
                        field,
                        format!("list items must be strings, got {}", type_name(other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(FieldValue::List),
            other => Err(invalid(
                field,
                format!(
                    "expected a string or an array of strings, got {}",
                    type_name(other)
                ),
            )),
        },
        FieldKind::CommaList => match value {
            Value::String(s) => Ok(FieldValue::List(
                s.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect(),
            )),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        Value::Number(n) => out.push(n.to_string()),
                        Value::Bool(b) => out.push(b.to_string()),
                        other => {
                            return Err(invalid(
                                field,
                                format!("list items must be strings, got {}", type_name(other)),
                            ))
                        }
                    }
                }
                Ok(FieldValue::List(out))
            }
            other => Err(invalid(
                field,
                format!(
                    "expected a comma-separated string or an array, got {}",
                    type_name(other)
                ),
            )),
        },
        FieldKind::Object => match value {
            Value::Object(obj) => Ok(FieldValue::Object(obj.clone())),
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(obj)) => Ok(FieldValue::Object(obj)),
                _ => Err(invalid(field, "expected a JSON object")),
            },
            other => Err(invalid(
                field,
                format!("expected a JSON object, got {}", type_name(other)),
            )),
        },
        FieldKind::Map => match value {
            Value::Object(obj) => {
                let mut out = BTreeMap::new();
                for (k, v) in obj {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => {
                            return Err(invalid(
                                field,
                                format!(
                                    "value of {k:?} must be a string, got {}",
                                    type_name(other)
                                ),
                            ))
                        }
                    };
                    out.insert(k.clone(), text);
                }
                Ok(FieldValue::Map(out))
            }
            Value::String(s) => {
                // The CLI and form posts send maps as JSON text.
                match serde_json::from_str::<Value>(s) {
                    Ok(v @ Value::Object(_)) => convert(field, &v),
                    _ => Err(invalid(field, "expected a JSON object of strings")),
                }
            }
            other => Err(invalid(
                field,
                format!("expected an object, got {}", type_name(other)),
            )),
        },
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Vec<Field> {
        vec![
            Field::string("host", "h").required(),
            Field::int("port", "p").default(json!(5432)),
            Field::bool("flag", "f"),
            Field::duration("ttl", "t"),
            Field::list("stmts", "s"),
            Field::map("meta", "m"),
        ]
    }

    fn parse(v: Value) -> Result<FieldData, FieldError> {
        FieldData::parse(&schema(), v.as_object().unwrap(), &BTreeMap::new())
    }

    #[test]
    fn weak_types_are_accepted_like_vault() {
        let d = parse(
            json!({"host": 5, "port": "6543", "flag": "True", "ttl": "1h30m",
            "stmts": "a, b", "meta": {"k": 1}}),
        )
        .unwrap();
        assert_eq!(d.str("host").unwrap(), "5");
        assert_eq!(d.int("port"), Some(6543));
        assert_eq!(d.bool("flag"), Some(true));
        assert_eq!(d.duration("ttl"), Some(5400));
        assert_eq!(d.list("stmts").unwrap(), vec!["a", "b"]);
        assert_eq!(d.map("meta").unwrap()["k"], "1");
    }

    #[test]
    fn defaults_apply_but_do_not_count_as_set() {
        let d = parse(json!({"host": "x"})).unwrap();
        assert_eq!(d.int("port"), Some(5432));
        assert!(!d.is_set("port"));
    }

    #[test]
    fn wrong_types_name_the_field() {
        let e = parse(json!({"port": "abc"})).unwrap_err().to_string();
        assert!(e.contains("\"port\""), "{e}");
        assert!(e.starts_with("Field validation failed"), "{e}");
        let e = parse(json!({"flag": [1]})).unwrap_err().to_string();
        assert!(e.contains("\"flag\""), "{e}");
    }

    #[test]
    fn negative_durations_are_refused() {
        let e = parse(json!({"ttl": -5})).unwrap_err().to_string();
        assert!(e.contains("cannot provide negative value '-5'"), "{e}");
    }

    #[test]
    fn null_means_not_given_and_unknown_fields_are_listed() {
        let d = parse(json!({"ttl": null, "zzz": 1, "aaa": 2})).unwrap();
        assert!(!d.is_set("ttl"));
        assert_eq!(d.unknown, vec!["aaa", "zzz"]);
        assert!(d.check_required(&schema()).is_err());
    }

    #[test]
    fn captures_override_body_fields() {
        let mut caps = BTreeMap::new();
        caps.insert("host".to_string(), "from-path".to_string());
        let d = FieldData::parse(
            &schema(),
            json!({"host": "from-body"}).as_object().unwrap(),
            &caps,
        )
        .unwrap();
        assert_eq!(d.str("host").unwrap(), "from-path");
    }
}
