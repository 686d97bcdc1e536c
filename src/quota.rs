//! Rate-limit quotas (Vault's `sys/quotas/rate-limit/<name>`): a token
//! bucket per client address, by the most specific rule whose path holds
//! the request's, checked before the token is looked up, so a flood of
//! requests with made-up tokens costs storage nothing.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::{Deserialize, Serialize};

use crate::storage::Storage;

const RULES: &str = "core/quotas/rate-limit/";
const CONFIG: &str = "core/quotas/config";
/// How often the buckets of addresses gone quiet are dropped.
const RETAIN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("'rate' is invalid")]
    BadRate,
    #[error("invalid {0}: give a positive duration such as \"1s\" or \"1m\"")]
    BadDuration(&'static str),
    #[error("invalid mount path {0:?}")]
    BadPath(String),
    #[error("quota rule with similar properties exists under the name {0:?}")]
    SamePath(String),
    #[error("role-based quotas are not supported: remove \"role\"")]
    Role,
    #[error(transparent)]
    Storage(#[from] crate::storage::Error),
}

/// A stored rule, as `sys/quotas/rate-limit/<name>` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    /// `""` (every request), a mount (`database/`) or a path below one.
    pub path: String,
    /// Requests per `interval`.
    pub rate: f64,
    /// Seconds.
    pub interval: u64,
    /// Seconds a client over the limit stays refused (0: until its bucket
    /// refills).
    pub block_interval: u64,
    pub inheritable: bool,
}

/// `sys/quotas/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub rate_limit_exempt_paths: Vec<String>,
    pub enable_rate_limit_audit_logging: bool,
    pub enable_rate_limit_response_headers: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            // Vault's defaults, of the paths pgsecrets has.
            rate_limit_exempt_paths: vec![
                "sys/health".into(),
                "sys/seal-status".into(),
                "sys/unseal".into(),
            ],
            enable_rate_limit_audit_logging: false,
            enable_rate_limit_response_headers: false,
        }
    }
}

