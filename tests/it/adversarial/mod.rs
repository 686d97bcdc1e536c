//! Attacks on pgsecrets, each written as the attacker would try it and
//! named for the refusal it must meet. A token holds only the capability
//! the attack needs; PostgreSQL is real, and the outcome is checked in
//! PostgreSQL itself (`pg_roles`, `pg_auth_members`, `pg_database.datacl`)
//! or in what a fake server captured, not only in pgsecrets' answer.
//!
//! One file per class of attack:
//! - `tokens`: `num_uses` under concurrency, children of limited tokens;
//! - `http`: starving the listener (silent sockets, slow heads and bodies,
//!   idle keep-alive connections);
//! - `logs`: secrets in logs at `trace`;
//! - `passwords`: stored passwords sent where nobody vouched for the
//!   server (clone without sudo, a fake server asking for cleartext or md5,
//!   a cluster's server swapped, weakened TLS trust);
//! - `disable`: purging a cluster whose users await revocation, issuing
//!   credentials while the cluster is disabled;
//! - `leases`: renewals racing a revocation (direct, background, by prefix,
//!   by token), a crash after a revocation was accepted, leases that end
//!   before their duration;
//! - `registration`: one server registered under a second name (or with a
//!   role another cluster manages), reconcile across registrations, cluster
//!   names that prefix others, and racing registrations (one mount, two
//!   pgsecrets) that must never store a root password that fails;
//! - `owner`: privileged objects-owner roles (predefined, CREATEROLE,
//!   superuser, chains, pgsecrets' own roles and users, memberships
//!   changed after the write), adopting without sudo, template databases
//!   and `postgres`.

mod disable;
mod http;
mod leases;
mod logs;
mod owner;
mod passwords;
mod registration;
mod tokens;

use serde_json::json;

use crate::support::server::TestServer;

/// Writes the ACL policy `name` (as root).
async fn policy(s: &TestServer, name: &str, hcl: &str) {
    let r = s
        .write(
            &format!("sys/policies/acl/{name}"),
            json!({ "policy": hcl }),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
}

/// A token holding only the policy `hcl` (and `default`): the attacker.
async fn token_for(s: &TestServer, name: &str, hcl: &str) -> String {
    policy(s, name, hcl).await;
    s.token_with(&[name]).await
}
