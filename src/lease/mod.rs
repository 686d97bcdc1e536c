//! Leases: every issued database user is tracked here from before it exists
//! until PostgreSQL confirms it is gone.
//!
//! Storage layout (all through the encrypted barrier):
//! - `sys/expire/id/<lease_id>`: the lease itself, written before its user
//!   is created (so it is also the record of the intent to create it);
//! - `sys/expire/due/<unix time, 20 digits>/<escaped lease_id>`: the
//!   time-ordered index of the next action on each lease (expiry, or the
//!   next revocation attempt), scanned in batches so start-up never loads
//!   every lease;
//! - `sys/expire/token/<token hash>/<escaped lease_id>`: leases per token.
//!
//! Lease ids end in a time-ordered suffix ([`crate::random::time_ordered`]),
//! so a new lease's keys land after the previous ones in each of these
//! B-trees (one page appended to) rather than on a random page each: the
//! storage writes a fraction of the pages per credential. Reconciliation
//! reads a cluster's leases under their id prefix; no per-user index is
//! kept, as it would be the one key per lease that lands at random.
//!
//! This module never imports the engine: it calls a [`Revoker`] per mount.

mod lock;
pub mod manager;
pub mod ttl;
pub mod worker;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

pub use manager::LeaseManager;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("lease_id must be specified")]
    MissingLeaseId,
    #[error("invalid lease")]
    InvalidLease,
    #[error("lease not found")]
    NotFound,
    #[error("lease expired")]
    Expired,
    #[error("lease is not renewable")]
    NotRenewable,
    /// A revocation was accepted: nothing renews the lease again.
    #[error("lease is being revoked")]
    Revoking,
    #[error("lease is not renewable: {0}")]
    Refused(String),
    /// What the renewal needs (PostgreSQL) cannot be reached now: the
    /// lease stands, and a later renewal may succeed. Vault answers this
    /// with a 400 as it does a refusal; the wire layer adds `Retry-After`
    /// so a client (pgsecrets' agent) can tell the two apart.
    #[error("failed to renew entry: {0}")]
    Unavailable(String),
    #[error("lease is expired and has failed previous revocation attempts")]
    Irrevocable,
    #[error("past the max TTL, cannot renew")]
    PastMaxTtl,
    #[error("failed to revoke {lease_id:?} ({index} / {total}): {reason}")]
    RevokeFailed {
        lease_id: String,
        index: usize,
        total: usize,
        reason: String,
    },
    #[error("no secrets engine is mounted for lease {0:?}")]
    NoBackend(String),
    /// A new lease's id is already claimed by an operation in flight: ids
    /// end in 15 fresh random characters, so this means a server fault.
    #[error("lease id {0:?} is already in use")]
    IdInUse(String),
    #[error(transparent)]
    Storage(#[from] crate::storage::Error),
}

/// A lease on one database user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseEntry {
    pub lease_id: String,
    /// The mount that issued it (`database/`).
    pub mount: String,
    /// The request path without the random suffix.
    pub path: String,
    pub cluster: String,
    pub database: String,
    pub role: String,
    pub username: String,
    pub issue_time: i64,
    pub expire_time: i64,
    pub last_renewal: Option<i64>,
    /// `issue_time + max TTL`: renewals never pass it.
    pub max_end: i64,
    /// The token that created the lease (its hash); revoking it revokes this.
    pub token_hash: Option<String>,
    /// When the index says this lease needs attention next.
    pub due: i64,
    /// Revocation was asked for (expiry, revoke, disable); never renewable again.
    pub revoking: bool,
    pub failures: u32,
    pub last_error: Option<String>,
    /// The lease's end to the millisecond (`expire_time` is it rounded up
    /// to the second, as Vault shows it). The expiry index keeps the
    /// second the end falls in, and the worker revokes once this instant
    /// has passed: never before it, and within milliseconds after. Absent
    /// in leases written before it: their end is `expire_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_ms: Option<i64>,
}

impl LeaseEntry {
    /// When the lease ends, in milliseconds.
    pub fn end_ms(&self) -> i64 {
        self.expire_ms
            .unwrap_or_else(|| self.expire_time.saturating_mul(1000))
    }

    /// Whether the worker should revoke it at `now_ms`: a revocation (or
    /// its retry) whose second has come, or a lease whose end has passed.
    pub fn is_due(&self, now_ms: i64) -> bool {
        self.due <= now_ms.div_euclid(1000) && (self.revoking || self.end_ms() <= now_ms)
    }

    /// Sets the lease's end (`end_ms`), its `expire_time` (rounded up) and
    /// its place in the expiry index (the second `end_ms` falls in).
    pub fn end_at(&mut self, end_ms: i64) {
        self.expire_ms = Some(end_ms);
        self.expire_time = ttl::seconds_up(end_ms);
        self.due = end_ms.div_euclid(1000);
    }
}

/// What a mount's engine does for the lease manager.
/// Why an engine did not do what the lease layer asked: refused for good
/// (no retry can help), or unable now (PostgreSQL unreachable, busy or
/// timing out; a retry may succeed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevokerError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unavailable(String),
}

impl From<RevokerError> for Error {
    fn from(e: RevokerError) -> Error {
        match e {
            RevokerError::Refused(reason) => Error::Refused(reason),
            RevokerError::Unavailable(reason) => Error::Unavailable(reason),
        }
    }
}

pub trait Revoker: Send + Sync + 'static {
    /// Removes the lease's user (and its sessions); a user already gone counts
    /// as revoked.
    fn revoke<'a>(&'a self, lease: &'a LeaseEntry) -> BoxFuture<'a, Result<(), RevokerError>>;
    /// Checks the lease may be renewed now and returns its TTL limits
    /// (role default, role max; 0 = the mount's).
    fn renew_limits<'a>(
        &'a self,
        lease: &'a LeaseEntry,
    ) -> BoxFuture<'a, Result<TtlLimits, RevokerError>>;
    /// Moves the user's `VALID UNTIL` to the new expiry.
    fn extend<'a>(
        &'a self,
        lease: &'a LeaseEntry,
        expire_time: i64,
    ) -> BoxFuture<'a, Result<(), RevokerError>>;
}

/// TTL settings that apply to a lease (seconds; 0 = unset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TtlLimits {
    pub role_default: u64,
    pub role_max: u64,
    pub mount_default: u64,
    pub mount_max: u64,
}

pub mod keys {
    /// `/` cannot appear inside one key segment; lease ids hold no `%`.
    pub fn escape(lease_id: &str) -> String {
        lease_id.replace('/', "%")
    }
    pub fn unescape(segment: &str) -> String {
        segment.replace('%', "/")
    }
    pub fn lease(lease_id: &str) -> String {
        format!("sys/expire/id/{lease_id}")
    }
    pub const LEASES: &str = "sys/expire/id/";
    pub const DUE: &str = "sys/expire/due/";
    pub fn due(at: i64, lease_id: &str) -> String {
        format!("{DUE}{:020}/{}", at.max(0), escape(lease_id))
    }
    /// Upper bound (exclusive) of due keys at or before `at`.
    pub fn due_until(at: i64) -> String {
        format!("{DUE}{:020}0", at.max(0))
    }
    pub fn token(token_hash: &str, lease_id: &str) -> String {
        format!("sys/expire/token/{token_hash}/{}", escape(lease_id))
    }
    pub fn token_folder(token_hash: &str) -> String {
        format!("sys/expire/token/{token_hash}/")
    }
}
