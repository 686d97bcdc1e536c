//! Service tokens: creation, lookup, renewal, revocation.
//!
//! A token is stored under `auth/token/id/<sha256(token)>`, so the storage
//! never holds a usable token. Tokens carry ~190 random bits, which is why a
//! plain (unsalted) hash is enough. An accessor index and a parent index let
//! a token be found without its value and revoke its children with it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use ring::digest;
use serde::{Deserialize, Serialize};

use super::{token_ttl, Error};
use crate::logical::Clock;
use crate::random;
use crate::storage::{Op, Storage};

/// Vault's system maximum TTL (768h), the default and cap for tokens.
pub const SYSTEM_MAX_TTL: u64 = 768 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenEntry {
    pub id_hash: String,
    pub accessor: String,
    pub policies: Vec<String>,
    pub meta: Option<BTreeMap<String, String>>,
    pub display_name: String,
    /// Uses left; 0 = unlimited.
    pub num_uses: i64,
    pub creation_time: i64,
    pub creation_ttl: u64,
    /// Unix seconds; `None` never expires (root).
    pub expire_time: Option<i64>,
    pub explicit_max_ttl: u64,
    pub period: u64,
    pub renewable: bool,
    pub orphan: bool,
    pub parent_hash: Option<String>,
    pub path: String,
    pub last_renewal: Option<i64>,
    /// The TTL the last renewal granted (0: none yet, `creation_ttl`
    /// stands): a renewal without `increment` grants it again, as Vault.
    #[serde(default)]
    pub last_ttl: u64,
}

impl TokenEntry {
    pub fn is_root(&self) -> bool {
        self.policies.iter().any(|p| p == "root")
    }

    pub fn is_expired(&self, now: i64) -> bool {
        matches!(self.expire_time, Some(t) if t <= now)
    }

    /// Seconds left, clamped at zero (Vault clients parse it as unsigned).
    pub fn ttl(&self, now: i64) -> u64 {
        self.expire_time
            .map(|t| u64::try_from(t - now).unwrap_or(0))
            .unwrap_or(0)
    }
}

/// What `auth/token/create` asks for, after field parsing.
#[derive(Debug, Clone, Default)]
pub struct NewToken {
    pub id: Option<String>,
    pub policies: Vec<String>,
    pub meta: Option<BTreeMap<String, String>>,
    pub display_name: String,
    pub num_uses: i64,
    pub ttl: Option<u64>,
    pub explicit_max_ttl: u64,
    pub period: u64,
    pub renewable: bool,
    pub no_parent: bool,
    pub no_default_policy: bool,
    /// The creator holds root or sudo on the create path: it may choose
    /// the id, a period, `no_parent` and policies it does not hold.
    pub sudo: bool,
    /// An orphan by the route (`create-orphan`), which needs no sudo;
    /// `no_parent` does.
    pub orphan: bool,
}

/// A token just created: its value (shown once), its entry, and the
/// warnings Vault would send with it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub entry: TokenEntry,
    pub warnings: Vec<String>,
}

/// The new token's policies, as Vault chooses them: the parent's when none
/// are asked; otherwise a subset of the parent's unless the creator has
/// sudo. `default` is added when the creator has sudo, or the parent has
/// it, and never when `no_default_policy` is set (even if named).
fn child_policies(
    parent: Option<&TokenEntry>,
    request: &NewToken,
    sudo: bool,
) -> Result<Vec<String>, Error> {
    let mut policies: Vec<String> = request
        .policies
        .iter()
        .map(|p| super::policy::normalize_name(p))
        .filter(|p| !p.is_empty())
        .collect();
    policies.sort();
    policies.dedup();
    let parent_policies = parent.map(|p| p.policies.clone()).unwrap_or_default();
    let parent_has_default = parent_policies.iter().any(|p| p == "default");
    let add_default = if policies.is_empty() {
        policies = parent_policies.clone();
        parent_has_default
    } else if !sudo {
        if !policies.iter().all(|p| parent_policies.contains(p)) {
            return Err(Error::PoliciesNotSubset);
        }
        parent_has_default
    } else {
        true
    };
    let is_root = policies.iter().any(|p| p == "root");
    if add_default && !is_root && !policies.iter().any(|p| p == "default") {
        policies.push("default".into());
    }
    if request.no_default_policy {
        policies.retain(|p| p != "default");
    }
    policies.sort();
    if is_root && parent.is_some_and(|p| !p.is_root()) {
        return Err(Error::RootPolicyNeedsRoot);
    }
    Ok(policies)
}

