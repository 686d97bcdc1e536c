//! Tokens and ACL policies.
//!
//! Tokens are stored under the SHA-256 of their value, never the value itself;
//! policies are stored as the text the operator wrote and parsed on load.
//! This module answers "who is this and what may they do"; it never routes.

pub mod acl;
pub mod hcl1;
pub mod policy;
pub mod policy_store;
pub mod token;
pub mod token_ttl;

pub use acl::Acl;
pub use policy::Capability;
pub use policy_store::PolicyStore;
pub use token::{Issued, NewToken, TokenEntry, TokenStore};

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
    #[error("policy name {name:?} is invalid: it holds a control character")]
    InvalidPolicyName { name: String },
    #[error("cannot update \"root\" policy")]
    CannotUpdateRoot,
    #[error("cannot delete \"root\" policy")]
    CannotDeleteRoot,
    #[error("cannot delete default policy")]
    CannotDeleteDefault,
    // Vault's texts, word for word: scripts and clients match on them.
    #[error("child policies must be subset of parent")]
    PoliciesNotSubset,
    #[error("root tokens may not be created without parent token being root")]
    RootPolicyNeedsRoot,
    /// What a creator without root or sudo on the create path asked for.
    #[error("root or sudo privileges required to {0}")]
    SudoRequired(&'static str),
    #[error("custom token ID cannot have a '.' in the value")]
    TokenIdHasPeriod,
    #[error("lease is not renewable")]
    NotRenewable,
    #[error("cannot create a token with a duplicate ID")]
    TokenIdInUse,
    #[error("custom token ID cannot contain whitespace")]
    BadTokenId,
    #[error("number of uses cannot be negative")]
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
