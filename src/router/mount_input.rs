//! The mount settings a client sends, in Vault's shape: the `config`
//! object of `POST sys/mounts/<path>` and the body of `.../tune`. Vault's
//! CLI sends every key it knows, many as `null` or `""` ("not given"), TTLs
//! as Go durations (`"0s"`, `"1h0m0s"`) or numbers, lists as arrays or
//! comma-separated text; all of that is read here, once, for both routes.

use serde_json::{Map, Value};

use super::mounts::{MountConfig, MountEntry, MountSettings};
use crate::auth::token::SYSTEM_MAX_TTL;
use crate::logical::{duration, FieldData};
use crate::sys;
use crate::Error as AnyError;

const LIST_KEYS: [&str; 4] = MountSettings::LIST_KEYS;

/// Settings a request changes; `None` leaves one as it is.
#[derive(Debug, Default)]
pub struct MountInput {
    pub default_lease_ttl: Option<u64>,
    pub max_lease_ttl: Option<u64>,
    pub listing_visibility: Option<String>,
    /// `(key, new list)` for the keys of [`LIST_KEYS`] given.
    pub lists: Vec<(&'static str, Vec<String>)>,
    pub description: Option<String>,
    pub options: Option<std::collections::BTreeMap<String, String>>,
}

impl MountInput {
    /// A mount's `config` object. Keys pgsecrets has no use for
    /// (`force_no_cache`, `token_type`, `plugin_version`, ...) are accepted
    /// and ignored, as Vault ignores keys that do not apply to a mount.
    pub fn from_config(config: &Map<String, Value>) -> Result<MountInput, AnyError> {
        let mut input = MountInput::default();
        let text = |key: &str| -> Result<Option<String>, AnyError> {
            match config.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(_) => Err(unconvertible()),
            }
        };
        input.default_lease_ttl = ttl("default_lease_ttl", text("default_lease_ttl")?, false)?;
        input.max_lease_ttl = ttl("max_lease_ttl", text("max_lease_ttl")?, false)?;
        input.listing_visibility = visibility(text("listing_visibility")?)?;
        for key in LIST_KEYS {
            match config.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => input.lists.push((key, split(s))),
                Some(Value::Array(items)) => {
                    let items = items
                        .iter()
                        .map(|v| v.as_str().map(str::to_string).ok_or_else(unconvertible))
                        .collect::<Result<_, _>>()?;
                    input.lists.push((key, items));
                }
                Some(_) => return Err(unconvertible()),
            }
        }
        Ok(input)
    }

    /// The body of a tune request; `""` for a TTL means unchanged, as in
    /// Vault (its CLI sends `"max_lease_ttl": ""` when only the default is
    /// tuned).
    pub fn from_tune(fields: &FieldData) -> Result<MountInput, AnyError> {
        let lists = LIST_KEYS
            .into_iter()
            .filter(|key| fields.is_set(key))
            .map(|key| (key, fields.list(key).unwrap_or_default()))
            .collect();
        Ok(MountInput {
            default_lease_ttl: ttl("default_lease_ttl", fields.str("default_lease_ttl"), true)?,
            max_lease_ttl: ttl("max_lease_ttl", fields.str("max_lease_ttl"), true)?,
            listing_visibility: visibility(fields.str("listing_visibility"))?,
            lists,
            description: fields.str("description"),
            options: fields.map("options"),
        })
    }

    /// Applies the settings to `entry`, refusing a default TTL above the
    /// maximum; on an error `entry` is not to be used.
    pub fn apply(&self, entry: &mut MountEntry) -> Result<(), AnyError> {
        for (key, list) in &self.lists {
            if !key.starts_with("audit_non_hmac_") {
                continue;
            }
            if let Some(name) = list
                .iter()
                .find(|k| crate::audit::hash::NEVER_CLEAR.contains(&k.as_str()))
            {
                return Err(sys::Error::NeverClear {
                    key,
                    name: name.clone(),
                }
                .into());
            }
        }
        let config = MountConfig {
            default_lease_ttl: self
                .default_lease_ttl
                .unwrap_or(entry.config.default_lease_ttl),
            max_lease_ttl: self.max_lease_ttl.unwrap_or(entry.config.max_lease_ttl),
        };
        if config.default_lease_ttl > 0
            && config.max_lease_ttl > 0
            && config.default_lease_ttl > config.max_lease_ttl
        {
            return Err(sys::Error::InvalidTtl {
                field: "default_lease_ttl",
                reason: "it must not be greater than max_lease_ttl".into(),
            }
            .into());
        }
        entry.config = config;
        if let Some(v) = &self.listing_visibility {
            entry.settings.listing_visibility = v.clone();
        }
        for (key, list) in &self.lists {
            *entry
                .settings
                .list_mut(key)
                .expect("lists holds only LIST_KEYS") = list.clone();
        }
        if let Some(d) = &self.description {
            entry.description = d.clone();
        }
        if let Some(o) = &self.options {
            entry.options = Some(o.clone());
        }
        Ok(())
    }
}

