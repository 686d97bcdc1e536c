//! Routing: token check, ACL check, mount and route lookup, field parsing,
//! then the handler. Also owns the mount table and the documents generated
//! from the route tables (help, OpenAPI, `routes/*.md`).

pub mod docs;
pub mod mount_input;
pub mod mounts;
pub mod quota_routes;
pub mod sys_routes;
mod trail;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::audit::Broker;
use crate::auth::{Capability, PolicyStore, TokenStore};
use crate::lease::LeaseManager;
use crate::logical::{Caller, FieldData, Operation, Request, Response};
use crate::Error as AnyError;
pub use mounts::{Backend, MountConfig, MountEntry, MountSettings, Mounts};

/// A route of any backend, its handlers' errors gathered into the one
/// error every status is mapped from: where the router erases the layers'
/// own error types ([`crate::logical::Route::map_err`]).
pub type AnyRoute = crate::logical::Route<AnyError>;
/// A backend as the mount table holds it (see [`AnyRoute`]).
pub type AnyBackend = Backend<AnyError>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No token, or a token that does not exist (or expired).
    #[error("permission denied")]
    MissingToken,
    /// The token's policies do not grant the operation.
    #[error("permission denied")]
    PermissionDenied,
    #[error("no handler for route {path:?}. route entry not found.")]
    NoHandler { path: String },
    #[error("unsupported path")]
    UnsupportedPath,
    #[error("unsupported operation")]
    UnsupportedOperation,
    #[error("path is already in use at {path}")]
    MountInUse { path: String },
    #[error("plugin not found in the catalog: {kind}")]
    UnknownEngine { kind: String },
    #[error("No secret engine mount at {path}")]
    NoMount { path: String },
    #[error("no matching mount at {path:?}")]
    NoMatchingMount { path: String },
    #[error("cannot remount {path:?}")]
    CannotRemount { path: String },
    #[error("cannot remount to destination {path}")]
    CannotRemountTo { path: String },
    #[error(
        "cannot move {path}: it holds {leases} lease(s), whose IDs name the mount; revoke them \
         first (sys/leases/revoke-prefix/{path}) or let them expire"
    )]
    MountHasLeases { path: String, leases: usize },
    #[error("cannot unmount {path:?}")]
    ProtectedMount { path: String },
    #[error("invalid mount path {path:?}: {reason}")]
    InvalidMountPath { path: String, reason: &'static str },
    #[error("failed to revoke the mount's leases: {0}")]
    MountLeases(String),
    #[error("response wrapping is not supported: remove the X-Vault-Wrap-TTL header")]
    WrappingNotSupported,
    /// Vault's words for a request over its rate-limit quota (429).
    #[error("request path {path:?}: rate limit quota exceeded")]
    RateLimited { path: String, retry_after: u64 },
    #[error(transparent)]
    Storage(#[from] crate::storage::Error),
}

/// A request as the wire layer decoded it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub id: String,
    pub operation: Operation,
    /// Below `/v1/`, percent-decoded, validated.
    pub path: String,
    pub data: Map<String, Value>,
    pub token: Option<String>,
    pub help: bool,
    /// An `X-Vault-Wrap-TTL` came with the request. It is refused only once
    /// the token and the ACL have been checked, as Vault checks them before
    /// wrapping: a token the ACL denies gets its 403, not this 400.
    pub wrap: bool,
    /// The client's address, for the audit record.
    pub remote: Option<std::net::SocketAddr>,
}

/// The dispatcher every HTTP request goes through.
pub struct Router {
    pub mounts: Arc<Mounts>,
    pub tokens: TokenStore,
    pub policies: PolicyStore,
    /// Every request's records go through it.
    pub audit: Broker,
    /// Rate limits, checked before anything else.
    pub quotas: crate::quota::Quotas,
    /// Revokes a lease whose response record reached no device: a
    /// credential nobody can account for is not handed out.
    pub leases: Arc<LeaseManager>,
    /// The server's metrics (the wire layer times each request into it).
    pub telemetry: crate::telemetry::Telemetry,
}

use trail::Trail;

