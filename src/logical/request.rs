//! A request after the wire layer decoded it and the router matched it.

use super::FieldData;

/// What a request asks for, after Vault's method mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Read,
    /// POST or PUT; the router decides whether the ACL needs `create` or `update`.
    Write,
    Delete,
    List,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "update",
            Operation::Delete => "delete",
            Operation::List => "list",
        }
    }
}

/// Who is asking: the token that authenticated the request.
#[derive(Clone, Default)]
pub struct Caller {
    /// The raw token (for `lookup-self`, which returns it); never logged.
    pub token: Option<String>,
    /// Storage id of the token (its hash); `None` for unauthenticated routes.
    pub token_hash: Option<String>,
    pub accessor: Option<String>,
    pub policies: Vec<String>,
    pub root: bool,
    /// The token's policies grant `sudo` on this request's path.
    pub sudo: bool,
}

/// A routed request, handed to one handler.
#[derive(Debug, Clone)]
pub struct Request {
    pub id: String,
    pub operation: Operation,
    /// The path below the mount (`cluster/c1`).
    pub path: String,
    /// The mount the request was routed to (`database/`).
    pub mount: String,
    pub fields: FieldData,
    pub caller: Caller,
}

impl Request {
    /// The value of a path capture or string field, which the route guarantees.
    pub fn capture(&self, name: &str) -> String {
        self.fields.str(name).unwrap_or_default()
    }
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("accessor", &self.accessor)
            .field("policies", &self.policies)
            .field("root", &self.root)
            .field("sudo", &self.sudo)
            .finish_non_exhaustive()
    }
}
