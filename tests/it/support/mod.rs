//! Fixtures shared by the integration tests: real PostgreSQL servers and a
//! real pgsecrets server on an ephemeral port.

#![allow(dead_code)]

pub mod certs;
pub mod openbao;
pub mod pg;
pub mod process;
pub mod server;
