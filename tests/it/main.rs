//! pgsecrets integration tests: one binary, a module per area, fixtures in
//! `support/`. Every test drives a real server over HTTP; PostgreSQL-facing
//! tests start real PostgreSQL servers.

mod support;

mod adversarial;
mod agent;
mod audit;
mod bao_cli;
mod bench;
mod cli;
mod cli_client;
mod clone;
mod cluster_tls;
mod clusters;
mod crash;
mod creds;
mod databases;
mod dev_mode;
mod differential;
mod differential_acl;
mod differential_corpus;
mod differential_tokens;
mod docs;
mod gc;
mod grants;
mod hvac;
mod layering;
mod metadata;
mod metrics;
mod mounts;
mod node_vault;
mod pg_fixture;
mod policies;
mod quotas;
mod restart;
mod roles;
mod storage_postgresql;
mod sys;
mod tls;
mod tokens;
mod vaultrs;
mod wire;