impl Router {
    pub async fn handle(&self, incoming: Incoming) -> Result<Response, AnyError> {
        let client = incoming.remote.map(|a| a.ip());
        if let Err(over) = self.quotas.check(&incoming.path, client) {
            return Err(Error::RateLimited {
                path: over.path,
                retry_after: over.retry_after.as_secs_f64().ceil().max(1.0) as u64,
            }
            .into());
        }
        if !self.audit.enabled() || crate::audit::exempt(&incoming.path) {
            return self.route(&incoming, None).await;
        }
        let mut trail = Trail::new(&incoming);
        let result = self.route(&incoming, Some(&mut trail)).await;
        if let Err(e) = trail.after(&self.audit, &result).await {
            if let Ok(Response {
                secret: Some(secret),
                ..
            }) = &result
            {
                if let Err(revoke) = self.leases.revoke(&secret.lease_id).await {
                    tracing::error!(lease_id = %secret.lease_id, error = %revoke, "cannot revoke a lease whose response was not audited");
                }
            }
            return Err(e);
        }
        result
    }

    async fn route(
        &self,
        incoming: &Incoming,
        mut trail: Option<&mut Trail>,
    ) -> Result<Response, AnyError> {
        let mut path = incoming.path.clone();
        if incoming.operation == Operation::List && !path.ends_with('/') {
            path.push('/');
        }
        let found = self.mounts.find(&path);
        let matched = found
            .as_ref()
            .and_then(|(_, backend, rest)| backend.route(rest));

        if let Some((route, captures)) = &matched {
            if route.unauthenticated {
                let (mount, _, rest) = found.as_ref().expect("matched implies found");
                if incoming.help {
                    // Vault describes a route that needs no token to anyone.
                    return Ok(docs::help_response(mount, route));
                }
                if incoming.wrap {
                    return Err(Error::WrappingNotSupported.into());
                }
                // No token is needed, and none is looked up here: health
                // checks send one on every request. A handler that shows
                // more to a token (`sys/internal/ui/mounts`) looks it up.
                let caller = Caller {
                    token: incoming.token.clone(),
                    ..Caller::default()
                };
                return self
                    .dispatch(route, captures, incoming, mount, rest, caller, trail)
                    .await;
            }
        }

        // Token and ACL checks come before routing, so a non-root token cannot
        // probe which paths exist.
        let token = incoming.token.as_deref().ok_or(Error::MissingToken)?;
        let entry = self
            .tokens
            .lookup(token)
            .await?
            .ok_or(Error::MissingToken)?;
        if let Some(trail) = trail.as_deref_mut() {
            trail.token(token, &entry);
        }
        // Spent before anything else, as Vault does: a help request or one
        // the ACL refuses costs a use too.
        let last_use = self
            .tokens
            .spend_use(&entry)
            .await?
            .ok_or(Error::MissingToken)?;
        let result = self
            .authorized(token, &entry, incoming, path, &found, &matched, trail)
            .await;
        if last_use {
            // The token's last use is spent; it goes even if the request failed.
            self.tokens.revoke(&entry).await?;
        }
        result
    }

