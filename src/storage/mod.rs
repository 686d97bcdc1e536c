//! Storage: the ordered key-value store every piece of state lives in.
//!
//! This module owns three things:
//!
//! - the [`Backend`] trait, a synchronous, ordered, byte-valued key-value
//!   store with atomic batches, one-level listing and range scans, and its two
//!   implementations: [`inmem::InMemBackend`] (dev mode, tests),
//!   [`sqlite::SqliteBackend`] (an embedded, durable file) and
//!   [`postgresql::PgBackend`] (a database several servers share, with the
//!   HA lock and the fence its writes carry);
//! - the encryption barrier [`Storage`] (in [`barrier`]), the only thing the
//!   rest of the server talks to: every value is sealed with AES-256-GCM on the
//!   way down and authenticated on the way up, so a backend (or its file on
//!   disk) holds nothing readable;
//! - the [`keyring`] of data-encryption keys behind the barrier, itself sealed
//!   with the root (unseal) key and stored at [`keyring::KEYRING_KEY`].
//!
//! Keys (storage paths) are stored in clear; only values are encrypted.

pub mod barrier;
mod cipher;
pub mod conformance;
pub mod inmem;
pub mod keyring;
mod listing;
pub mod postgresql;
mod read_cache;
pub mod sqlite;
mod writer;

#[cfg(test)]
mod barrier_tests;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use barrier::Storage;

/// What went wrong in the storage layer. Messages name storage paths but never
/// values or key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sqlite storage: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Authentication failed: wrong key, the value was tampered with, or it
    /// was copied here from another storage path.
    #[error(
        "value at {key:?} failed authentication (wrong key, tampered with, or moved from another path)"
    )]
    Decrypt { key: String },
    #[error("value at {key:?} is sealed with key term {term}, which is not in the keyring")]
    UnknownKeyTerm { key: String, term: u32 },
    #[error("value at {key:?} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("value for {key:?} could not be encrypted (too large)")]
    Encrypt { key: String },
    #[error("storage is already initialized")]
    AlreadyInitialized,
    #[error("storage is not initialized")]
    NotInitialized,
    /// The root key does not open the stored keyring (wrong key, or the
    /// keyring was tampered with: AES-GCM cannot tell the two apart).
    #[error("the unseal key does not open the keyring")]
    BadUnsealKey,
    /// The message gives serde_json's category and position only: its own
    /// message can quote a fragment of the (secret) value.
    #[error(
        "JSON at {key:?} could not be encoded or decoded ({:?} error at line {}, column {})",
        .source.classify(), .source.line(), .source.column()
    )]
    Json {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{key:?} is reserved for the storage layer itself")]
    ReservedKey { key: String },
    #[error("key rotation is unavailable: storage was opened without encryption (benchmark mode)")]
    PlaintextMode,
    #[error("the operating system's random number generator failed")]
    Random,
    #[error("blocking storage task failed: {0}")]
    TaskJoin(String),
    /// The database answered with an error. Names the server, never the
    /// password.
    #[error("postgresql storage at {addr}: {message}")]
    Postgres { addr: String, message: String },
    /// The database could not be reached (start-up retries these).
    #[error("postgresql storage at {addr} is unreachable: {message}")]
    PostgresUnreachable { addr: String, message: String },
    #[error("postgresql storage: {0}")]
    PostgresConfig(String),
    #[error(
        "postgresql storage at {addr} has schema version {found}, newer than the {supported} this \
         binary knows: run a pgsecrets at least as new as the one that upgraded it"
    )]
    SchemaTooNew {
        addr: String,
        found: i32,
        supported: i32,
    },
    /// A fenced write found the HA lock no longer held by this node with
    /// its epoch: nothing of the batch was applied.
    #[error("leadership lost during the request; retry")]
    Fenced,
    /// Renewing found the HA lock expired, taken over or removed.
    #[error(
        "the HA lock is no longer held by this node (it expired, was taken over or was removed)"
    )]
    LockLost,
}

/// One write in an atomic batch. Through [`Storage`] values are plaintext
/// (sealed by the barrier); through a [`Backend`] they are the stored bytes.
#[derive(Clone, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    pub fn delete(key: impl Into<String>) -> Op {
        Op::Delete { key: key.into() }
    }

    /// The storage path the op writes.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// Values may be secrets in clear: Debug shows only their length.
impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Put { key, value } => f
                .debug_struct("Put")
                .field("key", key)
                .field("value", &format_args!("<{} bytes>", value.len()))
                .finish(),
            Op::Delete { key } => f.debug_struct("Delete").field("key", key).finish(),
        }
    }
}

/// What [`Backend::fetch`] returns.
pub type ReadFuture = Pin<Box<dyn Future<Output = Result<Option<Vec<u8>>, Error>> + Send>>;

/// What [`Backend::submit`] returns.
pub type WriteFuture = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

/// An ordered key-value store. Keys compare in byte order (UTF-8 bytes).
///
/// Synchronous on purpose: [`Storage`] calls it on tokio's blocking pool,
/// except [`Backend::fetch`] and [`Backend::submit`].
pub trait Backend: Send + Sync + 'static {
    /// The value at `key`. Must be quick and must not wait for a write in
    /// progress (its fsync), unless the backend overrides
    /// [`Backend::fetch`]: [`Storage`] reads through `fetch`, whose default
    /// calls this directly on the async runtime, since handing a single-key
    /// read to another thread costs more than the read.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error>;
    /// [`Backend::get`] for async callers. The default answers in place; a
    /// backend whose read is a network round trip (postgresql) awaits it
    /// instead of holding a runtime worker for it.
    fn fetch(self: Arc<Self>, key: String) -> ReadFuture {
        Box::pin(std::future::ready(self.get(&key)))
    }
    /// Applies all ops atomically and durably (all or none survive a crash),
    /// in order (a later op on the same key wins). Deleting an absent key is
    /// not an error.
    fn apply(&self, ops: &[Op]) -> Result<(), Error>;
    /// [`Backend::apply`] for async callers: the returned future resolves
    /// once the batch is applied (durably, as `apply` promises) or failed.
    /// The default runs `apply` on tokio's blocking pool; a backend that is
    /// quick in memory, or that writes on a thread of its own, does better.
    fn submit(self: Arc<Self>, ops: Vec<Op>) -> WriteFuture {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || self.apply(&ops))
                .await
                .map_err(|e| Error::TaskJoin(e.to_string()))?
        })
    }
    /// Vault-style one-level listing: the distinct children directly under `prefix`
    /// (prefix should end in '/' or be ""): a key `prefix + "a"` yields "a", a key
    /// `prefix + "b/c"` yields "b/". Sorted, deduplicated. A key equal to
    /// `prefix` itself yields nothing.
    fn list(&self, prefix: &str) -> Result<Vec<String>, Error>;
    /// Key/value pairs with start <= key < end in byte order, at most `limit` of them, ascending.
    fn scan(&self, start: &str, end: &str, limit: usize) -> Result<Vec<(String, Vec<u8>)>, Error>;
    /// Human name for logs/health ("inmem", "sqlite", "postgresql").
    fn kind(&self) -> &'static str;
}
