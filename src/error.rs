//! The error every handler and the request pipeline return: one variant per
//! layer, each wrapping that layer's own enum. `wire::error` maps it to an
//! HTTP status in one exhaustive `match`.

use crate::{audit, auth, engine, lease, logical::FieldError, quota, router, storage, sys, wire};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Request(#[from] wire::RequestError),
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error(transparent)]
    Router(#[from] router::Error),
    #[error(transparent)]
    Auth(#[from] auth::Error),
    #[error(transparent)]
    Sys(#[from] sys::Error),
    #[error(transparent)]
    Engine(#[from] engine::Error),
    #[error(transparent)]
    Lease(#[from] lease::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
    #[error(transparent)]
    Quota(#[from] quota::Error),
    #[error(transparent)]
    Storage(#[from] storage::Error),
}
