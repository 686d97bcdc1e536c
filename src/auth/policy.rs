//! Parsing of Vault ACL policy documents, in Vault's HCL form or its JSON
//! form, into [`Policy`] values. This module owns the document syntax only:
//! it does no storage and no matching (see [`super::acl`] for that).
//!
//! ```hcl
//! path "database/creds/*" { capabilities = ["read"] }
//! path "sys/leases/+/x" {
//!   capabilities = ["update", "list"]
//! }
//! ```
//!
//! is equivalent to
//! `{"path": {"database/creds/*": {"capabilities": ["read"]}, ...}}`.
//!
//! Parsing follows Vault's `vault/policy.go`: one leading `/` is stripped
//! from a pattern, `+*` is refused, the legacy `policy = "read" | "write" |
//! "deny" | "sudo"` shorthand is expanded, and a block whose capabilities
//! contain `deny` keeps only `deny`. The parameter and wrapping keys are
//! kept in [`Parameters`] (parameter names lowercased, as Vault does) and
//! enforced by the ACL.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::hcl1;

/// A capability a policy grants (or, for `Deny`, refuses) on a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    Create,
    Read,
    Update,
    Delete,
    List,
    Sudo,
    Deny,
    Patch,
}

impl Capability {
    /// Every capability, in declaration order.
    pub const ALL: [Capability; 8] = [
        Capability::Create,
        Capability::Read,
        Capability::Update,
        Capability::Delete,
        Capability::List,
        Capability::Sudo,
        Capability::Deny,
        Capability::Patch,
    ];

    /// The lowercase name used in policy documents and API answers.
    pub fn as_str(&self) -> &'static str {
        match self {
            Capability::Create => "create",
            Capability::Read => "read",
            Capability::Update => "update",
            Capability::Delete => "delete",
            Capability::List => "list",
            Capability::Sudo => "sudo",
            Capability::Deny => "deny",
            Capability::Patch => "patch",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Capability {
    type Err = ParseError;

    /// Exact, case-sensitive names, as Vault accepts them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Capability::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| ParseError::UnknownCapability(s.to_string()))
    }
}

/// One `path "<pattern>" { ... }` block of a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PathRule {
    /// The pattern, trimmed and without a leading `/`. It may end in `*`
    /// (prefix match) and contain `+` segments (any one segment).
    pub pattern: String,
    /// The capabilities the block grants; exactly `{Deny}` when it denies.
    pub capabilities: BTreeSet<Capability>,
    /// What the block says of request parameters and response wrapping.
    pub parameters: Parameters,
}

/// A block's `allowed_parameters`, `denied_parameters`,
/// `required_parameters`, `min_wrapping_ttl` and `max_wrapping_ttl`.
/// An empty map is the same as an absent one; an empty value list means
/// "any value".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parameters {
    pub allowed: BTreeMap<String, Vec<Value>>,
    pub denied: BTreeMap<String, Vec<Value>>,
    pub required: Vec<String>,
    /// Seconds; 0 when not set. Vault accepts a negative duration here,
    /// and so does pgsecrets: any non-zero value requires wrapping.
    pub min_wrapping_ttl: i64,
    pub max_wrapping_ttl: i64,
}

/// A parsed policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The normalized (trimmed, lowercase) policy name.
    pub name: String,
    /// The document exactly as written.
    pub text: String,
    /// The path blocks in document order. A pattern may appear more than
    /// once; the ACL merges repeated patterns as Vault does.
    pub rules: Vec<PathRule>,
}

const CAPABILITY_NAMES: &str = "create, read, update, delete, list, patch, sudo or deny";
const BLOCK_KEYS: &str = "capabilities, policy, allowed_parameters, denied_parameters, \
     required_parameters, min_wrapping_ttl, max_wrapping_ttl or comment";

