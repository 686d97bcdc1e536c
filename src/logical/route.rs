//! Declarative routes: one table per backend from which matching, field
//! parsing, ACL needs, `?help=1`, OpenAPI and `routes/*.md` all come.
//!
//! A route is written as a template such as `cluster/{cluster}/{database}`:
//! `{x}` captures a name following Vault's generic name pattern, `{x*}` captures
//! the rest of the path (it may hold slashes), and everything else is regex
//! text (so `roles/?` matches with or without the trailing slash).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use regex::Regex;

use super::{Field, FieldKind, Operation, Request, Response};

/// Vault's generic name, `\w(([\w-.]+)?\w)?`, with ASCII `\w` as in Go.
pub const NAME_PATTERN: &str = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?";

/// What a handler returns; `E` is its own layer's error (the engine's, the
/// built-in `sys/` routes'), which the router turns into the one error every
/// status is mapped from ([`Route::map_err`]).
pub type HandlerFuture<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;
pub type Handler<E> = Arc<dyn Fn(Request) -> HandlerFuture<E> + Send + Sync>;

/// Wraps an async method of a shared backend state into a [`Handler`].
pub fn handler<S, F, Fut, E>(state: &Arc<S>, f: F) -> Handler<E>
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response, E>> + Send + 'static,
{
    let state = Arc::clone(state);
    Arc::new(move |request| Box::pin(f(Arc::clone(&state), request)))
}

/// `handler` with its errors converted by `f`.
fn map_handler<E: 'static, F: 'static>(handler: Handler<E>, f: fn(E) -> F) -> Handler<F> {
    Arc::new(move |request| {
        let running = handler(request);
        Box::pin(async move { running.await.map_err(f) })
    })
}

/// One operation a route offers.
pub struct OperationSpec<E> {
    pub operation: Operation,
    pub summary: &'static str,
    pub handler: Handler<E>,
    /// The caller needs `sudo` on the path as well as the operation's capability.
    pub sudo: bool,
}

impl<E> Clone for OperationSpec<E> {
    fn clone(&self) -> Self {
        OperationSpec {
            operation: self.operation,
            summary: self.summary,
            handler: Arc::clone(&self.handler),
            sudo: self.sudo,
        }
    }
}

/// One entry of a backend's route table.
pub struct Route<E> {
    pub template: &'static str,
    pub regex: Regex,
    pub fields: Vec<Field>,
    pub operations: Vec<OperationSpec<E>>,
    pub synopsis: &'static str,
    pub description: &'static str,
    /// Served without a token (health, OpenAPI, build info).
    pub unauthenticated: bool,
    /// Tells whether the object a write targets exists, so the ACL can ask for
    /// `create` or `update` as Vault does. Without it a write needs `update`.
    pub existence: Option<Handler<E>>,
}

impl<E> Clone for Route<E> {
    fn clone(&self) -> Self {
        Route {
            template: self.template,
            regex: self.regex.clone(),
            fields: self.fields.clone(),
            operations: self.operations.clone(),
            synopsis: self.synopsis,
            description: self.description,
            unauthenticated: self.unauthenticated,
            existence: self.existence.clone(),
        }
    }
}

impl<E: 'static> Route<E> {
    /// The same route, its handlers' errors converted by `f`: where the
    /// router gathers every backend's routes under one error type.
    pub fn map_err<F: 'static>(self, f: fn(E) -> F) -> Route<F> {
        Route {
            template: self.template,
            regex: self.regex,
            fields: self.fields,
            operations: self
                .operations
                .into_iter()
                .map(|spec| OperationSpec {
                    operation: spec.operation,
                    summary: spec.summary,
                    handler: map_handler(spec.handler, f),
                    sudo: spec.sudo,
                })
                .collect(),
            synopsis: self.synopsis,
            description: self.description,
            unauthenticated: self.unauthenticated,
            existence: self.existence.map(|h| map_handler(h, f)),
        }
    }
}

impl<E> Route<E> {
    pub fn new(
        template: &'static str,
        synopsis: &'static str,
        description: &'static str,
    ) -> Route<E> {
        let regex = Regex::new(&template_to_regex(template))
            .unwrap_or_else(|e| panic!("route template {template:?} does not compile: {e}"));
        Route {
            template,
            regex,
            fields: Vec::new(),
            operations: Vec::new(),
            synopsis,
            description,
            unauthenticated: false,
            existence: None,
        }
    }

