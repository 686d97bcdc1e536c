//! `roles/`: TTLs and SQL statements for issued users. Roles apply to every
//! cluster and database of the mount.

use std::sync::Arc;

use serde_json::json;

use super::records::{
    keys, now, RoleRecord, DEFAULT_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH,
};
use super::username::Template;
use super::{grants, template, Engine, Error};
use crate::logical::{handler, Field, Operation, Request, Response, Route};
use crate::postgres::scram;

pub fn routes(engine: &Arc<Engine>) -> Vec<Route<Error>> {
    vec![
        Route::new("roles/?", "List roles.", LIST_HELP).op(
            Operation::List,
            "List the role names.",
            handler(engine, list_roles),
        ),
        Route::new("roles/{name}", "Write, read or delete a role.", ROLE_HELP)
            .field(Field::name("name", "Name of the role."))
            .field(Field::duration(
                "default_ttl",
                "Default lease TTL of issued users (0 = the mount's).",
            ))
            .field(Field::duration(
                "max_ttl",
                "Longest lease of issued users, renewals included (0 = the mount's).",
            ))
            .field(Field::strings(
                "creation_statements",
                "SQL run to create a user; templates as in Vault's PostgreSQL plugin.",
            ))
            .field(Field::string(
                "creation_statement",
                "One creation statement (the seed's singular form).",
            ))
            .field(Field::strings(
                "revocation_statements",
                "SQL run to revoke a user (default: pgsecrets' revocation).",
            ))
            .field(Field::string(
                "revocation_statement",
                "One revocation statement (the seed's singular form).",
            ))
            .field(Field::string(
                "username_template",
                "Template of usernames: text with {{role}}, {{cluster}}, {{database}}, {{random N}}, {{unix_time}} (default v-{{role}}-{{random 16}}).",
            ))
            .field(Field::int("password_length", "Length of generated passwords (20 to 100).").default(json!(32)))
            .field(
                Field::int(
                    "password_scram_iterations",
                    "SCRAM-SHA-256 iterations of the verifier sent to PostgreSQL (1 to 100000; generated passwords need no stretching).",
                )
                .default(json!(4096)),
            )
            // As in Vault's database engine: writing a new role needs
            // `create`, replacing one `update`.
            .existence(handler(engine, role_exists))
            .op(
                Operation::Write,
                "Create or replace a role.",
                handler(engine, write_role),
            )
            .op(Operation::Read, "Read a role.", handler(engine, read_role))
            .op(
                Operation::Delete,
                "Delete a role; its leases are still revoked on expiry.",
                handler(engine, delete_role),
            ),
    ]
}