pub fn hash(token: &str) -> String {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn id_key(hash: &str) -> String {
    format!("auth/token/id/{hash}")
}
fn accessor_key(accessor: &str) -> String {
    format!("auth/token/accessor/{accessor}")
}
fn child_key(parent: &str, child: &str) -> String {
    format!("auth/token/parent/{parent}/{child}")
}
const EXPIRY: &str = "auth/token/expiry/";
fn expiry_key(at: i64, hash: &str) -> String {
    format!("{EXPIRY}{:020}/{hash}", at.max(0))
}

/// Called with the hash of every token about to be revoked, and awaited
/// before the token goes: its leases are then durably marked for
/// revocation, so neither a renewal after the answer nor a crash before
/// their revocation finishes can keep them.
pub type RevokeHook =
    Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

#[derive(Clone)]
pub struct TokenStore {
    storage: Storage,
    on_revoke: Arc<RwLock<Option<RevokeHook>>>,
    /// Held while a limited-use token's count is read and written back, so
    /// concurrent requests cannot spend the same use twice.
    uses: Arc<tokio::sync::Mutex<()>>,
    /// The time tokens are created, renewed and expired by.
    pub clock: Clock,
}

/// `num_uses` of a token whose last use has been taken by a request still
/// running (Vault marks such a token the same way); it allows no more.
const LAST_USE_TAKEN: i64 = -1;

impl TokenStore {
    pub fn new(storage: Storage) -> TokenStore {
        TokenStore::with_clock(storage, Clock::default())
    }

    /// A store reading `clock` (tests advance it instead of sleeping).
    pub fn with_clock(storage: Storage, clock: Clock) -> TokenStore {
        TokenStore {
            storage,
            on_revoke: Arc::default(),
            uses: Arc::default(),
            clock,
        }
    }

    /// Sets what happens to a token's leases when it is revoked or expires.
    pub fn on_revoke(&self, hook: RevokeHook) {
        *self.on_revoke.write().expect("revoke hook") = Some(hook);
    }

    /// Revokes tokens whose expiry is at or before `now`; returns how many.
    pub async fn sweep_expired(&self, now: i64) -> Result<usize, Error> {
        let end = format!("{EXPIRY}{:020}0", now.max(0));
        let due = self.storage.scan(EXPIRY, &end, 256).await?;
        let mut count = 0;
        for (key, _) in due {
            let hash = key.rsplit('/').next().unwrap_or_default().to_string();
            match self.storage.get_json::<TokenEntry>(&id_key(&hash)).await? {
                Some(entry) if entry.is_expired(now) => {
                    self.revoke(&entry).await?;
                    count += 1;
                }
                // Renewed since (a newer index entry exists) or already gone.
                _ => self.storage.delete(&key).await?,
            }
        }
        Ok(count)
    }

    /// Creates the root token at initialisation (`id` lets dev mode fix it).
    pub async fn create_root(&self, id: Option<String>) -> Result<String, Error> {
        let request = NewToken {
            id,
            policies: vec!["root".into()],
            display_name: "root".into(),
            no_default_policy: true,
            no_parent: true,
            ..NewToken::default()
        };
        Ok(self.create(None, request).await?.token)
    }

    /// Creates a token as a child of `parent` (or an orphan when `parent` is
    /// `None` or `no_parent` is asked by a root token).
    ///
    /// The checks follow Vault's `handleCreateCommon`, in its order: what a
    /// creator may ask for depends on `request.sudo` (root, or sudo on the
    /// create path), not on the parent's policies alone.
    pub async fn create(
        &self,
        parent: Option<&TokenEntry>,
        request: NewToken,
    ) -> Result<Issued, Error> {
        let now = self.clock.now();
        // No parent: the store itself creates the root token.
        let sudo = request.sudo || parent.is_none();
        // A child would multiply a limited token's uses (Vault refuses too).
        if parent.is_some_and(|p| p.num_uses != 0) {
            return Err(Error::RestrictedUseParent);
        }
        if request.num_uses < 0 {
            return Err(Error::NegativeUses);
        }
        if request.id.is_some() && !sudo {
            return Err(Error::SudoRequired("specify token id"));
        }
        let policies = child_policies(parent, &request, sudo)?;
        if request.no_parent && !sudo {
            return Err(Error::SudoRequired("create orphan token"));
        }
        if request.period > 0 && !sudo {
            return Err(Error::SudoRequired("create periodic token"));
        }
        let token = match request.id {
            Some(id) => {
                if id.contains('.') {
                    return Err(Error::TokenIdHasPeriod);
                }
                if id.chars().any(char::is_whitespace) {
                    return Err(Error::BadTokenId);
                }
                id
            }
            None => format!("pgs.{}", random::alphanumeric(32)),
        };
        let id_hash = hash(&token);
        if self.storage.get(&id_key(&id_hash)).await?.is_some() {
            return Err(Error::TokenIdInUse);
        }
        let is_root = policies.iter().any(|p| p == "root");
        let wanted = request.ttl.unwrap_or(0);
        // Root tokens asking for no TTL and no period never expire, as in
        // Vault; every other token gets a TTL, capped and warned about.
        let mut granted = if is_root && wanted == 0 && request.period == 0 {
            token_ttl::Granted {
                ttl: 0,
                warnings: Vec::new(),
            }
        } else {
            token_ttl::calculate(
                wanted,
                SYSTEM_MAX_TTL,
                request.period,
                request.explicit_max_ttl,
                SYSTEM_MAX_TTL,
                now,
                now,
            )
        };
        // ... but even root tokens are bound by an explicit maximum.
        if granted.ttl == 0 && request.explicit_max_ttl > 0 {
            granted.ttl = request.explicit_max_ttl.min(SYSTEM_MAX_TTL);
        }
        let ttl = granted.ttl;
        let expires = ttl > 0;
        let orphan = parent.is_none() || request.no_parent || request.orphan;
        let entry = TokenEntry {
            id_hash: id_hash.clone(),
            accessor: random::alphanumeric(24),
            policies,
            meta: request.meta,
            display_name: if request.display_name.is_empty() {
                "token".into()
            } else {
                format!("token-{}", request.display_name)
            },
            num_uses: request.num_uses,
            creation_time: now,
            creation_ttl: if expires { ttl } else { 0 },
            expire_time: expires.then(|| now + ttl as i64),
            explicit_max_ttl: request.explicit_max_ttl,
            period: request.period,
            renewable: request.renewable && expires,
            orphan,
            parent_hash: if orphan {
                None
            } else {
                parent.map(|p| p.id_hash.clone())
            },
            path: "auth/token/create".into(),
            last_renewal: None,
            last_ttl: 0,
        };
        let mut ops = vec![
            Op::Put {
                key: id_key(&id_hash),
                value: serde_json::to_vec(&entry).expect("token entry serialises"),
            },
            Op::Put {
                key: accessor_key(&entry.accessor),
                value: id_hash.clone().into_bytes(),
            },
        ];
        if let Some(parent_hash) = &entry.parent_hash {
            ops.push(Op::Put {
                key: child_key(parent_hash, &id_hash),
                value: Vec::new(),
            });
        }
        if let Some(at) = entry.expire_time {
            ops.push(Op::put(expiry_key(at, &id_hash), Vec::new()));
        }
        self.storage.apply(ops).await?;
        Ok(Issued {
            token,
            entry,
            warnings: granted.warnings,
        })
    }

    /// The live entry of a token value; expired tokens are revoked on sight.
    pub async fn lookup(&self, token: &str) -> Result<Option<TokenEntry>, Error> {
        self.lookup_hash(&hash(token)).await
    }

    pub async fn lookup_hash(&self, id_hash: &str) -> Result<Option<TokenEntry>, Error> {
        let Some(entry) = self
            .storage
            .get_json::<TokenEntry>(&id_key(id_hash))
            .await?
        else {
            return Ok(None);
        };
        if entry.is_expired(self.clock.now()) {
            self.revoke(&entry).await?;
            return Ok(None);
        }
        Ok(Some(entry))
    }

    pub async fn lookup_accessor(&self, accessor: &str) -> Result<Option<TokenEntry>, Error> {
        match self.storage.get(&accessor_key(accessor)).await? {
            Some(hash) => self.lookup_hash(&String::from_utf8_lossy(&hash)).await,
            None => Ok(None),
        }
    }

    /// Spends one use of a limited-use token before its request runs (the
    /// ACL check included, as in Vault: a refused request uses it up too).
    /// Returns `None` when no use is left, otherwise whether this was the
    /// last one: the caller then revokes the token once the request is done
    /// ([`TokenStore::revoke`]).
    ///
    /// The count is read again and written back under one lock: two
    /// requests with the same token cannot both spend its last use.
    pub async fn spend_use(&self, entry: &TokenEntry) -> Result<Option<bool>, Error> {
        // 0 (unlimited) never changes, so it needs no lock.
        if entry.num_uses == 0 {
            return Ok(Some(false));
        }
        let _spending = self.uses.lock().await;
        let Some(mut current) = self
            .storage
            .get_json::<TokenEntry>(&id_key(&entry.id_hash))
            .await?
        else {
            return Ok(None);
        };
        let last = match current.num_uses {
            n if n <= 0 => return Ok(None),
            1 => {
                current.num_uses = LAST_USE_TAKEN;
                true
            }
            _ => {
                current.num_uses -= 1;
                false
            }
        };
        self.storage
            .put_json(&id_key(&entry.id_hash), &current)
            .await?;
        Ok(Some(last))
    }

    /// Extends a token from now by `increment` (or the TTL its last renewal
    /// or its creation granted), capped by its maximum from creation time;
    /// a periodic token gets its period whatever is asked. Returns the
    /// renewed entry and the warnings about capping.
    pub async fn renew(
        &self,
        entry: &TokenEntry,
        increment: u64,
    ) -> Result<(TokenEntry, Vec<String>), Error> {
        if !entry.renewable || entry.expire_time.is_none() {
            return Err(Error::NotRenewable);
        }
        let now = self.clock.now();
        let last = match entry.last_ttl {
            0 => entry.creation_ttl,
            t => t,
        };
        let granted = token_ttl::calculate(
            increment,
            last,
            entry.period,
            entry.explicit_max_ttl,
            SYSTEM_MAX_TTL,
            entry.creation_time,
            now,
        );
        let mut updated = entry.clone();
        let expire = now + granted.ttl as i64;
        updated.expire_time = Some(expire);
        updated.last_renewal = Some(now);
        updated.last_ttl = granted.ttl;
        let mut ops = vec![
            Op::put(
                id_key(&entry.id_hash),
                serde_json::to_vec(&updated).expect("token entry serialises"),
            ),
            Op::put(expiry_key(expire, &entry.id_hash), Vec::new()),
        ];
        if let Some(old) = entry.expire_time.filter(|old| *old != expire) {
            ops.push(Op::delete(expiry_key(old, &entry.id_hash)));
        }
        self.storage.apply(ops).await?;
        Ok((updated, granted.warnings))
    }

    /// Every live token's accessor (`LIST auth/token/accessors`).
    pub async fn accessors(&self) -> Result<Vec<String>, Error> {
        Ok(self.storage.list("auth/token/accessor/").await?)
    }

    /// Removes accessor and parent index entries that point at no token
    /// (`auth/token/tidy`); returns how many.
    pub async fn tidy(&self) -> Result<usize, Error> {
        let mut removed = 0;
        for accessor in self.storage.list("auth/token/accessor/").await? {
            let key = accessor_key(&accessor);
            let Some(target) = self.storage.get(&key).await? else {
                continue;
            };
            let target = String::from_utf8_lossy(&target).into_owned();
            if self.storage.get(&id_key(&target)).await?.is_none() {
                self.storage.delete(&key).await?;
                removed += 1;
            }
        }
        for parent in self.storage.list("auth/token/parent/").await? {
            let parent = parent.trim_end_matches('/');
            for child in self
                .storage
                .list(&format!("auth/token/parent/{parent}/"))
                .await?
            {
                if self.storage.get(&id_key(&child)).await?.is_none() {
                    self.storage.delete(&child_key(parent, &child)).await?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Revokes a token but not its children: they become orphans first.
    pub async fn revoke_orphan(&self, entry: &TokenEntry) -> Result<(), Error> {
        let prefix = format!("auth/token/parent/{}/", entry.id_hash);
        for child in self.storage.list(&prefix).await? {
            let mut ops = vec![Op::delete(format!("{prefix}{child}"))];
            if let Some(mut child_entry) =
                self.storage.get_json::<TokenEntry>(&id_key(&child)).await?
            {
                child_entry.orphan = true;
                child_entry.parent_hash = None;
                ops.push(Op::put(
                    id_key(&child),
                    serde_json::to_vec(&child_entry).expect("token entry serialises"),
                ));
            }
            self.storage.apply(ops).await?;
        }
        self.revoke(entry).await
    }

    /// Revokes a token and, unless they are orphans, its children.
    pub async fn revoke(&self, entry: &TokenEntry) -> Result<(), Error> {
        let mut pending = vec![entry.clone()];
        while let Some(token) = pending.pop() {
            // Its leases first: if this fails, the token is left whole.
            let hook = self.on_revoke.read().expect("revoke hook").clone();
            if let Some(hook) = hook {
                hook(token.id_hash.clone())
                    .await
                    .map_err(Error::RevokeLeases)?;
            }
            let prefix = format!("auth/token/parent/{}/", token.id_hash);
            for child in self.storage.list(&prefix).await? {
                if let Some(child_entry) =
                    self.storage.get_json::<TokenEntry>(&id_key(&child)).await?
                {
                    pending.push(child_entry);
                }
                self.storage.delete(&format!("{prefix}{child}")).await?;
            }
            let mut ops = vec![
                Op::Delete {
                    key: id_key(&token.id_hash),
                },
                Op::Delete {
                    key: accessor_key(&token.accessor),
                },
            ];
            if let Some(parent) = &token.parent_hash {
                ops.push(Op::Delete {
                    key: child_key(parent, &token.id_hash),
                });
            }
            if let Some(at) = token.expire_time {
                ops.push(Op::delete(expiry_key(at, &token.id_hash)));
            }
            self.storage.apply(ops).await?;
        }
        Ok(())
    }
}
