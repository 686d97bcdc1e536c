//! pgsecrets integration tests: one binary, a module per area, fixtures in
//! `support/`. Every test drives a real server over HTTP; PostgreSQL-facing
//! tests start real PostgreSQL servers.

mod support;

mod bench;
mod cli;
mod clone;
mod cluster_tls;
mod clusters;
mod crash;
mod creds;
mod databases;
mod docs;
mod engine;
mod gc;
mod hvac;
mod metadata;
mod mounts;
mod pg_fixture;
mod policies;
mod restart;
mod roles;
mod sys;
mod tls;
mod tokens;
mod wire;
