//! Role statements that grant or revoke privileges on objects (`GRANT ...
//! ON ... TO`, `REVOKE ... ON ... FROM`) run as the database's objects-owner
//! role: creation statements, and revocation statements, whose `REVOKE ...
//! ON` must be made by the role that granted.
//!
//! Why: the tables of a managed database belong to its objects-owner role
//! (issued users act as it), and PostgreSQL lets only a table's owner, or a
//! role holding the privilege WITH GRANT OPTION, grant on it. The
//! management role is a member of the owner, but NOINHERIT: as itself it
//! holds none of the owner's rights, so the role from Vault's docs (`GRANT
//! SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}"`) would fail with
//! `permission denied for table` as soon as the schema has a table.
//!
//! Why running them as the owner is safe:
//! - it gives the statements nothing they could not take already: the
//!   management role may `SET ROLE` to the owner (pgsecrets granted it the
//!   membership), so any creation statement could say `SET ROLE
//!   "{{objects_owner}}"` itself;
//! - the owner holds less than the management role: it is checked to carry
//!   no attribute and no membership of a privileged role (`owner_role`; that
//!   guard still runs first, as the management role, in the same
//!   transaction, before any statement runs as the owner), so as the owner a
//!   GRANT can give only privileges on the database's own objects, and no
//!   role membership (`GRANT role TO ...`, which needs CREATEROLE or ADMIN,
//!   has no `ON` and stays with the management role);
//! - `SET LOCAL` ends with the transaction, and `RESET ROLE` follows each
//!   such statement, so the statements after it, and the pooled
//!   connection, are the management role again.
//!
//! Only in databases pgsecrets initialised: elsewhere the management role
//! may not be a member of the owner, and statements run as before.
//!
//! A grant the owner may not make (a table owned by a role it cannot act
//! as) still fails, and rolls the user back; [`explain`] then names the
//! tables and their owners. Nothing parses SQL beyond keywords: what runs is
//! the statements' own text (`postgres::statements`).

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::Error;
use crate::postgres::ident;
use crate::postgres::statements::{self, Kind, Statement, Token};

/// How many tables a refusal names.
const NAMED_TABLES: i64 = 10;

/// Words after `ON` that name a kind of object other than tables.
const OTHER_KINDS: &[&str] = &[
    "sequence",
    "database",
    "domain",
    "foreign",
    "function",
    "procedure",
    "routine",
    "language",
    "large",
    "schema",
    "tablespace",
    "type",
    "parameter",
];

/// What the wrapped grants grant on, for naming the tables a refusal is
/// about.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// `ALL TABLES IN SCHEMA ...`.
    pub table_schemas: Vec<String>,
    /// `ALL SEQUENCES IN SCHEMA ...`.
    pub sequence_schemas: Vec<String>,
    /// Relations named one by one, as written (`public."T"`).
    pub relations: Vec<String>,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.table_schemas.is_empty()
            && self.sequence_schemas.is_empty()
            && self.relations.is_empty()
    }
}

/// The tokens after `ON` and before `TO` (`FROM`) of a statement that
/// grants (revokes) privileges on objects; `None` for any other statement,
/// role memberships included (`GRANT role TO ...` has no `ON`).
fn on_objects<'s, 'a>(statement: &'s Statement<'a>) -> Option<Vec<&'s Token<'a>>> {
    let mut code = statement.code();
    let first = code.next()?;
    let end = if first.is("grant") {
        "to"
    } else if first.is("revoke") {
        "from"
    } else {
        return None;
    };
    let head: Vec<&Token> = code.take_while(|t| !t.is(end)).collect();
    let on = head.iter().position(|t| t.is("on"))?;
    Some(head[on + 1..].to_vec())
}

/// Names separated by commas (`a, "B"`; qualified names kept as written).
fn name_list(tokens: &[&Token]) -> Vec<String> {
    tokens
        .split(|t| t.kind == Kind::Other && t.text == ",")
        .filter(|name| !name.is_empty())
        .map(|name| name.iter().map(|t| t.text).collect())
        .collect()
}