    pub fn field(mut self, field: Field) -> Route<E> {
        self.fields.push(field);
        self
    }

    /// Several fields at once, for a set routes share.
    pub fn fields(mut self, fields: impl IntoIterator<Item = Field>) -> Route<E> {
        self.fields.extend(fields);
        self
    }

    pub fn op(
        mut self,
        operation: Operation,
        summary: &'static str,
        handler: Handler<E>,
    ) -> Route<E> {
        self.operations.push(OperationSpec {
            operation,
            summary,
            handler,
            sudo: false,
        });
        self
    }

    /// An operation that also needs `sudo` on the path.
    pub fn sudo_op(
        mut self,
        operation: Operation,
        summary: &'static str,
        handler: Handler<E>,
    ) -> Route<E> {
        self.operations.push(OperationSpec {
            operation,
            summary,
            handler,
            sudo: true,
        });
        self
    }

    pub fn unauthenticated(mut self) -> Route<E> {
        self.unauthenticated = true;
        self
    }

    pub fn existence(mut self, check: Handler<E>) -> Route<E> {
        self.existence = Some(check);
        self
    }

    pub fn operation(&self, operation: Operation) -> Option<&OperationSpec<E>> {
        self.operations.iter().find(|o| o.operation == operation)
    }

    /// Named captures of `path`, or `None` when the route does not match.
    pub fn captures(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let caps = self.regex.captures(path)?;
        Some(
            self.regex
                .capture_names()
                .flatten()
                .filter_map(|name| {
                    caps.name(name)
                        .map(|m| (name.to_string(), m.as_str().into()))
                })
                .collect(),
        )
    }

    /// The names of the template's captures, in order.
    pub fn capture_names(&self) -> Vec<&str> {
        self.regex.capture_names().flatten().collect()
    }

    /// The OpenAPI form of the path: `cluster/{cluster}` with the optional
    /// trailing slash dropped.
    pub fn openapi_path(&self) -> String {
        self.template
            .trim_end_matches("/?")
            .replace("*}", "}")
            .to_string()
    }

    /// Whether this route's captures follow the declared field kinds.
    pub fn capture_kind(&self, name: &str) -> Option<FieldKind> {
        self.fields.iter().find(|f| f.name == name).map(|f| f.kind)
    }
}

impl<E> std::fmt::Debug for Route<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("template", &self.template)
            .finish()
    }
}

/// Turns `cluster/{cluster}/?` into `^cluster/(?P<cluster>NAME)/?$`.
pub fn template_to_regex(template: &str) -> String {
    let mut out = String::from("^");
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .unwrap_or_else(|| panic!("unclosed capture in route template {template:?}"));
        let name = &rest[start + 1..end];
        match name.strip_suffix('*') {
            Some(name) => out.push_str(&format!("(?P<{name}>.+)")),
            None => out.push_str(&format!("(?P<{name}>{NAME_PATTERN})")),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out.push('$');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_vault_names_only() {
        let r = Route::<()>::new("cluster/{cluster}/{database}", "s", "d");
        let caps = r.captures("cluster/c-1.x/app_db").unwrap();
        assert_eq!(caps["cluster"], "c-1.x");
        assert_eq!(caps["database"], "app_db");
        assert!(r.captures("cluster/-bad/x").is_none());
        assert!(r.captures("cluster/bad./x").is_none());
        assert!(r.captures("cluster/a\"b/x").is_none());
        assert!(r.captures("cluster/é/x").is_none());
        assert!(r.captures("cluster/a;b/x").is_none());
    }

    #[test]
    fn optional_slash_and_rest_captures() {
        let r = Route::<()>::new("roles/?", "s", "d");
        assert!(r.captures("roles").is_some());
        assert!(r.captures("roles/").is_some());
        assert_eq!(r.openapi_path(), "roles");
        let r = Route::<()>::new("leases/lookup/{prefix*}", "s", "d");
        assert_eq!(
            r.captures("leases/lookup/a/b/c").unwrap()["prefix"],
            "a/b/c"
        );
        assert_eq!(r.openapi_path(), "leases/lookup/{prefix}");
    }
}
