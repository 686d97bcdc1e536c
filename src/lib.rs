//! pgsecrets: a Vault-compatible secrets engine server that issues short-lived
//! PostgreSQL credentials.
//!
//! Module map (dependencies flow one way, top to bottom):
//!
//! - [`cli`]: subcommands: the server's (`server`, `operator init`,
//!   `gen-docs`), the client's (`read`, `write`, `lease`, `creds`, `psql`, ...)
//!   and `agent`.
//! - [`client`]: a small HTTP client for Vault's API, used by the client
//!   subcommands; it knows only the wire protocol, not the server's modules.
//! - [`agent`]: the sidecar that keeps an application's credentials fresh in
//!   files; a plain HTTP client of the server.
//! - [`bench`]: `pgsecrets bench`, benchmarks against the raw-SQL floor
//!   (uses the server like a client does; nothing depends on it).
//! - [`config`]: configuration file + flags -> validated [`config::Config`].
//! - [`server`]: composition root; builds every part, binds, serves, shuts down.
//! - [`wire`]: `/v1` HTTP <-> [`logical::Request`]/[`logical::Response`], the
//!   Vault envelope, and the one place errors become status codes.
//! - [`router`]: the mount table, route matching, the ACL check, help and
//!   OpenAPI generated from the route tables.
//! - [`sys`]: built-in `sys/` and `auth/token/` routes.
//! - [`engine`]: the `database` secrets engine.
//! - [`lease`]: leases on issued users: intents, expiry index, renew, revoke.
//! - [`auth`]: hashed tokens, ACL policies.
//! - [`quota`]: rate-limit quotas, checked before the token.
//! - [`audit`]: audit devices: request and response records, HMAC, blocking.
//! - [`postgres`]: connections, TLS, pools, SCRAM verifiers.
//! - [`storage`]: the ordered key-value trait, its backends, the encryption barrier.
//! - [`telemetry`]: each server's metrics registry (Prometheus text, Vault's names).
//! - [`logical`]: plain types shared by every layer (operations, requests,
//!   responses, routes, fields).
//! - [`error`]: the error every handler returns, wrapping each layer's own enum.

pub mod agent;
pub mod audit;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod engine;
pub mod error;
pub mod lease;
pub mod listener;
pub mod logical;
pub mod postgres;
pub mod quota;
pub mod random;
pub mod router;
pub mod server;
pub mod storage;
pub mod sys;
pub mod telemetry;
pub mod wire;

pub use error::Error;

/// Version reported by `sys/health`, `sys/seal-status` and `database/info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
