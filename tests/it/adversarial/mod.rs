//! Attacks on pgsecrets, each written as the attacker would try it and
//! named for the refusal it must meet. A token holds only the capability
//! the attack needs; PostgreSQL is real, and the outcome is checked in
//! PostgreSQL itself (`pg_roles`, `pg_auth_members`, `pg_database.datacl`)
//! or in what a fake server captured, not only in pgsecrets' answer.
//!
//! One file per class of attack:
//! - `owner`: privilege through the objects-owner role, system databases;
//! - `passwords`: stored passwords sent to a server nobody vouched for;
//! - `registration`: one server registered twice, racing registrations;
//! - `leases`: revocation racing renewal, purge stranding users, early expiry,
//!   races that answered 5xx;
//! - `tokens`: `num_uses` under concurrency;
//! - `http`: starving the listener;
//! - `logs`: secrets in logs.

mod http;
mod leases;
mod logs;
mod owner;
mod passwords;
mod registration;
mod tokens;