/// Adds what one object grant (or revoke) is about to `targets`.
fn collect(on: &[&Token], targets: &mut Targets) {
    let is = |i: usize, word: &str| on.get(i).is_some_and(|t| t.is(word));
    if is(0, "all") && is(2, "in") && is(3, "schema") {
        let schemas = on[4..].iter().filter_map(|t| t.name()).collect::<Vec<_>>();
        if is(1, "tables") {
            targets.table_schemas.extend(schemas);
        } else if is(1, "sequences") {
            targets.sequence_schemas.extend(schemas);
        }
    } else if is(0, "table") {
        targets.relations.extend(name_list(&on[1..]));
    } else if !on
        .first()
        .is_some_and(|t| t.is("all") || OTHER_KINDS.iter().any(|k| t.is(k)))
    {
        targets.relations.extend(name_list(on));
    }
}

/// The statements with each grant or revoke on objects run as `owner`,
/// and what those are about. A statement with none is kept exactly as
/// written.
pub fn as_owner(rendered: Vec<String>, owner: &str) -> (Vec<String>, Targets) {
    let mut targets = Targets::default();
    let statements = rendered
        .into_iter()
        .map(|statement| {
            let parts = statements::split(&statement);
            if !parts.iter().any(|p| on_objects(p).is_some()) {
                return statement;
            }
            parts
                .iter()
                .map(|part| match on_objects(part) {
                    Some(on) => {
                        collect(&on, &mut targets);
                        format!(
                            "SET LOCAL ROLE {};\n{};\nRESET ROLE",
                            ident(owner),
                            part.sql()
                        )
                    }
                    None => part.sql(),
                })
                .collect::<Vec<_>>()
                .join(";\n")
        })
        .collect();
    (statements, targets)
}

/// The warning a role write gets when its statements grant on all tables
/// of a schema. Roles apply to every database of the mount, some of them
/// unreachable or not yet created, so the tables are checked at issue time
/// ([`explain`]) and the write only says what they must be.
pub fn all_tables_warning(creation: &[String]) -> Option<String> {
    let mut schemas = Vec::new();
    for statement in creation {
        for part in statements::split(statement) {
            let grant = part.code().next().is_some_and(|t| t.is("grant"));
            if let Some(on) = on_objects(&part).filter(|_| grant) {
                let mut targets = Targets::default();
                collect(&on, &mut targets);
                schemas.extend(targets.table_schemas);
            }
        }
    }
    if schemas.is_empty() {
        return None;
    }
    schemas.sort();
    schemas.dedup();
    let schemas = schemas
        .iter()
        .map(|s| ident(s))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!("a creation statement grants on ALL TABLES IN SCHEMA {schemas}: pgsecrets runs GRANT ... ON ... statements as the database's objects owner role ({{{{objects_owner}}}}), which may grant only on tables it owns (or whose owner it is a member of); a table there owned by any other role makes credential issue fail with 400 naming the table and its owner. The tables are checked when credentials are issued, not now: a role applies to every database of the mount"))
}

