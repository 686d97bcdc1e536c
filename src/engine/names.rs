//! Checks on names that become PostgreSQL identifiers.
//!
//! Route patterns already restrict captures to Vault's name alphabet
//! (ASCII letters, digits, `_`, `-`, `.`), which holds no quote; this adds
//! PostgreSQL's 63-byte identifier limit so no name is silently truncated.

use super::Error;

/// PostgreSQL's NAMEDATALEN - 1.
pub const MAX_IDENTIFIER: usize = 63;

pub fn check_identifier(field: &'static str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::InvalidField {
            field,
            reason: "must not be empty".into(),
        });
    }
    if value.len() > MAX_IDENTIFIER {
        return Err(Error::InvalidField {
            field,
            reason: format!(
                "{value:?} is {} bytes; PostgreSQL identifiers hold at most {MAX_IDENTIFIER}",
                value.len()
            ),
        });
    }
    let ok = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        return Err(Error::InvalidField {
            field,
            reason: format!("{value:?} may only hold ASCII letters, digits, '_', '-' and '.'"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_or_hostile_names_are_refused() {
        assert!(check_identifier("n", "app-db.v2").is_ok());
        assert!(check_identifier("n", &"a".repeat(63)).is_ok());
        assert!(check_identifier("n", &"a".repeat(64)).is_err());
        assert!(check_identifier("n", "a\"b").is_err());
        assert!(check_identifier("n", "a;b").is_err());
        assert!(check_identifier("n", "é").is_err());
        assert!(check_identifier("n", "").is_err());
    }
}
