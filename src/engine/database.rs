//! `cluster/<cluster>/<database>`: create (or adopt) and initialise a
//! database, read it, disable it.
//!
//! Initialising creates the database's objects-owner role: every temporary
//! user of the database is a member, objects end up owned by it, so what one
//! user creates stays usable by the next and survives revocation. Since
//! PostgreSQL 15 PUBLIC has no CREATE on schema `public`, so the owner role
//! gets USAGE and CREATE there explicitly. Since PostgreSQL 16 a CREATEROLE
//! role may only grant membership in roles it holds ADMIN OPTION on, so the
//! management role is given the owner role WITH ADMIN OPTION.
//!
//! Because every issued user acts as the owner, the owner must carry no
//! privilege (`owner_role`): without sudo it is always a role pgsecrets
//! creates, and an adopted one is checked before it is granted to the
//! management role. The template databases are never set up, and adopting
//! the maintenance database needs sudo.

use std::sync::Arc;

use serde_json::json;

use super::cluster::root_login_error;
use super::owner_role::{self, ClusterRoles};
use super::pools::{self, Who};
use super::records::{now, ClusterRecord, DatabaseRecord, State};
use super::{names, Engine, Error};
use crate::logical::{handler, Field, Operation, Request, Response, Route};
use crate::postgres::{ident, literal};
use crate::random;

pub fn routes(engine: &Arc<Engine>) -> Vec<Route<Error>> {
    vec![Route::new(
        "cluster/{cluster}/{database}",
        "Create, read or disable a database of a cluster.",
        DATABASE_HELP,
    )
    .field(Field::name("cluster", "Name of the cluster."))
    .field(Field::name("database", "Name of the database."))
    .field(
        Field::bool(
            "create_db",
            "Create the database (false adopts an existing one).",
        )
        .default(json!(true)),
    )
    .field(
        Field::bool(
            "initialize",
            "Create the objects-owner role and grant it what temporary users need.",
        )
        .default(json!(true)),
    )
    .field(Field::string(
        "objects_owner_role",
        "Name of the objects-owner role (default: generated). Without sudo it must not exist yet; with sudo an existing unprivileged role may be adopted.",
    ))
    .existence(handler(engine, exists))
    .op(
        Operation::Write,
        "Create or adopt a database and initialise it.",
        handler(engine, write_database),
    )
    .op(
        Operation::Read,
        "Read a database's configuration.",
        handler(engine, read_database),
    )
    .op(
        Operation::Delete,
        "Disable a database, keeping its configuration.",
        handler(engine, disable_database),
    )]
}

async fn exists(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    Ok(
        match engine
            .load_database(&req.capture("cluster"), &req.capture("database"))
            .await?
        {
            Some(_) => Response::json(json!({"exists": true})),
            None => Response::empty(),
        },
    )
}

fn database_json(db: &DatabaseRecord) -> Response {
    Response::json(json!({
        "cluster": db.cluster,
        "name": db.name,
        "objects_owner_role": db.objects_owner_role,
        "created_db": db.created_db,
        "initialized": db.initialized,
        "state": db.state.as_str(),
        "created_at": db.created_at,
        "disabled_at": db.disabled_at,
    }))
}