/// Why a policy document was refused. Each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("the policy is not valid {format}: {message}")]
    Syntax {
        format: &'static str,
        message: String,
    },
    #[error("unknown capability {0:?}: use {CAPABILITY_NAMES}")]
    UnknownCapability(String),
    #[error(
        "unknown policy {0:?}: the legacy `policy` key takes read, write, deny or sudo; \
         prefer capabilities = [...]"
    )]
    UnknownLegacyPolicy(String),
    #[error(
        "'+*' is not allowed; end the path with '+' (one segment), '+/*' (everything below \
         one segment) or '*'"
    )]
    PlusGlob,
    #[error("unknown key {0:?} in a path block: use {BLOCK_KEYS}")]
    UnknownKey(String),
    #[error(
        "unknown top-level key {0:?}: a policy holds only path \"<path>\" {{ capabilities = \
         [...] }} blocks"
    )]
    UnknownTopLevelKey(String),
    #[error(
        "{0:?} is an OpenBao policy feature pgsecrets does not have; remove it (pgsecrets refuses \
         it rather than ignore a rule that narrows access)"
    )]
    Unsupported(String),
    #[error("{key:?} must be {expected}")]
    InvalidValue { key: String, expected: &'static str },
    #[error("path {path:?}: {reason}")]
    InPath {
        path: String,
        reason: Box<ParseError>,
    },
}

impl ParseError {
    fn in_path(self, path: &str) -> ParseError {
        ParseError::InPath {
            path: path.to_string(),
            reason: Box::new(self),
        }
    }

    fn invalid(key: &str, expected: &'static str) -> ParseError {
        ParseError::InvalidValue {
            key: key.to_string(),
            expected,
        }
    }
}

/// Policy names are case-insensitive in Vault: trim and lowercase.
pub fn normalize_name(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Parses a policy document in Vault's HCL form or, when its first
/// non-blank character is `{`, its JSON form. An empty document (no path
/// blocks) is allowed, as in Vault.
pub fn parse(name: &str, text: &str) -> Result<Policy, ParseError> {
    let blocks = if text.trim_start().starts_with('{') {
        json_blocks(text)?
    } else {
        hcl_blocks(text)?
    };
    let rules = blocks
        .into_iter()
        .map(|(label, entries)| rule(&label, entries).map_err(|e| e.in_path(label.trim())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Policy {
        name: normalize_name(name),
        text: text.to_string(),
        rules,
    })
}

/// A path block before interpretation: its label and its keys in order.
type RawBlock = (String, Vec<(String, Value)>);

fn hcl_blocks(text: &str) -> Result<Vec<RawBlock>, ParseError> {
    let items = hcl1::parse(text).map_err(|e| ParseError::Syntax {
        format: "HCL",
        message: e.to_string(),
    })?;
    let mut blocks = Vec::new();
    for item in items {
        let (first, rest) = item.keys.split_first().expect("an item has a key");
        match first.as_str() {
            "path" => {
                // As Vault: the first label is the path (`path { ... }` is
                // the path "path"), further labels are ignored.
                let label = rest.first().cloned().unwrap_or_else(|| "path".to_string());
                let hcl1::Node::Object(body) = item.value else {
                    return Err(ParseError::invalid(
                        "path",
                        "a block: path \"secret/*\" { capabilities = [\"read\"] }",
                    )
                    .in_path(&label));
                };
                blocks.push((label, merged_entries(body)));
            }
            // Vault's decoder accepts a top-level `name` and ignores it.
            "name" if !matches!(item.value, hcl1::Node::Object(_)) => {}
            "name" => return Err(ParseError::invalid("name", "a string")),
            _ => return Err(ParseError::UnknownTopLevelKey(first.clone())),
        }
    }
    Ok(blocks)
}

/// The entries of an HCL 1 object as Vault decodes them: `k "l" { .. }`
/// is `k = { l = { .. } }`, and a repeated key adds to the earlier value
/// (lists are joined, objects merged) instead of replacing it; a repeated
/// scalar replaces.
fn merged_entries(items: Vec<hcl1::Item>) -> Vec<(String, Value)> {
    let mut entries: Vec<(String, Value)> = Vec::new();
    for item in items {
        let mut keys = item.keys;
        let mut value = json(item.value);
        while keys.len() > 1 {
            let inner = keys.pop().expect("more than one key");
            value = Value::Object(serde_json::Map::from_iter([(inner, value)]));
        }
        let key = keys.pop().expect("an item has a key");
        match entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, earlier)) => add_to(earlier, value),
            None => entries.push((key, value)),
        }
    }
    entries
}