fn statements(req: &Request, plural: &str, singular: &str) -> Vec<String> {
    let mut out = req.fields.list(plural).unwrap_or_default();
    if let Some(one) = req.fields.str(singular) {
        out.push(one);
    }
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

fn check_statements(field: &'static str, statements: &[String]) -> Result<(), Error> {
    for (i, statement) in statements.iter().enumerate() {
        template::parse(statement).map_err(|e| Error::InvalidField {
            field,
            reason: format!("statement {}: {e}", i + 1),
        })?;
    }
    Ok(())
}

async fn write_role(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let name = req.capture("name");
    let existing = engine.load_role(&name).await?;
    let default_ttl = req
        .fields
        .duration("default_ttl")
        .or(existing.as_ref().map(|r| r.default_ttl))
        .unwrap_or(0);
    let max_ttl = req
        .fields
        .duration("max_ttl")
        .or(existing.as_ref().map(|r| r.max_ttl))
        .unwrap_or(0);
    if max_ttl > 0 && default_ttl > max_ttl {
        return Err(Error::InvalidField {
            field: "default_ttl",
            reason: format!("{default_ttl}s is greater than max_ttl ({max_ttl}s)"),
        });
    }
    let mut creation = statements(&req, "creation_statements", "creation_statement");
    if creation.is_empty() && !req.fields.is_set("creation_statements") {
        creation = existing
            .as_ref()
            .map(|r| r.creation_statements.clone())
            .unwrap_or_default();
    }
    let mut revocation = statements(&req, "revocation_statements", "revocation_statement");
    if revocation.is_empty() && !req.fields.is_set("revocation_statements") {
        revocation = existing
            .as_ref()
            .map(|r| r.revocation_statements.clone())
            .unwrap_or_default();
    }
    check_statements("creation_statements", &creation)?;
    check_statements("revocation_statements", &revocation)?;
    if !creation.is_empty()
        && !creation.iter().any(|s| {
            template::parse(s)
                .unwrap_or_default()
                .iter()
                .any(|p| p == "name" || p == "username")
        })
    {
        return Err(Error::InvalidField {
            field: "creation_statements",
            reason: "no statement uses {{name}}: the user to create must be named".into(),
        });
    }
    let username_template = match req.fields.str("username_template") {
        Some(t) if !t.is_empty() => {
            Template::parse(&t).map_err(|reason| Error::InvalidField {
                field: "username_template",
                reason,
            })?;
            Some(t)
        }
        Some(_) => None,
        None => existing.as_ref().and_then(|r| r.username_template.clone()),
    };
    let password_length = match req.fields.is_set("password_length") {
        true => req.fields.int("password_length").unwrap_or(0),
        false => existing
            .as_ref()
            .map(|r| r.password_length as i64)
            .unwrap_or(DEFAULT_PASSWORD_LENGTH as i64),
    };
    if !(MIN_PASSWORD_LENGTH as i64..=MAX_PASSWORD_LENGTH as i64).contains(&password_length) {
        return Err(Error::InvalidField {
            field: "password_length",
            reason: format!(
                "{password_length} is not from {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH}"
            ),
        });
    }
    let iterations = match req.fields.is_set("password_scram_iterations") {
        true => req.fields.int("password_scram_iterations").unwrap_or(0),
        false => existing
            .as_ref()
            .map(|r| r.password_scram_iterations as i64)
            .unwrap_or(scram::DEFAULT_ITERATIONS as i64),
    };
    if !(1..=100_000).contains(&iterations) {
        return Err(Error::InvalidField {
            field: "password_scram_iterations",
            reason: format!("{iterations} is not from 1 to 100000"),
        });
    }
    let mut warnings = Vec::new();
    if creation.iter().any(|s| grants_on_tables_to_user(s)) {
        warnings.push("a creation statement grants table privileges to {{name}}: per-user grants pile up in pg_class.relacl and PostgreSQL fails with \"row is too big\" after one or two thousand users; grant to the objects owner role ({{objects_owner}}) instead, which every issued user is a member of".to_string());
    }
    warnings.extend(grants::all_tables_warning(&creation));
    let stamp = now();
    let record = RoleRecord {
        username_template,
        password_length: password_length as usize,
        password_scram_iterations: iterations as u32,
        name: name.clone(),
        default_ttl,
        max_ttl,
        creation_statements: creation,
        revocation_statements: revocation,
        created_at: existing
            .map(|r| r.created_at)
            .unwrap_or_else(|| stamp.clone()),
        updated_at: stamp,
    };
    engine
        .storage
        .put_json(&keys::role(&engine.prefix, &name), &record)
        .await?;
    Ok(if warnings.is_empty() {
        Response::empty()
    } else {
        warnings
            .into_iter()
            .fold(Response::default(), Response::with_warning)
    })
}

/// Whether a statement grants privileges on tables to the issued user
/// itself (the pattern that bloats `pg_class.relacl`).
fn grants_on_tables_to_user(statement: &str) -> bool {
    let lower = statement.to_ascii_lowercase();
    lower.split(';').any(|part| {
        let part = part.trim();
        part.starts_with("grant")
            && part.contains(" on ")
            && (part.contains("table") || part.contains(" on all"))
            && part
                .rsplit_once(" to ")
                .is_some_and(|(_, to)| to.contains("{{name}}") || to.contains("{{username}}"))
    })
}

async fn role_exists(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    Ok(match engine.load_role(&req.capture("name")).await? {
        Some(_) => Response::json(json!({"exists": true})),
        None => Response::empty(),
    })
}

async fn read_role(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    Ok(match engine.load_role(&req.capture("name")).await? {
        Some(r) => Response::json(json!({
            "default_ttl": r.default_ttl,
            "max_ttl": r.max_ttl,
            "creation_statements": r.creation_statements,
            "revocation_statements": r.revocation_statements,
            "username_template": r.username_template,
            "password_length": r.password_length,
            "password_scram_iterations": r.password_scram_iterations,
            "created_at": r.created_at,
            "updated_at": r.updated_at,
        })),
        None => Response::empty(),
    })
}

async fn delete_role(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let name = req.capture("name");
    if engine.load_role(&name).await?.is_none() {
        return Err(Error::RoleNotFound { name });
    }
    engine
        .storage
        .delete(&keys::role(&engine.prefix, &name))
        .await?;
    Ok(Response::empty())
}

async fn list_roles(engine: Arc<Engine>, _req: Request) -> Result<Response, Error> {
    Ok(Response::list(
        engine.storage.list(&keys::roles(&engine.prefix)).await?,
    ))
}

const LIST_HELP: &str = "Lists the role names of this mount.";
const ROLE_HELP: &str = r#"A role describes the users issued by `creds/<cluster>/<database>/<role>`: their lease TTLs and the SQL that creates and revokes them. Roles apply to every cluster and database of the mount.

Statements follow Vault's PostgreSQL plugin convention, so its roles work unchanged: values are substituted as they are and the statement supplies the quotes, e.g. `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE "{{objects_owner}}";`. Placeholders: `{{name}}` (alias `{{username}}`), `{{password}}` (the SCRAM verifier, never the password), `{{expiration}}`, `{{database}}`, `{{objects_owner}}`, `{{group}}` (the management role). An unknown placeholder is refused when the role is written. Statements run as the management role, except those granting or revoking privileges on objects (`GRANT ... ON ...`, `REVOKE ... ON ...`), which run as the database's objects-owner role (in databases pgsecrets initialised): it owns the tables, and the management role, a NOINHERIT member of it, holds none of its rights itself. So Vault's `GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}"` works on the tables the owner role owns; a table owned by a role it cannot act as makes credential issue fail with 400, naming up to 10 such tables and their owners, and no user is created. A write whose statements grant on `ALL TABLES IN SCHEMA` warns of this (the tables themselves are checked at issue time: a role applies to every database). `creation_statement` and `revocation_statement` are accepted as one-statement forms. `default_ttl` must not exceed `max_ttl`. Deleting a role blocks renewal of its leases; they are still revoked on expiry."#;
