//! Statement templates in Vault's convention: `{{name}}`-style placeholders
//! substituted as they are, with the quotes written in the statement, so
//! roles written for Vault's PostgreSQL plugin work unchanged. Every value
//! substituted comes from an alphabet without quotes (generated names,
//! verifiers, timestamps, validated identifiers), so no value can break out
//! of the statement's quotes.

use std::collections::BTreeMap;

/// The placeholders statements may use.
pub const PLACEHOLDERS: &[&str] = &[
    "name",
    "username",
    "password",
    "expiration",
    "database",
    "objects_owner",
    "group",
];

/// A template problem, with what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder {{{{{0}}}}}: use one of name, username, password, expiration, database, objects_owner, group")]
    Unknown(String),
    #[error("unclosed placeholder: a '{{{{' without its '}}}}'")]
    Unclosed,
    #[error("statement is empty")]
    Empty,
}

/// The placeholders a statement uses, in order; fails on unknown ones.
pub fn parse(statement: &str) -> Result<Vec<String>, TemplateError> {
    if statement.trim().is_empty() {
        return Err(TemplateError::Empty);
    }
    let mut found = Vec::new();
    let mut rest = statement;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(TemplateError::Unclosed)?;
        let name = after[..end].trim();
        if !PLACEHOLDERS.contains(&name) {
            return Err(TemplateError::Unknown(name.to_string()));
        }
        found.push(name.to_string());
        rest = &after[end + 2..];
    }
    Ok(found)
}

/// Substitutes `values` (keys as in [`PLACEHOLDERS`]; `username` falls back
/// to `name`). The statement must have passed [`parse`].
pub fn render(statement: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(statement.len() + 64);
    let mut rest = statement;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = after[..end].trim();
        let key = if name == "username" { "name" } else { name };
        out.push_str(values.get(key).map(String::as_str).unwrap_or(""));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_plugin_statements_parse_and_render() {
        let s = r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{ username }}";"#;
        assert_eq!(
            parse(s).unwrap(),
            vec!["name", "password", "expiration", "username"]
        );
        let mut v = BTreeMap::new();
        v.insert("name", "v-ro-abc".to_string());
        v.insert("password", "SCRAM".to_string());
        v.insert("expiration", "2030-01-01 00:00:00+00".to_string());
        assert_eq!(
            render(s, &v),
            r#"CREATE ROLE "v-ro-abc" WITH LOGIN PASSWORD 'SCRAM' VALID UNTIL '2030-01-01 00:00:00+00'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO "v-ro-abc";"#
        );
    }

    #[test]
    fn unknown_and_unclosed_placeholders_are_named() {
        assert_eq!(
            parse("SELECT '{{nme}}'"),
            Err(TemplateError::Unknown("nme".into()))
        );
        assert!(parse("SELECT '{{nme}}'")
            .unwrap_err()
            .to_string()
            .contains("{{nme}}"));
        assert_eq!(parse("SELECT '{{name'"), Err(TemplateError::Unclosed));
        assert_eq!(parse("  "), Err(TemplateError::Empty));
    }
}