/// A rule with its buckets.
struct Limiter {
    rule: Rule,
    buckets: DefaultKeyedRateLimiter<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

impl Limiter {
    fn new(rule: Rule) -> Limiter {
        // `rate` requests per `interval`: a bucket of `rate`, refilled one
        // request every interval/rate.
        let burst = NonZeroU32::new(rule.rate.ceil().max(1.0) as u32).expect("at least 1");
        let period = Duration::from_secs_f64(rule.interval.max(1) as f64 / rule.rate);
        let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
            .expect("a positive period")
            .allow_burst(burst);
        Limiter {
            rule,
            buckets: DefaultKeyedRateLimiter::keyed(quota),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` when `client` is over the limit.
    fn check(&self, client: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let mut blocked = self.blocked.lock().expect("blocked");
        if let Some(until) = blocked.get(&client) {
            if *until > now {
                return Err(*until - now);
            }
            blocked.remove(&client);
        }
        match self.buckets.check_key(&client) {
            Ok(_) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                if self.rule.block_interval > 0 {
                    let block = Duration::from_secs(self.rule.block_interval);
                    blocked.insert(client, now + block);
                    return Err(block);
                }
                Err(wait)
            }
        }
    }
}

/// The refusal of a request over its quota.
#[derive(Debug, Clone)]
pub struct Exceeded {
    pub path: String,
    pub retry_after: Duration,
}

/// The rules, shared by the router (which checks) and `sys/quotas`.
#[derive(Clone)]
pub struct Quotas {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Option<Storage>,
    limiters: RwLock<BTreeMap<String, Arc<Limiter>>>,
    settings: RwLock<Settings>,
    retained: Mutex<Instant>,
    /// One change at a time: the path-uniqueness check and the write.
    changes: tokio::sync::Mutex<()>,
}

impl Quotas {
    fn with(storage: Option<Storage>, rules: Vec<Rule>, settings: Settings) -> Quotas {
        let limiters = rules
            .into_iter()
            .map(|r| (r.name.clone(), Arc::new(Limiter::new(r))))
            .collect();
        Quotas {
            inner: Arc::new(Inner {
                storage,
                limiters: RwLock::new(limiters),
                settings: RwLock::new(settings),
                retained: Mutex::new(Instant::now()),
                changes: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub async fn load(storage: Storage) -> Result<Quotas, Error> {
        let mut rules = Vec::new();
        for name in storage.list(RULES).await? {
            if let Some(rule) = storage.get_json::<Rule>(&format!("{RULES}{name}")).await? {
                rules.push(rule);
            }
        }
        let settings = storage.get_json(CONFIG).await?.unwrap_or_default();
        Ok(Quotas::with(Some(storage), rules, settings))
    }

    /// Checks one request of `client` to `path` against the most specific
    /// rule holding it.
    pub fn check(&self, path: &str, client: Option<IpAddr>) -> Result<(), Exceeded> {
        let limiters = self.inner.limiters.read().expect("quotas");
        if limiters.is_empty() {
            return Ok(());
        }
        let exempt = {
            let settings = self.inner.settings.read().expect("quotas");
            settings
                .rate_limit_exempt_paths
                .iter()
                .any(|p| !p.is_empty() && applies(p, path))
        };
        if exempt {
            return Ok(());
        }
        let Some(limiter) = limiters
            .values()
            .filter(|l| applies(&l.rule.path, path))
            .max_by_key(|l| l.rule.path.len())
        else {
            return Ok(());
        };
        self.retain_now_and_then(&limiters);
        let client = client.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        limiter.check(client).map_err(|wait| Exceeded {
            path: path.to_string(),
            retry_after: wait,
        })
    }

    fn retain_now_and_then(&self, limiters: &BTreeMap<String, Arc<Limiter>>) {
        let mut last = self.inner.retained.lock().expect("retained");
        if last.elapsed() < RETAIN_EVERY {
            return;
        }
        *last = Instant::now();
        for limiter in limiters.values() {
            limiter.buckets.retain_recent();
            let now = Instant::now();
            limiter
                .blocked
                .lock()
                .expect("blocked")
                .retain(|_, until| *until > now);
        }
    }

    pub fn get(&self, name: &str) -> Option<Rule> {
        let limiters = self.inner.limiters.read().expect("quotas");
        limiters.get(name).map(|l| l.rule.clone())
    }

    pub fn names(&self) -> Vec<String> {
        self.inner
            .limiters
            .read()
            .expect("quotas")
            .keys()
            .cloned()
            .collect()
    }

    /// Stores `rule` (new, or replacing the one of its name); its path
    /// must be checked against the mount table by the caller.
    pub async fn put(&self, rule: Rule) -> Result<(), Error> {
        if !(rule.rate.is_finite() && rule.rate > 0.0) {
            return Err(Error::BadRate);
        }
        let _change = self.inner.changes.lock().await;
        if let Some(other) = self
            .inner
            .limiters
            .read()
            .expect("quotas")
            .values()
            .find(|l| l.rule.path == rule.path && l.rule.name != rule.name)
        {
            return Err(Error::SamePath(other.rule.name.clone()));
        }
        self.storage()
            .put_json(&format!("{RULES}{}", rule.name), &rule)
            .await?;
        let mut limiters = self.inner.limiters.write().expect("quotas");
        limiters.insert(rule.name.clone(), Arc::new(Limiter::new(rule)));
        Ok(())
    }

    pub async fn delete(&self, name: &str) -> Result<(), Error> {
        let _change = self.inner.changes.lock().await;
        self.storage().delete(&format!("{RULES}{name}")).await?;
        self.inner.limiters.write().expect("quotas").remove(name);
        Ok(())
    }

    pub fn settings(&self) -> Settings {
        self.inner.settings.read().expect("quotas").clone()
    }

    pub async fn set_settings(&self, settings: Settings) -> Result<(), Error> {
        let _change = self.inner.changes.lock().await;
        self.storage().put_json(CONFIG, &settings).await?;
        *self.inner.settings.write().expect("quotas") = settings;
        Ok(())
    }

    fn storage(&self) -> &Storage {
        self.inner
            .storage
            .as_ref()
            .expect("only the unit tests' Quotas have no storage, and they store nothing")
    }
}

/// Whether a rule for `rule_path` holds `path` (`""` holds every path).
fn applies(rule_path: &str, path: &str) -> bool {
    path.strip_prefix(rule_path.trim_end_matches('/'))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rule_path.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, path: &str, rate: f64) -> Rule {
        Rule {
            name: name.into(),
            path: path.into(),
            rate,
            interval: 1,
            block_interval: 0,
            inheritable: false,
        }
    }

    #[test]
    fn the_sixth_request_in_a_second_is_refused_per_client_and_the_most_specific_rule_wins() {
        let q = Quotas::with(
            None,
            vec![rule("all", "", 1000.0), rule("db", "database/", 5.0)],
            Settings::default(),
        );
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..5 {
            q.check("database/creds/x", a).unwrap();
        }
        let refused = q.check("database/creds/x", a).unwrap_err();
        assert_eq!(refused.path, "database/creds/x");
        assert!(refused.retry_after <= Duration::from_secs(1));
        q.check("database/creds/x", b)
            .expect("another client has its own bucket");
        q.check("sys/mounts", a)
            .expect("the global rule is far from its limit");
        q.check("sys/health", a).expect("exempt");
        assert!(applies("database/", "database"));
        assert!(!applies("data/", "database/x"));
    }

    #[test]
    fn block_interval_keeps_a_client_out() {
        let mut r = rule("b", "", 1.0);
        r.block_interval = 30;
        let q = Quotas::with(None, vec![r], Settings::default());
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        q.check("x", a).unwrap();
        let refused = q.check("x", a).unwrap_err();
        assert!(refused.retry_after > Duration::from_secs(29));
    }
}