/// The mount's settings as Vault shows them in `config`: the TTLs and
/// `force_no_cache` always, the others only when set.
pub fn config_json(entry: &MountEntry) -> Value {
    let mut config = Map::new();
    config.insert(
        "default_lease_ttl".into(),
        entry.config.default_lease_ttl.into(),
    );
    config.insert("max_lease_ttl".into(), entry.config.max_lease_ttl.into());
    config.insert("force_no_cache".into(), false.into());
    let s = &entry.settings;
    if !s.listing_visibility.is_empty() {
        config.insert(
            "listing_visibility".into(),
            s.listing_visibility.clone().into(),
        );
    }
    for (key, list) in s.lists() {
        if !list.is_empty() {
            config.insert(key.into(), list.clone().into());
        }
    }
    Value::Object(config)
}

fn unconvertible() -> AnyError {
    sys::Error::MountConfig.into()
}

fn split(text: &str) -> Vec<String> {
    text.split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn visibility(value: Option<String>) -> Result<Option<String>, AnyError> {
    match value.as_deref() {
        None => Ok(None),
        Some("" | "unauth" | "hidden") => Ok(value),
        Some(other) => Err(sys::Error::ListingVisibility(other.to_string()).into()),
    }
}

/// A TTL setting: `"system"` or `"0s"` is 0 (the system's); an empty value
/// is 0 when enabling and "unchanged" when tuning.
fn ttl(field: &'static str, value: Option<String>, tuning: bool) -> Result<Option<u64>, AnyError> {
    let Some(value) = value else { return Ok(None) };
    if value.is_empty() {
        return Ok(if tuning { None } else { Some(0) });
    }
    if value == "system" {
        return Ok(Some(0));
    }
    let seconds = duration::parse_seconds(&value).map_err(|reason| sys::Error::InvalidTtl {
        field,
        reason: format!("{value:?}: {reason}"),
    })?;
    if seconds < 0.0 {
        return Err(sys::Error::InvalidTtl {
            field,
            reason: format!("cannot provide negative value '{value}'"),
        }
        .into());
    }
    let seconds = seconds as u64;
    if seconds > SYSTEM_MAX_TTL {
        return Err(sys::Error::InvalidTtl {
            field,
            reason: format!(
                "{value:?} is greater than the system maximum of {}",
                duration::format_go(SYSTEM_MAX_TTL)
            ),
        }
        .into());
    }
    Ok(Some(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(value: Value) -> Result<MountInput, String> {
        MountInput::from_config(value.as_object().unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_cli_shape_is_accepted() {
        // What `bao secrets enable` sends.
        let input = config(json!({"options": null, "default_lease_ttl": "0s",
            "max_lease_ttl": "0s", "force_no_cache": false}))
        .unwrap();
        assert_eq!(
            (input.default_lease_ttl, input.max_lease_ttl),
            (Some(0), Some(0))
        );
        let input = config(json!({"default_lease_ttl": 3600, "max_lease_ttl": "2h",
            "listing_visibility": "unauth", "audit_non_hmac_request_keys": "a, b",
            "passthrough_request_headers": ["X-A"], "bogus": 1}))
        .unwrap();
        let mut entry = MountEntry::new("db/", "database", "");
        input.apply(&mut entry).unwrap();
        assert_eq!(entry.config.default_lease_ttl, 3600);
        assert_eq!(entry.config.max_lease_ttl, 7200);
        assert_eq!(
            config_json(&entry),
            json!({"default_lease_ttl": 3600, "max_lease_ttl": 7200, "force_no_cache": false,
                "listing_visibility": "unauth", "audit_non_hmac_request_keys": ["a", "b"],
                "passthrough_request_headers": ["X-A"]})
        );
    }

    #[test]
    fn wrong_values_are_refused_with_vaults_words() {
        assert!(config(json!({"listing_visibility": "bogus"}))
            .unwrap_err()
            .contains("invalid listing_visibility bogus"));
        assert!(config(json!({"default_lease_ttl": true}))
            .unwrap_err()
            .contains("unable to convert"));
        assert!(config(json!({"max_lease_ttl": "-1h"}))
            .unwrap_err()
            .contains("negative"));
        let mut entry = MountEntry::new("db/", "database", "");
        let input = config(json!({"default_lease_ttl": "2h", "max_lease_ttl": "1h"})).unwrap();
        assert!(input.apply(&mut entry).is_err());
    }
}