fn add_to(earlier: &mut Value, later: Value) {
    match (earlier, later) {
        (Value::Array(a), Value::Array(b)) => a.extend(b),
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => add_to(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (earlier, later) => *earlier = later,
    }
}

/// An HCL 1 value as JSON; numbers that JSON cannot hold become strings
/// (and are then refused where a number is needed).
fn json(node: hcl1::Node) -> Value {
    match node {
        hcl1::Node::String(s) => Value::String(s),
        hcl1::Node::Bool(b) => Value::Bool(b),
        hcl1::Node::Number(n) => serde_json::from_str::<serde_json::Number>(&n)
            .map(Value::Number)
            .unwrap_or(Value::String(n)),
        hcl1::Node::List(items) => Value::Array(items.into_iter().map(json).collect()),
        hcl1::Node::Object(items) => Value::Object(merged_entries(items).into_iter().collect()),
    }
}

fn json_blocks(text: &str) -> Result<Vec<RawBlock>, ParseError> {
    let document: Value = serde_json::from_str(text).map_err(|e| ParseError::Syntax {
        format: "JSON",
        message: e.to_string(),
    })?;
    let Value::Object(top) = document else {
        return Err(ParseError::Syntax {
            format: "JSON",
            message: "expected an object".into(),
        });
    };
    const PATHS: &str =
        "an object of paths to blocks: {\"path\": {\"secret/*\": {\"capabilities\": [\"read\"]}}}";
    let mut blocks = Vec::new();
    for (key, value) in top {
        match key.as_str() {
            "path" => {
                // HCL-style JSON also allows a list of such objects.
                let maps = match value {
                    Value::Object(map) => vec![map],
                    Value::Array(items) => items
                        .into_iter()
                        .map(|item| match item {
                            Value::Object(map) => Ok(map),
                            _ => Err(ParseError::invalid("path", PATHS)),
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err(ParseError::invalid("path", PATHS)),
                };
                for (label, body) in maps.into_iter().flatten() {
                    let bodies = match body {
                        Value::Array(items) => items,
                        other => vec![other],
                    };
                    for body in bodies {
                        let Value::Object(entries) = body else {
                            return Err(ParseError::invalid(
                                "path",
                                "an object of keys such as {\"capabilities\": [\"read\"]}",
                            )
                            .in_path(label.trim()));
                        };
                        blocks.push((label.clone(), entries.into_iter().collect()));
                    }
                }
            }
            "name" => {}
            _ => return Err(ParseError::UnknownTopLevelKey(key)),
        }
    }
    Ok(blocks)
}

/// The pattern as Vault keeps it: one leading `/` stripped and nothing
/// else changed (no trimming; a `*` before the end is a literal
/// character, as in Vault).
fn pattern(label: &str) -> Result<String, ParseError> {
    let pattern = label.strip_prefix('/').unwrap_or(label);
    if pattern.contains("+*") {
        return Err(ParseError::PlusGlob);
    }
    Ok(pattern.to_string())
}

fn string_list(key: &str, value: &Value) -> Result<Vec<String>, ParseError> {
    const EXPECTED: &str = "a list of strings, e.g. [\"read\", \"list\"]";
    let items = match value {
        Value::Array(items) => items,
        // Vault's decoder reads `{}` as an empty list.
        Value::Object(map) if map.is_empty() => return Ok(Vec::new()),
        _ => return Err(ParseError::invalid(key, EXPECTED)),
    };
    items
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(ParseError::invalid(key, EXPECTED)),
        })
        .collect()
}

fn rule(label: &str, entries: Vec<(String, Value)>) -> Result<PathRule, ParseError> {
    let pattern = pattern(label)?;
    let mut capabilities: Option<Vec<String>> = None;
    let mut legacy: Option<String> = None;
    let mut parameters = Parameters::default();
    for (key, value) in &entries {
        match key.as_str() {
            "capabilities" => capabilities = Some(string_list(key, value)?),
            "policy" => match value {
                Value::String(s) => legacy = Some(s.clone()),
                _ => {
                    return Err(ParseError::invalid(
                        key,
                        "one of \"read\", \"write\", \"deny\" or \"sudo\"",
                    ))
                }
            },
            "allowed_parameters" | "denied_parameters" => {
                let map = parameter_map(key, value)?;
                if key == "allowed_parameters" {
                    parameters.allowed = map;
                } else {
                    parameters.denied = map;
                }
            }
            "required_parameters" => {
                parameters.required = string_list(key, value)?;
            }
            "min_wrapping_ttl" => parameters.min_wrapping_ttl = wrapping_ttl(key, value)?,
            "max_wrapping_ttl" => parameters.max_wrapping_ttl = wrapping_ttl(key, value)?,
            "comment" => {}
            "mfa_methods"
            | "control_group"
            | "expiration"
            | "pagination_limit"
            | "list_scan_response_keys_filter_path" => {
                return Err(ParseError::Unsupported(key.clone()))
            }
            _ => return Err(ParseError::UnknownKey(key.clone())),
        }
    }
    if parameters.max_wrapping_ttl != 0
        && parameters.min_wrapping_ttl != 0
        && parameters.max_wrapping_ttl < parameters.min_wrapping_ttl
    {
        return Err(ParseError::invalid(
            "max_wrapping_ttl",
            "a duration not below min_wrapping_ttl",
        ));
    }
    let mut set = BTreeSet::new();
    for name in capabilities.unwrap_or_default() {
        set.insert(name.parse::<Capability>()?);
    }
    if let Some(policy) = legacy {
        use Capability::*;
        let expanded: &[Capability] = match policy.as_str() {
            "deny" => &[Deny],
            "read" => &[Read, List],
            "write" => &[Create, Read, Update, Delete, List],
            "sudo" => &[Create, Read, Update, Delete, List, Sudo],
            _ => return Err(ParseError::UnknownLegacyPolicy(policy)),
        };
        set.extend(expanded.iter().copied());
    }
    if set.contains(&Capability::Deny) {
        set = BTreeSet::from([Capability::Deny]);
    }
    Ok(PathRule {
        pattern,
        capabilities: set,
        parameters,
    })
}

/// `{ "name" = [values] }`, names lowercased as Vault matches them.
fn parameter_map(key: &str, value: &Value) -> Result<BTreeMap<String, Vec<Value>>, ParseError> {
    const EXPECTED: &str = "a map of parameter names to lists of values, e.g. { \"ttl\" = [] }";
    let Value::Object(map) = value else {
        return Err(ParseError::invalid(key, EXPECTED));
    };
    map.iter()
        .map(|(name, values)| match values {
            Value::Array(list) => Ok((name.to_lowercase(), list.clone())),
            _ => Err(ParseError::invalid(key, EXPECTED)),
        })
        .collect()
}

/// A duration string (`"30s"`, `"90"`) or a number of seconds, whole
/// seconds kept (Vault's `ParseDurationSecond`).
fn wrapping_ttl(key: &str, value: &Value) -> Result<i64, ParseError> {
    const EXPECTED: &str = "a duration such as \"30s\" or a number of seconds";
    let seconds = match value {
        Value::String(text) => match text.strip_prefix('-') {
            Some(positive) => -crate::logical::duration::parse_seconds(positive)
                .map_err(|_| ParseError::invalid(key, EXPECTED))?,
            None => crate::logical::duration::parse_seconds(text)
                .map_err(|_| ParseError::invalid(key, EXPECTED))?,
        },
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| ParseError::invalid(key, EXPECTED))?,
        _ => return Err(ParseError::invalid(key, EXPECTED)),
    };
    Ok(seconds as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Capability::*;

    fn caps(list: &[Capability]) -> BTreeSet<Capability> {
        list.iter().copied().collect()
    }

    fn err(text: &str) -> String {
        parse("p", text).unwrap_err().to_string()
    }

    #[test]
    fn capability_names_round_trip() {
        for c in Capability::ALL {
            assert_eq!(c.as_str().parse::<Capability>().unwrap(), c);
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
        let e = "root".parse::<Capability>().unwrap_err().to_string();
        assert!(e.contains("\"root\""), "{e}");
        assert!("Read".parse::<Capability>().is_err());
    }

    #[test]
    fn hcl_and_json_forms_are_equivalent() {
        let hcl = parse(
            "Ops ",
            r#"
# comment
path "database/creds/*" { capabilities = ["read"] }
path "sys/leases/+/x" {
  capabilities = ["update", "list"]
}
"#,
        )
        .unwrap();
        let json = parse(
            "ops",
            r#"  {"path": {"database/creds/*": {"capabilities": ["read"]},
                          "sys/leases/+/x": {"capabilities": ["update", "list"]}}}"#,
        )
        .unwrap();
        assert_eq!(hcl.rules, json.rules);
        assert_eq!(hcl.name, "ops");
        assert_eq!(
            hcl.rules,
            vec![
                PathRule {
                    pattern: "database/creds/*".into(),
                    capabilities: caps(&[Read]),
                    parameters: Parameters::default(),
                },
                PathRule {
                    pattern: "sys/leases/+/x".into(),
                    capabilities: caps(&[Update, List]),
                    parameters: Parameters::default(),
                },
            ]
        );
        assert!(hcl.text.contains("# comment"));
    }

    #[test]
    fn multiple_blocks_keep_document_order_and_repeats() {
        let p = parse(
            "p",
            r#"
path "b/*" { capabilities = ["list"] }
path "a" { capabilities = ["read"] }
path "b/*" { capabilities = ["delete", "patch"] }
"#,
        )
        .unwrap();
        let patterns: Vec<&str> = p.rules.iter().map(|r| r.pattern.as_str()).collect();
        assert_eq!(patterns, ["b/*", "a", "b/*"]);
        assert_eq!(p.rules[2].capabilities, caps(&[Delete, Patch]));
    }

    #[test]
    fn legacy_policy_shorthand_expands_like_vault() {
        let one = |p: &str| {
            parse("p", &format!("path \"x/*\" {{ policy = \"{p}\" }}"))
                .unwrap()
                .rules[0]
                .capabilities
                .clone()
        };
        assert_eq!(one("read"), caps(&[Read, List]));
        assert_eq!(one("write"), caps(&[Create, Read, Update, Delete, List]));
        assert_eq!(
            one("sudo"),
            caps(&[Create, Read, Update, Delete, List, Sudo])
        );
        assert_eq!(one("deny"), caps(&[Deny]));
        // Legacy policy adds to explicit capabilities.
        let p = parse(
            "p",
            r#"
path "x" {
  policy = "read"
  capabilities = ["patch"]
}"#,
        )
        .unwrap();
        assert_eq!(p.rules[0].capabilities, caps(&[Read, List, Patch]));
        let e = err(r#"path "x" { policy = "admin" }"#);
        assert!(
            e.contains("\"admin\"") && e.contains("read, write, deny or sudo"),
            "{e}"
        );
    }

    #[test]
    fn deny_in_a_block_keeps_only_deny() {
        let p = parse("p", r#"path "x" { capabilities = ["read", "deny"] }"#).unwrap();
        assert_eq!(p.rules[0].capabilities, caps(&[Deny]));
    }

    #[test]
    fn unknown_capability_is_named() {
        let e = err(r#"path "secret/x" { capabilities = ["read", "fly"] }"#);
        assert!(e.contains("\"fly\""), "{e}");
        assert!(e.contains("secret/x"), "{e}");
        assert!(e.contains("create, read"), "{e}");
        let e = err(r#"{"path": {"x": {"capabilities": ["root"]}}}"#);
        assert!(e.contains("\"root\""), "{e}");
    }

    #[test]
    fn globs_are_kept_as_vault_keeps_them() {
        // Only a final `*` is a glob; one elsewhere is a literal character,
        // and `+*` is refused (all as OpenBao 2.7 answers).
        let p = parse("p", r#"path "secret/*/foo" { capabilities = ["read"] }"#).unwrap();
        assert_eq!(p.rules[0].pattern, "secret/*/foo");
        let e = err(r#"path "secret/+*" { capabilities = ["read"] }"#);
        assert!(e.contains("'+*'"), "{e}");
        assert!(parse("p", r#"path "secret/+/foo*" { capabilities = ["read"] }"#).is_ok());
    }

    #[test]
    fn patterns_lose_one_leading_slash_and_nothing_else() {
        // Vault does not trim: " a " is a different path from "a".
        let p = parse("p", r#"path " /secret/foo " { capabilities = ["read"] }"#).unwrap();
        assert_eq!(p.rules[0].pattern, " /secret/foo ");
        let p = parse("p", r#"path "/secret/foo" { capabilities = ["read"] }"#).unwrap();
        assert_eq!(p.rules[0].pattern, "secret/foo");
        let p = parse("p", r#"{"path": {"/sys/*": {"policy": "read"}}}"#).unwrap();
        assert_eq!(p.rules[0].pattern, "sys/*");
        assert_eq!(
            parse("p", r#"path "" { capabilities = ["read"] }"#)
                .unwrap()
                .rules[0]
                .pattern,
            ""
        );
    }

    #[test]
    fn hcl1_layouts_vault_accepts() {
        // Each of these was refused by the HCL 2 parser pgsecrets used and
        // is accepted by OpenBao with the rules given.
        let same = |text: &str, expected: &[(&str, &[Capability])]| {
            let p = parse("p", text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let got: Vec<(String, BTreeSet<Capability>)> = p
                .rules
                .iter()
                .map(|r| (r.pattern.clone(), r.capabilities.clone()))
                .collect();
            let want: Vec<(String, BTreeSet<Capability>)> = expected
                .iter()
                .map(|(p, c)| (p.to_string(), caps(c)))
                .collect();
            assert_eq!(got, want, "{text}");
        };
        same(
            r#"path "a" { capabilities = ["read"] } path "b" { capabilities = ["list"] }"#,
            &[("a", &[Read]), ("b", &[List])],
        );
        same(
            "path \"a\" { capabilities = [\"read\"]\n}",
            &[("a", &[Read])],
        );
        same(
            "path \"a\" {\n capabilities = [\"read\"] }",
            &[("a", &[Read])],
        );
        same(
            "path \"a\" {\n capabilities = [\"read\"]\n capabilities = [\"list\"]\n}",
            &[("a", &[Read, List])],
        );
        same(
            r#"path "a" { capabilities = ["read"], policy = "write" }"#,
            &[("a", &[Create, Read, Update, Delete, List])],
        );
        same(
            r#"path "a" { policy = "read" policy = "deny" }"#,
            &[("a", &[Deny])],
        );
        same(
            r#"path "a" "b" { capabilities = ["read"] }"#,
            &[("a", &[Read])],
        );
        same(r#"path { capabilities = ["read"] }"#, &[("path", &[Read])]);
        same(
            r#"path = { capabilities = ["read"] }"#,
            &[("path", &[Read])],
        );
        same(
            r#""path" "a" { capabilities = ["read"] }"#,
            &[("a", &[Read])],
        );
        same(
            r#"path a { "capabilities" = ["read",,] }"#,
            &[("a", &[Read])],
        );
        same(r#"path "a" { capabilities = {} }"#, &[("a", &[])]);
        same(r#"path "a" { }"#, &[("a", &[])]);
        same(
            r#"path "a"{capabilities=["read"]},path"b"{capabilities=["list"]}"#,
            &[("a", &[Read]), ("b", &[List])],
        );
        same(
            "name = 3\npath \"a\" { capabilities = [\"read\"] comment = [1, {x = 2}] }",
            &[("a", &[Read])],
        );
        let p = parse(
            "p",
            r#"path "a" { capabilities = ["create"]
                 allowed_parameters = { "k" = ["a"] "j" = [] } allowed_parameters { k = ["b"] }
                 required_parameters = ["k"] required_parameters = ["j"]
                 max_wrapping_ttl = "-5s" }"#,
        )
        .unwrap();
        let parameters = &p.rules[0].parameters;
        assert_eq!(
            parameters.allowed["k"],
            vec![Value::from("a"), Value::from("b")]
        );
        assert!(parameters.allowed["j"].is_empty());
        assert_eq!(parameters.required, ["k", "j"]);
        assert_eq!(parameters.max_wrapping_ttl, -5);
    }

    #[test]
    fn malformed_documents_are_refused() {
        let e = err(r#"path "x" { capabilities = ["read"] "#);
        assert_eq!(
            e,
            "the policy is not valid HCL: At 1:36: object expected closing RBRACE got: EOF"
        );
        let e = err(r#"{"path": {"x": {"capabilities": ["read"]}"#);
        assert!(e.starts_with("the policy is not valid JSON:"), "{e}");
        let e = err(r#"path "x" { capabilites = ["read"] }"#);
        assert!(e.contains("\"capabilites\""), "{e}");
        let e = err(r#"path "x" { capabilities = "read" }"#);
        assert!(e.contains("list of strings"), "{e}");
        let e = err(r#"path "x" { capabilities = ["read" "list"] }"#);
        assert!(e.contains("expected comma or list end"), "{e}");
        assert!(err(r#"path "x" { capabilities = [read] }"#).contains("IDENT"));
        assert!(err(r#"paths "x" { capabilities = ["read"] }"#).contains("\"paths\""));
        assert!(err(r#"PATH "x" { capabilities = ["read"] }"#).contains("\"PATH\""));
        assert!(err(r#"path "x" = { capabilities = ["read"] }"#).contains("nested object"));
        assert!(err(r#"path "x" { capabilities = ["READ"] }"#).contains("\"READ\""));
        assert!(err(r#"path "x" { capabilities = ["read"] } name { x = 1 }"#).contains("name"));
        let e = err(r#"path "x" { capabilities = ["read"] mfa_methods = ["m"] }"#);
        assert!(
            e.contains("mfa_methods") && e.contains("does not have"),
            "{e}"
        );
        let e = err(
            r#"path "x" { capabilities = ["read"] max_wrapping_ttl = 1 min_wrapping_ttl = 2 }"#,
        );
        assert!(e.contains("max_wrapping_ttl"), "{e}");
        assert!(
            err(r#"path "x" { capabilities = ["read"] max_wrapping_ttl = true }"#)
                .contains("max_wrapping_ttl")
        );
    }

    #[test]
    fn vault_block_keys_are_parsed() {
        let p = parse(
            "p",
            r#"
path "secret/foo" {
  capabilities = ["create"]
  allowed_parameters = {
    "bar" = ["zip", "zap"]
    "*"   = []
  }
  denied_parameters = { "baz" = [] }
  required_parameters = ["bar"]
  min_wrapping_ttl = "1s"
  max_wrapping_ttl = 90
}
"#,
        )
        .unwrap();
        assert_eq!(p.rules[0].capabilities, caps(&[Create]));
        assert_eq!(p.rules[0].parameters.max_wrapping_ttl, 90);
        let e = err("path \"x\" {\n capabilities = []\n allowed_parameters = [\"a\"]\n}");
        assert!(e.contains("allowed_parameters"), "{e}");
    }

    #[test]
    fn empty_documents_and_empty_capability_lists_are_allowed() {
        assert!(parse("p", "").unwrap().rules.is_empty());
        assert!(parse("p", "# nothing\n").unwrap().rules.is_empty());
        assert!(parse("p", "{}").unwrap().rules.is_empty());
        let p = parse("p", r#"path "x" { capabilities = [] }"#).unwrap();
        assert!(p.rules[0].capabilities.is_empty());
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(normalize_name("  Admin "), "admin");
    }
}