async fn write_database(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let cluster_name = req.capture("cluster");
    let name = req.capture("database");
    names::check_identifier("database", &name)?;
    if TEMPLATE_DATABASES.contains(&name.as_str()) {
        return Err(Error::TemplateDatabase { database: name });
    }
    let owner_given = req
        .fields
        .str("objects_owner_role")
        .filter(|o| !o.is_empty());
    if let Some(owner) = &owner_given {
        names::check_identifier("objects_owner_role", owner)?;
        owner_role::check_name(owner)?;
    }
    let create_db = req.fields.bool("create_db").unwrap_or(true);
    let initialize = req.fields.bool("initialize").unwrap_or(true);
    let cluster = engine.active_cluster(&cluster_name).await?;
    let lock = engine.lock_for(&cluster_name);
    let _guard = lock.lock().await;

    let existing = engine.load_database(&cluster_name, &name).await?;
    if let Some(db) = &existing {
        if db.state == State::Active {
            return Ok(database_json(db)
                .with_warning("the database is already registered; nothing changed"));
        }
    }
    // A disabled database comes back as it was; an unfinished creation
    // (state registering) resumes with the owner role name it recorded.
    let resuming = existing
        .as_ref()
        .is_some_and(|d| d.state == State::Registering);
    let root = root_client(&cluster, &cluster.database).await?;
    let present = database_exists(&root, &name).await?;
    let mut record = match existing {
        Some(db) => db,
        None => DatabaseRecord {
            cluster: cluster_name.clone(),
            name: name.clone(),
            objects_owner_role: owner_given.clone().unwrap_or_else(|| default_owner(&name)),
            created_db: create_db,
            initialized: initialize,
            state: State::Registering,
            created_at: now(),
            disabled_at: None,
        },
    };
    if !record.created_db
        && (name == MAINTENANCE_DATABASE || name == cluster.database)
        && !req.caller.sudo
    {
        return Err(Error::SudoRequired {
            message: format!("adopting database {name:?}, the cluster's maintenance database where pgsecrets' own connections run, needs sudo on the path"),
        });
    }
    let roles = ClusterRoles {
        root: &cluster.username,
        management: &cluster.management_role,
    };
    if record.state == State::Disabled {
        if !present {
            return Err(Error::DatabaseMissing {
                cluster: cluster_name,
                database: name,
            });
        }
        // Memberships may have changed while it was disabled.
        owner_role::check(&root, &record.objects_owner_role, &roles).await?;
    } else {
        // Every check comes before the intent is written, so a refused
        // request leaves nothing behind.
        if record.created_db && present && !resuming {
            return Err(Error::DatabaseExists {
                cluster: cluster_name,
                database: name,
            });
        }
        if !record.created_db && !present {
            return Err(Error::DatabaseMissing {
                cluster: cluster_name,
                database: name,
            });
        }
        let owner = owner_source(&root, &record, resuming, req.caller.sudo).await?;
        if owner == Owner::Adopt {
            owner_role::check(&root, &record.objects_owner_role, &roles).await?;
        }
        if record.created_db
            && !present
            && !super::cluster::check_root_privileges(&root, &cluster.username).await?
        {
            return Err(Error::RootCannotCreateDatabases {
                user: cluster.username.clone(),
            });
        }
        // The intent: a crash after this point is resumed by writing again.
        engine.save_database(&record).await?;
        if record.created_db && !present {
            // CREATE DATABASE cannot run inside a transaction block.
            root.batch_execute(&format!("CREATE DATABASE {}", ident(&record.name)))
                .await
                .map_err(Error::from)?;
        }
        if record.initialized {
            initialize_database(&cluster, &record, owner, &roles).await?;
        }
    }
    record.state = State::Active;
    record.disabled_at = None;
    engine.save_database(&record).await?;
    Ok(database_json(&record))
}

/// Databases no owner role may ever be set up in.
const TEMPLATE_DATABASES: &[&str] = &["template0", "template1"];

/// PostgreSQL's maintenance database; adopting it (or the cluster's own
/// connection database) needs sudo.
const MAINTENANCE_DATABASE: &str = "postgres";

/// Where the objects-owner role comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Owner {
    /// pgsecrets creates it now: it must not exist when created.
    Create,
    /// pgsecrets created it in an earlier, unfinished attempt (its marker
    /// comment says so): created again only if missing.
    Resume,
    /// An existing role, adopted (sudo only), held to the no-privilege rule.
    Adopt,
}

/// The comment pgsecrets puts on an owner role it creates, so a resumed
/// creation can tell its own role from one someone else created meanwhile.
fn owner_marker(db: &DatabaseRecord) -> String {
    format!("pgsecrets: objects owner of database {:?}", db.name)
}

/// Decides [`Owner`]: without sudo a caller only gets an owner pgsecrets
/// creates; an existing role (or, with `initialize=false`, whatever role of
/// that name someone creates later) is adopted only with sudo.
async fn owner_source(
    root: &tokio_postgres::Client,
    db: &DatabaseRecord,
    resuming: bool,
    sudo: bool,
) -> Result<Owner, Error> {
    let role = &db.objects_owner_role;
    let found = root
        .query(
            "SELECT pg_catalog.shobj_description(oid, 'pg_authid') FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[role],
        )
        .await?;
    let Some(row) = found.first() else {
        if !db.initialized && !sudo {
            return Err(Error::SudoRequired {
                message: format!("initialize=false leaves the objects owner to whatever role named {role:?} exists when credentials are issued, which needs sudo on the path"),
            });
        }
        return Ok(Owner::Create);
    };
    let comment: Option<String> = row.get(0);
    if resuming && comment.as_deref() == Some(owner_marker(db).as_str()) {
        return Ok(Owner::Resume);
    }
    if !sudo {
        return Err(Error::SudoRequired {
            message: format!("objects_owner_role {role:?} already exists, and adopting an existing role as the objects owner needs sudo on the path; name a role that does not exist and pgsecrets creates it"),
        });
    }
    Ok(Owner::Adopt)
}

/// `v-owner-<database>-<random>`, within PostgreSQL's 63 bytes.
fn default_owner(database: &str) -> String {
    let stem: String = database.chars().take(40).collect();
    format!("v-owner-{stem}-{}", random::alphanumeric(6).to_lowercase())
}

async fn root_client(
    cluster: &ClusterRecord,
    database: &str,
) -> Result<tokio_postgres::Client, Error> {
    pools::target(cluster, database, Who::Root)
        .connect()
        .await
        .map_err(|e| root_login_error(cluster, e))
}