/// The tables among `targets` that `owner` may not grant on: neither its
/// own nor owned by a role whose rights it has. Qualified names, owners,
/// and how many there are in all.
async fn unreachable_tables(
    client: &Client,
    owner: &str,
    targets: &Targets,
) -> Result<Vec<(String, String, i64)>, tokio_postgres::Error> {
    // `to_regclass` resolves names as the grant did (search_path, quoting)
    // and gives NULL for ones that do not exist.
    let rows = client
        .query(
            "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname),
                    pg_catalog.pg_get_userbyid(c.relowner)::text,
                    pg_catalog.count(*) OVER ()
             FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE ((n.nspname::text = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'f'))
                 OR (n.nspname::text = ANY($2::text[]) AND c.relkind = 'S')
                 OR c.oid = ANY(ARRAY(SELECT pg_catalog.to_regclass(x)
                                      FROM pg_catalog.unnest($3::text[]) x)))
               AND NOT pg_catalog.pg_has_role($4::text::name, c.relowner, 'USAGE')
             ORDER BY 1
             LIMIT $5",
            &[
                &targets.table_schemas,
                &targets.sequence_schemas,
                &targets.relations,
                &owner,
                &NAMED_TABLES,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// A permission error from a script whose grants ran as `owner`, told as
/// what to fix: the tables (up to ten) `owner` may not grant on, with their
/// owners. Any other error, or one no such table explains, is returned as
/// it was. `client` is the connection the script failed on; its implicit
/// transaction has rolled back.
pub async fn explain(client: &Client, owner: &str, targets: &Targets, error: Error) -> Error {
    let Error::Refused { code, message } = &error else {
        return error;
    };
    if code != SqlState::INSUFFICIENT_PRIVILEGE.code() || targets.is_empty() {
        return error;
    }
    let tables = match unreachable_tables(client, owner, targets).await {
        Ok(tables) if !tables.is_empty() => tables,
        // The refusal stands as PostgreSQL gave it: the explanation is extra.
        _ => return error,
    };
    let total = tables[0].2;
    let mut named = tables
        .iter()
        .map(|(table, table_owner, _)| format!("{table} (owned by {})", ident(table_owner)))
        .collect::<Vec<_>>()
        .join(", ");
    if total > tables.len() as i64 {
        named.push_str(&format!(" and {} more", total - tables.len() as i64));
    }
    Error::GrantRefused {
        message: format!(
            "no user was created: the creation statements' GRANTs run as the objects owner role {owner_q}, which may not grant on {named}; make {owner_q} their owner (ALTER TABLE ... OWNER TO {owner_q}) or leave them out of the grants (PostgreSQL: {message})",
            owner_q = ident(owner),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VAULT_DOCS: &str = r#"CREATE ROLE "v-x" WITH LOGIN PASSWORD 'p;w' VALID UNTIL '2030-01-01'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO "v-x";"#;

    #[test]
    fn object_grants_run_as_the_owner_and_the_rest_as_written() {
        let (out, targets) = as_owner(
            vec![
                VAULT_DOCS.to_string(),
                r#"GRANT "owner" TO "v-x""#.to_string(),
            ],
            "own\"er",
        );
        assert_eq!(
            out[0],
            "CREATE ROLE \"v-x\" WITH LOGIN PASSWORD 'p;w' VALID UNTIL '2030-01-01';\nSET LOCAL ROLE \"own\"\"er\";\nGRANT SELECT ON ALL TABLES IN SCHEMA public TO \"v-x\";\nRESET ROLE"
        );
        assert_eq!(
            out[1], r#"GRANT "owner" TO "v-x""#,
            "role grants stay as written"
        );
        assert_eq!(targets.table_schemas, ["public"]);
    }

    #[test]
    fn revokes_on_objects_run_as_the_owner_and_role_revokes_do_not() {
        let (out, targets) = as_owner(
            vec![
                r#"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "v-x"; DROP ROLE "v-x""#
                    .to_string(),
                r#"REVOKE "o" FROM "v-x""#.to_string(),
            ],
            "o",
        );
        assert_eq!(
            out[0],
            "SET LOCAL ROLE \"o\";\nREVOKE ALL ON ALL TABLES IN SCHEMA public FROM \"v-x\";\nRESET ROLE;\nDROP ROLE \"v-x\""
        );
        assert_eq!(out[1], r#"REVOKE "o" FROM "v-x""#);
        assert_eq!(targets.table_schemas, ["public"]);
    }

    #[test]
    fn targets_are_schemas_or_relations_as_written() {
        let (_, t) = as_owner(
            vec![
                r#"grant select on all tables in schema "App", public to x; grant usage on all sequences in schema s to x"#.into(),
                r#"GRANT SELECT, UPDATE (a) ON TABLE public."T", t2 TO x; GRANT SELECT ON t3 TO x"#.into(),
                "GRANT USAGE ON SCHEMA public TO x; GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO x".into(),
            ],
            "o",
        );
        assert_eq!(
            t,
            Targets {
                table_schemas: vec!["App".into(), "public".into()],
                sequence_schemas: vec!["s".into()],
                relations: vec![r#"public."T""#.into(), "t2".into(), "t3".into()],
            }
        );
    }

    #[test]
    fn statements_without_object_grants_are_untouched() {
        let text = "CREATE ROLE \"a\" LOGIN -- no grant here; GRANT x ON y TO z\n";
        let (out, t) = as_owner(vec![text.into()], "o");
        assert_eq!(out, [text]);
        assert!(t.is_empty());
    }

    #[test]
    fn only_all_tables_grants_warn() {
        assert!(all_tables_warning(&[VAULT_DOCS.into()])
            .unwrap()
            .contains(r#"IN SCHEMA "public":"#));
        assert!(all_tables_warning(&["GRANT SELECT ON t TO \"{{name}}\"".into()]).is_none());
        assert!(
            all_tables_warning(&["GRANT \"{{objects_owner}}\" TO \"{{name}}\"".into()]).is_none()
        );
    }
}