    /// The rest of [`Router::handle`] once the token is known and its use
    /// counted: the ACL check, then the handler.
    #[allow(clippy::too_many_arguments)]
    async fn authorized(
        &self,
        token: &str,
        entry: &crate::auth::TokenEntry,
        incoming: &Incoming,
        path: String,
        found: &Option<(MountEntry, Arc<AnyBackend>, String)>,
        matched: &Option<(&AnyRoute, BTreeMap<String, String>)>,
        trail: Option<&mut Trail>,
    ) -> Result<Response, AnyError> {
        let acl = self.policies.acl(&entry.policies).await?;
        let list = incoming.operation == Operation::List;
        let capabilities = acl.capabilities_for(&path, list);

        if incoming.help {
            return match (found, matched) {
                (Some((mount, _, _)), Some((route, _))) => Ok(docs::help_response(mount, route)),
                (Some((mount, backend, rest)), None) if rest.is_empty() => {
                    Ok(docs::mount_help_response(mount, backend))
                }
                (None, _) => Err(Error::NoHandler { path }.into()),
                _ => Err(Error::UnsupportedPath.into()),
            };
        }

        let needed = match incoming.operation {
            Operation::Read => Capability::Read,
            Operation::List => Capability::List,
            Operation::Delete => Capability::Delete,
            Operation::Write => match matched {
                Some((route, captures)) if !acl.is_root() => {
                    match self
                        .exists(route, captures, incoming, found.as_ref())
                        .await?
                    {
                        true => Capability::Update,
                        false => Capability::Create,
                    }
                }
                _ => Capability::Update,
            },
        };
        if !acl.is_root() && !capabilities.contains(&needed) {
            return Err(Error::PermissionDenied.into());
        }
        // The rule's parameter and wrapping constraints, as Vault applies
        // them: reads (query) and writes (body) carry data that is checked.
        let carries_data = matches!(incoming.operation, Operation::Read | Operation::Write);
        if !acl.parameters_allow(&path, list, carries_data, &incoming.data) {
            return Err(Error::PermissionDenied.into());
        }

        let Some((mount, _, rest)) = found else {
            return Err(Error::NoHandler { path }.into());
        };
        let Some((route, captures)) = matched else {
            return Err(Error::UnsupportedPath.into());
        };
        let Some(spec) = route.operation(incoming.operation) else {
            return Err(Error::UnsupportedOperation.into());
        };
        let sudo = acl.is_root() || capabilities.contains(&Capability::Sudo);
        if spec.sudo && !sudo {
            return Err(Error::PermissionDenied.into());
        }
        if incoming.wrap {
            return Err(Error::WrappingNotSupported.into());
        }
        let caller = Caller {
            token: Some(token.to_string()),
            token_hash: Some(entry.id_hash.clone()),
            accessor: Some(entry.accessor.clone()),
            policies: entry.policies.clone(),
            root: acl.is_root(),
            sudo,
        };
        self.dispatch(route, captures, incoming, mount, rest, caller, trail)
            .await
    }

    async fn exists(
        &self,
        route: &AnyRoute,
        captures: &BTreeMap<String, String>,
        incoming: &Incoming,
        found: Option<&(MountEntry, Arc<AnyBackend>, String)>,
    ) -> Result<bool, AnyError> {
        let (Some(check), Some((mount, _, rest))) = (&route.existence, found) else {
            return Ok(true);
        };
        let fields = FieldData::parse(&route.fields, &incoming.data, captures)?;
        let request = Request {
            id: incoming.id.clone(),
            operation: Operation::Read,
            path: rest.clone(),
            mount: mount.path.clone(),
            fields,
            caller: Caller::default(),
        };
        let response = check(request).await?;
        Ok(response.data.is_some())
    }

    #[allow(clippy::too_many_arguments)]
    async fn dispatch(
        &self,
        route: &AnyRoute,
        captures: &BTreeMap<String, String>,
        incoming: &Incoming,
        mount: &MountEntry,
        rest: &str,
        caller: Caller,
        trail: Option<&mut Trail>,
    ) -> Result<Response, AnyError> {
        let spec = route
            .operation(incoming.operation)
            .ok_or(Error::UnsupportedOperation)?;
        let fields = FieldData::parse(&route.fields, &incoming.data, captures)?;
        if incoming.operation == Operation::Write {
            fields.check_required(&route.fields)?;
        }
        let unknown = fields.unknown.clone();
        let request = Request {
            id: incoming.id.clone(),
            operation: incoming.operation,
            path: rest.to_string(),
            mount: mount.path.clone(),
            fields,
            caller,
        };
        // The request record before the handler: a request no device
        // recorded does not run.
        if let Some(trail) = trail {
            trail.before_handler(&self.audit, mount).await?;
        }
        let mut response = (spec.handler)(request).await?;
        if !unknown.is_empty() && !response.is_empty() && response.raw.is_none() {
            response.warnings.push(format!(
                "Endpoint ignored these unrecognized parameters: [{}]",
                unknown.join(" ")
            ));
        }
        Ok(response)
    }
}
