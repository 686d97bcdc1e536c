//! Stored ACL policies, with the built-in `root` and `default` policies.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use super::policy::{self, Policy};
use super::{Acl, Error};
use crate::storage::Storage;

/// Every token gets this unless created with `no_default_policy`: what any
/// Vault client needs to check and keep its own token and leases alive.
pub const DEFAULT_POLICY: &str = r#"# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

# Allow tokens to renew and revoke themselves
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/revoke-self" {
  capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
  capabilities = ["update"]
}

# Allow a token to renew and look up leases it holds
path "sys/leases/renew" {
  capabilities = ["update"]
}
path "sys/leases/lookup" {
  capabilities = ["update"]
}
path "sys/renew" {
  capabilities = ["update"]
}
"#;

#[derive(Serialize, Deserialize)]
struct StoredPolicy {
    name: String,
    text: String,
}

/// Compiled ACLs kept at most (distinct policy sets of tokens in use).
const ACL_CACHE_ENTRIES: usize = 1024;

/// A policy's storage key. `%` and `/` in the name are escaped so that a
/// name such as `team/app` stays one key under `sys/policy/` (listing sees
/// it, not a folder `team/`); names of earlier versions held neither, so
/// their keys are unchanged.
fn key(name: &str) -> String {
    format!(
        "sys/policy/{}",
        name.replace('%', "%25").replace('/', "%2F")
    )
}

fn name_of_key(key: &str) -> String {
    key.replace("%2F", "/").replace("%25", "%")
}

/// ACLs already compiled, by the token's policy names as given, with a
/// generation bumped whenever a policy changes.
#[derive(Default)]
struct AclCache {
    generation: u64,
    compiled: HashMap<Vec<String>, Arc<Acl>>,
}

/// Policies by name, parsed once and cached.
#[derive(Clone)]
pub struct PolicyStore {
    storage: Storage,
    cache: Arc<RwLock<HashMap<String, Arc<Policy>>>>,
    /// Every authenticated request needs its token's ACL, and tokens share
    /// a few policy sets: compiling one per request (cloning its policies'
    /// rules into fresh maps) was a visible part of each request's work.
    /// Emptied whenever a policy is written or deleted.
    acls: Arc<RwLock<AclCache>>,
}

impl PolicyStore {
    pub fn new(storage: Storage) -> PolicyStore {
        PolicyStore {
            storage,
            cache: Arc::default(),
            acls: Arc::default(),
        }
    }

    /// Writes the default policy on first start.
    pub async fn bootstrap(&self) -> Result<(), Error> {
        if self.get("default").await?.is_none() {
            self.put("default", DEFAULT_POLICY).await?;
        }
        Ok(())
    }

    /// Checks a policy name, returning its normalised form: trimmed,
    /// lowercased and without trailing slashes (`GET sys/policies/acl/p/`
    /// reads `p`). Any other character is allowed, spaces and `/`
    /// included, as in Vault (control characters never reach here: the
    /// HTTP layer refuses them in paths).
    pub fn check_name(name: &str) -> Result<String, Error> {
        let name = policy::normalize_name(name.trim_end_matches('/'));
        if name.is_empty() {
            return Err(Error::EmptyPolicyName);
        }
        if name.chars().any(char::is_control) {
            return Err(Error::InvalidPolicyName { name });
        }
        Ok(name)
    }

    pub async fn get(&self, name: &str) -> Result<Option<Arc<Policy>>, Error> {
        let name = policy::normalize_name(name.trim_end_matches('/'));
        if let Some(p) = self.cache.read().expect("policy cache").get(&name) {
            return Ok(Some(Arc::clone(p)));
        }
        let Some(stored) = self.storage.get_json::<StoredPolicy>(&key(&name)).await? else {
            return Ok(None);
        };
        let parsed = Arc::new(policy::parse(&stored.name, &stored.text)?);
        self.cache
            .write()
            .expect("policy cache")
            .insert(name, Arc::clone(&parsed));
        Ok(Some(parsed))
    }

    /// Validates and stores a policy; `root` cannot be written.
    pub async fn put(&self, name: &str, text: &str) -> Result<(), Error> {
        let name = Self::check_name(name)?;
        if name == "root" {
            return Err(Error::CannotUpdateRoot);
        }
        let parsed = Arc::new(policy::parse(&name, text)?);
        self.storage
            .put_json(
                &key(&name),
                &StoredPolicy {
                    name: name.clone(),
                    text: text.to_string(),
                },
            )
            .await?;
        self.cache
            .write()
            .expect("policy cache")
            .insert(name, parsed);
        self.forget_acls();
        Ok(())
    }

    pub async fn delete(&self, name: &str) -> Result<(), Error> {
        let name = Self::check_name(name)?;
        match name.as_str() {
            "root" => return Err(Error::CannotDeleteRoot),
            "default" => return Err(Error::CannotDeleteDefault),
            _ => {}
        }
        self.storage.delete(&key(&name)).await?;
        self.cache.write().expect("policy cache").remove(&name);
        self.forget_acls();
        Ok(())
    }

    /// Stored policy names, sorted (without `root`).
    pub async fn list(&self) -> Result<Vec<String>, Error> {
        let mut names: Vec<String> = self
            .storage
            .list("sys/policy/")
            .await?
            .iter()
            .map(|k| name_of_key(k))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The ACL for a token's policies; `root` grants everything. Unknown
    /// policy names are skipped, as in Vault (a policy may be written later).
    pub async fn acl(&self, names: &[String]) -> Result<Arc<Acl>, Error> {
        if names.iter().any(|n| n == "root") {
            return Ok(Arc::new(Acl::root()));
        }
        let generation = {
            let acls = self.acls.read().expect("acl cache");
            if let Some(acl) = acls.compiled.get(names) {
                return Ok(Arc::clone(acl));
            }
            acls.generation
        };
        let mut policies = Vec::with_capacity(names.len());
        for name in names {
            if let Some(p) = self.get(name).await? {
                policies.push((*p).clone());
            }
        }
        let acl = Arc::new(Acl::new(&policies));
        let mut acls = self.acls.write().expect("acl cache");
        // A policy written while this one was compiled may not be in it:
        // such an ACL serves this request only.
        if acls.generation == generation {
            // Bounded: token policy sets are few, but names are the caller's.
            if acls.compiled.len() >= ACL_CACHE_ENTRIES {
                acls.compiled.clear();
            }
            acls.compiled.insert(names.to_vec(), Arc::clone(&acl));
        }
        Ok(acl)
    }

    /// Drops every compiled ACL: a policy they were built from changed.
    fn forget_acls(&self) {
        let mut acls = self.acls.write().expect("acl cache");
        acls.generation += 1;
        acls.compiled.clear();
    }
}
