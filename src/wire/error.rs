//! The one place an error becomes an HTTP status and `{"errors": [...]}`.
//!
//! The `match` is exhaustive on purpose: a new error variant does not compile
//! until someone decides its status. 4xx messages tell the caller what to
//! fix; 5xx bodies say only "internal error" (the cause is logged with the
//! request id), so no secret or internal detail leaks.

use axum::http::StatusCode;

use super::RequestError;
use crate::{audit, auth, engine, lease, quota, router, sys, Error};

/// How Vault wraps some errors ("1 error occurred:"); scripts grep these.
fn wrapped(message: &str) -> String {
    format!("1 error occurred:\n\t* {message}\n\n")
}

/// A 400 with the error's own message: the caller must change the request.
fn bad(e: &dyn std::fmt::Display) -> (StatusCode, Vec<String>) {
    (StatusCode::BAD_REQUEST, vec![e.to_string()])
}

/// A 500 that says nothing of the cause (it is logged instead).
fn internal() -> (StatusCode, Vec<String>) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        vec![wrapped("internal error")],
    )
}

/// Status and the messages of the `errors` array.
pub fn classify(error: &Error) -> (StatusCode, Vec<String>) {
    match error {
        Error::Request(e) => match e {
            RequestError::NotFound => (StatusCode::NOT_FOUND, vec![]),
            RequestError::RelativePath
            | RequestError::BadPathCharacters
            | RequestError::WriteToDirectory
            | RequestError::BadListParameter(_)
            | RequestError::BadJson(_)
            | RequestError::UntrustedForwardedFor(_)
            | RequestError::BadForwardedFor(_)
            | RequestError::BodyRead(_) => bad(e),
            RequestError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                vec![wrapped(&e.to_string())],
            ),
            RequestError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, vec![e.to_string()])
            }
            RequestError::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, vec![e.to_string()]),
            RequestError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, vec![e.to_string()]),
            RequestError::NamespaceNotFound => (StatusCode::NOT_FOUND, vec![e.to_string()]),
        },
        Error::Field(e) => bad(e),
        Error::Router(e) => match e {
            router::Error::MissingToken => (StatusCode::FORBIDDEN, vec![e.to_string()]),
            router::Error::PermissionDenied => {
                (StatusCode::FORBIDDEN, vec![wrapped(&e.to_string())])
            }
            router::Error::NoHandler { .. } => (StatusCode::NOT_FOUND, vec![e.to_string()]),
            router::Error::UnsupportedPath => {
                (StatusCode::NOT_FOUND, vec![wrapped(&e.to_string())])
            }
            router::Error::UnsupportedOperation => (
                StatusCode::METHOD_NOT_ALLOWED,
                vec![wrapped(&e.to_string())],
            ),
            router::Error::MountInUse { .. }
            | router::Error::UnknownEngine { .. }
            | router::Error::NoMount { .. }
            | router::Error::ProtectedMount { .. }
            | router::Error::NoMatchingMount { .. }
            | router::Error::CannotRemount { .. }
            | router::Error::CannotRemountTo { .. }
            | router::Error::MountHasLeases { .. }
            | router::Error::InvalidMountPath { .. }
            | router::Error::MountLeases(_)
            | router::Error::WrappingNotSupported => bad(e),
            router::Error::RateLimited { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, vec![e.to_string()])
            }
            router::Error::Storage(_) => internal(),
        },
        Error::Auth(e) => auth_status(e),
        Error::Sys(e) => match e {
            sys::Error::InvalidTtl { .. }
            | sys::Error::BadQueryParameter { .. }
            | sys::Error::PathsRequired
            | sys::Error::NeverClear { .. }
            | sys::Error::MetricsFormat(_)
            | sys::Error::MissingPath
            | sys::Error::MountConfig
            | sys::Error::ListingVisibility(_)
            | sys::Error::InvalidToken
            | sys::Error::PolicyTextRequired
            | sys::Error::TokenRequired
            | sys::Error::AccessorRequired
            | sys::Error::UnknownAccessor
            | sys::Error::TokenNotFound => bad(e),
            sys::Error::Preflight { .. } => (StatusCode::FORBIDDEN, vec![e.to_string()]),
            // Errors of the layers below, as when they come alone.
            sys::Error::Auth(e) => auth_status(e),
            sys::Error::Lease(e) => lease_status(e),
            sys::Error::Audit(e) => audit_status(e),
            sys::Error::Storage(_) => internal(),
        },
        Error::Engine(e) => match e {
            engine::Error::ClusterNotFound { .. } | engine::Error::DatabaseNotFound { .. } => {
                (StatusCode::NOT_FOUND, vec![e.to_string()])
            }
            // Vault's database engine answers an unknown role with 400
            // ("unknown role: x"); hvac raises InvalidRequest on it.
            engine::Error::RoleNotFound { .. } => bad(e),
            engine::Error::SudoRequired { .. } => {
                (StatusCode::FORBIDDEN, vec![wrapped(&e.to_string())])
            }
            engine::Error::ClusterDisabled { .. }
            | engine::Error::DatabaseDisabled { .. }
            | engine::Error::ClusterNameTaken { .. }
            | engine::Error::ServerTaken { .. }
            | engine::Error::RoleManaged { .. }
            | engine::Error::ServerUnverifiable { .. }
            | engine::Error::RotationBusy { .. }
            | engine::Error::DatabaseExists { .. }
            | engine::Error::DatabaseMissing { .. }
            | engine::Error::InvalidField { .. }
            | engine::Error::MissingField { .. }
            | engine::Error::RootCannotCreateRoles { .. }
            | engine::Error::RootCannotCreateDatabases { .. }
            | engine::Error::RootCredentialsRejected { .. }
            | engine::Error::StoredCredentialsRejected { .. }
            | engine::Error::NotDisabled { .. }
            | engine::Error::HasLeases { .. }
            | engine::Error::PoolClosed { .. }
            | engine::Error::InsecureAuth { .. }
            | engine::Error::OwnerRefused { .. }
            | engine::Error::GrantRefused { .. }
            | engine::Error::TemplateDatabase { .. }
            | engine::Error::Refused { .. } => bad(e),
            engine::Error::Lease(inner) => lease_status(inner),
            engine::Error::Unreachable { .. }
            | engine::Error::Tls(_)
            | engine::Error::TlsRefused(_)
            | engine::Error::Postgres(_) => (StatusCode::BAD_GATEWAY, vec![e.to_string()]),
            engine::Error::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, vec![e.to_string()]),
            engine::Error::Busy { .. } | engine::Error::RotationUnresolved { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, vec![e.to_string()])
            }
            engine::Error::Fault { .. } | engine::Error::Storage(_) => internal(),
        },
        Error::Lease(e) => lease_status(e),
        Error::Audit(e) => audit_status(e),
        Error::Quota(e) => match e {
            quota::Error::Storage(_) => internal(),
            quota::Error::BadRate
            | quota::Error::BadDuration(_)
            | quota::Error::BadPath(_)
            | quota::Error::SamePath(_)
            | quota::Error::Role => bad(e),
        },
        Error::Storage(_) => internal(),
    }
}

