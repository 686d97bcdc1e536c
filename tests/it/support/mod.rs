//! Fixtures shared by the integration tests: real PostgreSQL servers and a
//! real pgsecrets server on an ephemeral port.

#![allow(dead_code)]

pub mod allow_list;
pub mod certs;
pub mod differential;
pub mod engine;
pub mod openbao;
pub mod pg;
pub mod process;
pub mod python;
pub mod readme;
pub mod server;
