//! Plain types shared by every layer: operations, requests, responses, routes,
//! fields, and the backend contract of a mount. Nothing here does I/O.

pub mod backend;
pub mod clock;
pub mod duration;
pub mod field;
pub mod request;
pub mod response;
pub mod route;

pub use backend::{Backend, MountConfig, MountEntry, MountSettings};
pub use clock::Clock;
pub use field::{Field, FieldData, FieldError, FieldKind};
pub use request::{Caller, Operation, Request};
pub use response::{Response, Secret};
pub use route::{handler, Handler, Route};
