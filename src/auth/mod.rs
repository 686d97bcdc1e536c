//! Tokens and ACL policies.
//!
//! Tokens are stored under the SHA-256 of their value, never the value itself;
//! policies are stored as the text the operator wrote and parsed on load.
//! This module answers "who is this and what may they do"; it never routes.

pub mod acl;
pub mod policy;
pub mod policy_store;
pub mod token;

pub use acl::Acl;
pub use policy::Capability;
pub use policy_store::PolicyStore;
pub use token::{NewToken, TokenEntry, TokenStore};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("permission denied")]
    PermissionDenied,
    #[error("bad token")]
    BadToken,
    #[error("failed to parse policy: {0}")]
    InvalidPolicy(#[from] policy::ParseError),
    #[error("policy name must not be empty")]
    EmptyPolicyName,
    #[error("policy name {name:?} is invalid: use letters, digits, '-', '_' and '.'")]
    InvalidPolicyName { name: String },
    #[error("cannot update \"root\" policy")]
    CannotUpdateRoot,
    #[error("cannot delete \"root\" policy")]
    CannotDeleteRoot,
    #[error("cannot delete default policy")]
    CannotDeleteDefault,
    #[error(
        "token policies ({requested}) must be subset of the parent token's policies ({allowed})"
    )]
    PoliciesNotSubset { requested: String, allowed: String },
    #[error("root tokens may only be created by a root token")]
    RootPolicyNeedsRoot,
    #[error("lease is not renewable")]
    NotRenewable,
    #[error("a token with that id already exists")]
    TokenIdInUse,
    #[error("token id must be at least 8 characters without whitespace")]
    BadTokenId,
    #[error("num_uses must be zero (unlimited) or positive")]
    NegativeUses,
    #[error("restricted use token cannot generate child tokens")]
    RestrictedUseParent,
    #[error("token type {0:?} is not supported: use \"service\"")]
    UnsupportedTokenType(String),
    /// Marking the token's leases for revocation failed; the token stays.
    #[error("cannot revoke the token's leases: {0}")]
    RevokeLeases(String),
    #[error(transparent)]
    Storage(#[from] crate::storage::Error),
}
