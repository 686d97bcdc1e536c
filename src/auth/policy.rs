//! Parsing Vault ACL policy documents (HCL or JSON). No storage here.

use std::collections::BTreeSet;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A capability a policy grants on a path.
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

impl FromStr for Capability {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "create" => Capability::Create,
            "read" => Capability::Read,
            "update" => Capability::Update,
            "delete" => Capability::Delete,
            "list" => Capability::List,
            "sudo" => Capability::Sudo,
            "deny" => Capability::Deny,
            "patch" => Capability::Patch,
            _ => return Err(ParseError::UnknownCapability(s.to_string())),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PathRule {
    pub pattern: String,
    pub capabilities: BTreeSet<Capability>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub text: String,
    pub rules: Vec<PathRule>,
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("invalid policy syntax: {0}")]
    Syntax(String),
    #[error(
        "unknown capability {0:?}: use create, read, update, delete, list, patch, sudo or deny"
    )]
    UnknownCapability(String),
    #[error("unknown policy {0:?}: use read, write, deny or sudo")]
    UnknownShorthand(String),
    #[error("path {0:?} gives neither capabilities nor policy")]
    NoCapabilities(String),
    #[error("path {0:?}: '*' is only allowed at the end of a path")]
    MisplacedGlob(String),
}

#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    path: indexmap_free::PathMap,
}

/// serde helpers: HCL `path "x" { ... }` blocks and JSON `{"path": {"x": {...}}}`
/// both deserialise to a map of pattern to block.
mod indexmap_free {
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Deserialize, Default)]
    pub struct Block {
        pub capabilities: Option<Vec<String>>,
        pub policy: Option<String>,
    }

    #[derive(Deserialize, Default)]
    #[serde(transparent)]
    pub struct PathMap(pub BTreeMap<String, OneOrMany>);

    /// HCL may repeat a block for the same path.
    #[derive(Deserialize)]
    #[serde(untagged)]
    pub enum OneOrMany {
        One(Block),
        Many(Vec<Block>),
    }
}

/// Policy names are case-insensitive and trimmed.
pub fn normalize_name(name: &str) -> String {
    name.trim().to_lowercase()
}

fn shorthand(policy: &str) -> Result<Vec<Capability>, ParseError> {
    use Capability::*;
    Ok(match policy.trim().to_ascii_lowercase().as_str() {
        "deny" => vec![Deny],
        "read" => vec![Read, List],
        "write" => vec![Create, Read, Update, Delete, List],
        "sudo" => vec![Create, Read, Update, Delete, List, Sudo],
        other => return Err(ParseError::UnknownShorthand(other.to_string())),
    })
}

/// Parses a policy in Vault's HCL or JSON form.
pub fn parse(name: &str, text: &str) -> Result<Policy, ParseError> {
    let document: Document = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| ParseError::Syntax(e.to_string()))?
    } else {
        hcl::from_str(text).map_err(|e| ParseError::Syntax(e.to_string()))?
    };
    let mut rules = Vec::new();
    for (pattern, blocks) in document.path.0 {
        let blocks = match blocks {
            indexmap_free::OneOrMany::One(b) => vec![b],
            indexmap_free::OneOrMany::Many(v) => v,
        };
        let pattern = pattern.trim().trim_start_matches('/').to_string();
        if pattern.find('*').is_some_and(|i| i != pattern.len() - 1) {
            return Err(ParseError::MisplacedGlob(pattern));
        }
        let mut capabilities = BTreeSet::new();
        for block in blocks {
            if block.capabilities.is_none() && block.policy.is_none() {
                return Err(ParseError::NoCapabilities(pattern));
            }
            for c in block.capabilities.unwrap_or_default() {
                capabilities.insert(c.parse::<Capability>()?);
            }
            if let Some(p) = block.policy {
                capabilities.extend(shorthand(&p)?);
            }
        }
        rules.push(PathRule {
            pattern,
            capabilities,
        });
    }
    Ok(Policy {
        name: normalize_name(name),
        text: text.to_string(),
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl_and_json_forms_are_equivalent() {
        let hcl = parse(
            "a",
            r#"path "database/creds/*" { capabilities = ["read", "list"] }
path "sys/leases/+/x" {
  capabilities = ["update"]
}"#,
        )
        .unwrap();
        let json = parse("a", r#"{"path": {"database/creds/*": {"capabilities": ["read", "list"]}, "sys/leases/+/x": {"capabilities": ["update"]}}}"#).unwrap();
        assert_eq!(hcl.rules, json.rules);
        assert_eq!(hcl.rules.len(), 2);
    }

    #[test]
    fn legacy_policy_shorthand_expands() {
        let p = parse("a", r#"path "x/*" { policy = "write" }"#).unwrap();
        assert!(p.rules[0].capabilities.contains(&Capability::Delete));
        assert!(!p.rules[0].capabilities.contains(&Capability::Sudo));
    }

    #[test]
    fn mistakes_are_named() {
        let e = parse("a", r#"path "x" { capabilities = ["fly"] }"#).unwrap_err();
        assert!(e.to_string().contains("\"fly\""), "{e}");
        let e = parse("a", r#"path "a/*/b" { capabilities = ["read"] }"#).unwrap_err();
        assert!(e.to_string().contains("only allowed at the end"), "{e}");
        assert!(parse("a", r#"path "x" {"#).is_err());
        assert!(parse("a", r#"path "x" { }"#).is_err());
        assert!(parse("a", "").unwrap().rules.is_empty());
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(normalize_name("  Admin "), "admin");
    }
}
