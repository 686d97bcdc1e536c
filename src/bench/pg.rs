//! The benchmarks' PostgreSQL: the shared launcher
//! ([`crate::postgres::launcher`]) with PostgreSQL's durability defaults
//! kept (`fsync`, `synchronous_commit`, `full_page_writes` on), since the
//! floor is what a correct client gets from a correctly configured server;
//! and the role bookkeeping the runs do between measurements.

use std::path::Path;

use super::Error;
use crate::postgres::launcher::{self, Options};
pub use crate::postgres::launcher::{find_bin, free_port, LocalPg as Pg};

impl From<launcher::Error> for Error {
    fn from(e: launcher::Error) -> Error {
        match e {
            launcher::Error::Io(e) => Error::Io(e),
            other => Error::Setup(other.to_string()),
        }
    }
}

/// A durable server of the binaries in `bin`.
pub fn start(bin: &Path) -> Result<Pg, Error> {
    Ok(Pg::start(
        bin,
        Options {
            durable: true,
            ..Options::new("bench")
        },
    )?)
}

/// The superuser, on database `postgres`.
pub async fn admin(pg: &Pg) -> Result<tokio_postgres::Client, Error> {
    Ok(pg.admin().await?)
}

/// Drops every role whose name starts with `prefix` (they own nothing)
/// and vacuums the catalogs that held them, so the next run starts
/// from the same catalog. A few hundred per statement: each dropped
/// role holds a lock until its transaction ends.
pub async fn drop_roles(pg: &Pg, prefix: &str) -> Result<(), Error> {
    let admin = admin(pg).await?;
    let names: Vec<String> = admin
        .query(
            "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1)",
            &[&prefix],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    drop_named(pg, &names).await
}

/// Drops the roles `names` that exist (they own nothing), then vacuums as
/// [`drop_roles`] does.
pub async fn drop_named(pg: &Pg, names: &[String]) -> Result<(), Error> {
    let admin = admin(pg).await?;
    let names: Vec<String> = admin
        .query(
            "SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)",
            &[&names],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for chunk in names.chunks(500) {
        let list: Vec<String> = chunk.iter().map(|n| crate::postgres::ident(n)).collect();
        admin
            .batch_execute(&format!("DROP ROLE {}", list.join(", ")))
            .await?;
    }
    vacuum_role_catalogs(pg).await
}

/// Reclaims the catalog rows of dropped roles, so that the next measured
/// run does not pay for the previous run's dead tuples.
pub async fn vacuum_role_catalogs(pg: &Pg) -> Result<(), Error> {
    admin(pg)
        .await?
        .batch_execute("VACUUM pg_authid, pg_auth_members, pg_db_role_setting, pg_shdepend")
        .await?;
    Ok(())
}

/// How many roles have names starting with `prefix` (`admin`: a superuser
/// connection, kept open so polling costs no new logins).
pub async fn count_roles(admin: &tokio_postgres::Client, prefix: &str) -> Result<i64, Error> {
    let row = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1)",
            &[&prefix],
        )
        .await?;
    Ok(row.get(0))
}