fn audit_status(e: &audit::Error) -> (StatusCode, Vec<String>) {
    match e {
        audit::Error::ApiCreationDisabled
        | audit::Error::Declared
        | audit::Error::PathInUse
        | audit::Error::FileInUse(..)
        | audit::Error::BadPath(_)
        | audit::Error::UnknownType(_)
        | audit::Error::BadOption(_)
        | audit::Error::TestMessage(_)
        | audit::Error::UnknownDevice(_)
        | audit::Error::EmptyInput => bad(e),
        // Vault's answer when no device took a record: nothing of why.
        audit::Error::NotLogged(_) | audit::Error::Start { .. } | audit::Error::Storage(_) => {
            internal()
        }
    }
}

fn auth_status(e: &auth::Error) -> (StatusCode, Vec<String>) {
    match e {
        auth::Error::PermissionDenied | auth::Error::BadToken => {
            (StatusCode::FORBIDDEN, vec![e.to_string()])
        }
        auth::Error::InvalidPolicy(_)
        | auth::Error::EmptyPolicyName
        | auth::Error::InvalidPolicyName { .. }
        | auth::Error::CannotUpdateRoot
        | auth::Error::CannotDeleteRoot
        | auth::Error::CannotDeleteDefault
        | auth::Error::PoliciesNotSubset
        | auth::Error::RootPolicyNeedsRoot
        | auth::Error::SudoRequired(_)
        | auth::Error::TokenIdHasPeriod
        | auth::Error::NotRenewable
        | auth::Error::TokenIdInUse
        | auth::Error::BadTokenId
        | auth::Error::NegativeUses
        | auth::Error::RestrictedUseParent
        | auth::Error::UnsupportedTokenType(_) => bad(e),
        // Only a storage failure while marking the leases.
        auth::Error::Storage(_) | auth::Error::RevokeLeases(_) => internal(),
    }
}

fn lease_status(e: &lease::Error) -> (StatusCode, Vec<String>) {
    match e {
        lease::Error::MissingLeaseId
        | lease::Error::InvalidLease
        | lease::Error::NotFound
        | lease::Error::Expired
        | lease::Error::NotRenewable
        | lease::Error::Revoking
        | lease::Error::Refused(_)
        | lease::Error::Unavailable(_)
        | lease::Error::Irrevocable
        | lease::Error::PastMaxTtl
        | lease::Error::RevokeFailed { .. }
        | lease::Error::NoBackend(_) => bad(e),
        lease::Error::Storage(_) | lease::Error::IdInUse(_) => internal(),
    }
}

/// Seconds a client should wait before trying again, when the error is a
/// temporary one that Vault answers with a 4xx all the same (a renewal
/// while PostgreSQL is away): the status keeps Vault's, `Retry-After` says
/// "not final" to clients that look (pgsecrets' agent does).
pub fn retry_after(error: &Error) -> Option<u64> {
    if let Error::Router(router::Error::RateLimited { retry_after, .. }) = error {
        return Some(*retry_after);
    }
    let lease = match error {
        Error::Lease(e) => e,
        Error::Engine(engine::Error::Lease(e)) => e,
        Error::Sys(sys::Error::Lease(e)) => e,
        _ => return None,
    };
    matches!(lease, lease::Error::Unavailable(_)).then_some(RETRY_AFTER_SECONDS)
}

const RETRY_AFTER_SECONDS: u64 = 5;

/// Whether the full cause should be logged (a server-side failure).
pub fn is_internal(error: &Error) -> bool {
    classify(error).0.is_server_error()
}