async fn database_exists(client: &tokio_postgres::Client, name: &str) -> Result<bool, Error> {
    Ok(!client
        .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_empty())
}

/// Creates (or adopts) the objects-owner role and grants it what temporary
/// users need, in one transaction; every step tolerates having run before
/// (resumed creations). The no-privilege rule is checked again right before
/// the owner is granted to the management role.
async fn initialize_database(
    cluster: &ClusterRecord,
    db: &DatabaseRecord,
    source: Owner,
    roles: &ClusterRoles<'_>,
) -> Result<(), Error> {
    let mut inside = root_client(cluster, &db.name).await?;
    let owner = ident(&db.objects_owner_role);
    let tx = inside.transaction().await?;
    let has_owner = source != Owner::Create
        && !tx
            .query(
                "SELECT 1 FROM pg_roles WHERE rolname = $1",
                &[&db.objects_owner_role],
            )
            .await?
            .is_empty();
    if source != Owner::Adopt && !has_owner {
        // Fails if someone created the role since it was looked up: then it
        // is not pgsecrets' and is not taken over.
        tx.batch_execute(&format!(
            "CREATE ROLE {owner} NOLOGIN; COMMENT ON ROLE {owner} IS {marker};",
            marker = literal(&owner_marker(db)),
        ))
        .await?;
    }
    owner_role::check(&tx, &db.objects_owner_role, roles).await?;
    tx.batch_execute(&format!(
        "GRANT CONNECT, TEMPORARY ON DATABASE {db_name} TO {owner};
         GRANT USAGE, CREATE ON SCHEMA public TO {owner};
         GRANT {owner} TO {manage} WITH ADMIN OPTION;",
        db_name = ident(&db.name),
        manage = ident(&cluster.management_role),
    ))
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn read_database(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    Ok(
        match engine
            .load_database(&req.capture("cluster"), &req.capture("database"))
            .await?
            .filter(|d| d.state != State::Registering)
        {
            Some(db) => database_json(&db),
            None => Response::empty(),
        },
    )
}

async fn disable_database(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let cluster = req.capture("cluster");
    let name = req.capture("database");
    let lock = engine.lock_for(&cluster);
    let _guard = lock.lock().await;
    let mut db = engine
        .load_database(&cluster, &name)
        .await?
        .filter(|d| d.state != State::Registering)
        .ok_or_else(|| Error::DatabaseNotFound {
            cluster: cluster.clone(),
            database: name.clone(),
        })?;
    if db.state == State::Active {
        db.state = State::Disabled;
        db.disabled_at = Some(now());
        engine.save_database(&db).await?;
        engine.pools.close_database(&cluster, &name);
    }
    let revoking = engine.revoke_leases_of(&cluster, Some(&name)).await?;
    Ok(super::cluster::disabled_response(revoking))
}

const DATABASE_HELP: &str = "Writing creates the database (quoted identifier; unless `create_db=false`, which adopts an existing one) and initialises it: an objects-owner role (`objects_owner_role`, default `v-owner-<db>-<random>`) that every temporary user of the database is a member of, with CONNECT and TEMPORARY on the database and USAGE and CREATE on schema `public` (PostgreSQL 15+ no longer grants CREATE there to PUBLIC); the management role gets it WITH ADMIN OPTION (PostgreSQL 16+ requires that to grant membership). Objects one temporary user creates stay usable by the next and survive its revocation. Every issued user acts as the objects owner, so the owner must carry no privilege. Without `sudo` on the path the owner is a role pgsecrets creates: `objects_owner_role` must name a role that does not exist yet (an existing one is refused with 403), and `initialize=false` (which leaves the owner to whatever role of that name exists when credentials are issued) needs sudo. With sudo an existing role may be adopted (its members and objects become reachable by every issued user), but never one that is, or is a member (directly or through other roles) of, a role with SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS, a predefined `pg_*` role, the cluster's root or management role, or an issued user (a login role named `v-...` or with `VALID UNTIL`); members of the owner do not count, since a membership passes rights only to the member. The rule is checked when the database is written and again on every credential issue (in the same round trip as the user's creation), so an owner made privileged later refuses credentials with 400 and no user is created; users issued before keep their membership until revoked. `template0` and `template1` are refused: every new database is copied from template1. Adopting `postgres` (or the cluster's connection database), the maintenance database where pgsecrets' own root and management connections run, needs sudo: it gives the owner, and so every issued user, CONNECT, TEMPORARY and CREATE on schema `public` there, where objects they create sit next to the sessions of the cluster's most privileged roles, and pgsecrets keeps a pooled connection to it. Creating a database that already exists is refused; writing an active one changes nothing; writing a disabled one re-activates it. The cluster must be active. Deleting disables the database: its configuration is kept, new credentials are refused and outstanding leases revoked.";
