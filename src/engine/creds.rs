//! `creds/<cluster>/<database>/<role>`: issue a fresh PostgreSQL user under
//! a lease.
//!
//! Order, for crash safety: the lease (username, cluster, database, expiry)
//! is stored durably first; then the role's statements run as the
//! management role (their grants on objects as the objects owner: `grants`)
//! in one transaction in the target database; then the credentials are
//! returned. The script starts with the objects-owner check
//! (`owner_role`), so a privileged owner refuses the issue with no user
//! made. One durable write per credential, and a crash at any point
//! leaves every created user under a lease: at worst a lease whose user
//! was never created, whose revocation finds no user and succeeds. A
//! creation that certainly failed removes its lease; one whose outcome is
//! unknown (the connection broke) is revoked at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use serde_json::json;

use super::owner_role::{self, ClusterRoles};
use super::pools::Who;
use super::records::{ClusterRecord, DatabaseRecord, RoleRecord, State};
use super::username::Template;
use super::{grants, template, Engine, Error};
use crate::lease::{ttl, LeaseEntry, TtlLimits};
use crate::logical::{handler, Field, Operation, Request, Response, Route, Secret};
use crate::postgres::scram;
use crate::random;

/// Statements used when a role gives none: a login user that is a member of
/// the objects-owner role and works as it, so what it creates is owned by
/// that role and stays usable by the next user. No per-user grant on a
/// database, schema or table (those serialise concurrent issuing and bloat
/// catalogs), and the management role is not made a member of the user.
pub const DEFAULT_CREATION: &[&str] = &[
    r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE "{{objects_owner}}""#,
    r#"ALTER ROLE "{{name}}" SET role TO '{{objects_owner}}'"#,
];

/// Characters kept as they are in a URL path segment (RFC 3986 unreserved).
const URL_PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub fn routes(engine: &Arc<Engine>) -> Vec<Route<Error>> {
    vec![Route::new(
        "creds/{cluster}/{database}/{role}",
        "Issue a database user under a lease.",
        HELP,
    )
    .field(Field::name("cluster", "Name of the cluster."))
    .field(Field::name("database", "Name of the database."))
    .field(Field::name("role", "Name of the role."))
    .op(
        Operation::Read,
        "Create a user and return its credentials with a lease.",
        handler(engine, issue_measured),
    )]
}

async fn issue_measured(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    use crate::telemetry::name;
    let started = std::time::Instant::now();
    let cluster = req.capture("cluster");
    let telemetry = engine.telemetry.clone();
    let result = issue(engine, req).await;
    super::measured(
        &telemetry,
        (name::CREATE_USER, name::CREATE_USER_ERROR),
        &cluster,
        started,
        &result,
    );
    result
}

/// `VALID UNTIL` text for a unix time.
pub fn valid_until(unix: i64) -> String {
    Utc.timestamp_opt(unix, 0)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S+00").to_string())
        .unwrap_or_else(|| "infinity".into())
}

/// The values statement templates may use.
pub fn template_values(
    cluster: &ClusterRecord,
    db: &DatabaseRecord,
    username: &str,
    password_verifier: &str,
    expiration: i64,
) -> BTreeMap<&'static str, String> {
    let mut values = BTreeMap::new();
    values.insert("name", username.to_string());
    values.insert("password", password_verifier.to_string());
    values.insert("expiration", valid_until(expiration));
    values.insert("database", db.name.clone());
    values.insert("objects_owner", db.objects_owner_role.clone());
    values.insert("group", cluster.management_role.clone());
    values
}

/// Statements as one multi-statement simple query: one round trip, run as
/// one implicit transaction, so the user is created completely or not at all.
pub fn one_script(statements: &[String]) -> String {
    statements
        .iter()
        .map(|s| s.trim().trim_end_matches(';'))
        .collect::<Vec<_>>()
        .join(";\n")
}

async fn active_database(
    engine: &Engine,
    cluster: &str,
    database: &str,
) -> Result<DatabaseRecord, Error> {
    let db = engine
        .load_database(cluster, database)
        .await?
        .filter(|d| d.state != State::Registering)
        .ok_or_else(|| Error::DatabaseNotFound {
            cluster: cluster.into(),
            database: database.into(),
        })?;
    if db.state == State::Disabled {
        return Err(Error::DatabaseDisabled {
            cluster: cluster.into(),
            database: database.into(),
        });
    }
    Ok(db)
}

/// The cluster and database states read again from storage (no rotation
/// resolved, no lock taken: this runs on every issue).
async fn still_active(engine: &Engine, cluster: &str, database: &str) -> Result<(), Error> {
    match engine.load_cluster(cluster).await? {
        Some(c) if c.state == State::Active => {}
        Some(c) if c.state == State::Disabled => {
            return Err(Error::ClusterDisabled {
                name: cluster.into(),
            })
        }
        _ => {
            return Err(Error::ClusterNotFound {
                name: cluster.into(),
            })
        }
    }
    active_database(engine, cluster, database).await.map(drop)
}

pub fn limits(engine: &Engine, role: Option<&RoleRecord>) -> TtlLimits {
    let mount = *engine.tuning.read().expect("mount tuning");
    TtlLimits {
        role_default: role.map(|r| r.default_ttl).unwrap_or(0),
        role_max: role.map(|r| r.max_ttl).unwrap_or(0),
        mount_default: mount.default_lease_ttl,
        mount_max: mount.max_lease_ttl,
    }
}

async fn issue(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let (cluster_name, db_name, role_name) = (
        req.capture("cluster"),
        req.capture("database"),
        req.capture("role"),
    );
    let role = engine
        .load_role(&role_name)
        .await?
        .ok_or_else(|| Error::RoleNotFound {
            name: role_name.clone(),
        })?;
    let cluster = engine.active_cluster(&cluster_name).await?;
    let db = active_database(&engine, &cluster_name, &db_name).await?;

    // In milliseconds: the lease's end rounds up from the instant, never
    // down from the second (see `ttl`).
    let now_ms = engine.leases.clock.now_ms();
    let now = now_ms.div_euclid(1000);
    let (ttl_seconds, max_end) = ttl::issue(&limits(&engine, Some(&role)), now_ms);
    let expire_time = ttl::expiry(now_ms, ttl_seconds);
    let template = match &role.username_template {
        Some(t) => Template::parse(t).map_err(|reason| Error::InvalidField {
            field: "username_template",
            reason,
        })?,
        None => Template::default_template(),
    };
    let username = template.render(&role_name, &cluster_name, &db_name, now);
    let password = random::alphanumeric(role.password_length);
    let iterations = role.password_scram_iterations;
    let verifier = scram::verifier_async(&password, iterations)
        .await
        .map_err(|e| Error::Postgres(format!("hashing task failed: {e}")))?;
    let values = template_values(&cluster, &db, &username, &verifier, expire_time);
    // The owner is checked again on every issue (memberships change behind
    // pgsecrets' back), in the creation's transaction (see `create_user`).
    owner_role::check_name(&db.objects_owner_role)?;
    let owner_check = owner_role::problem_query(
        &db.objects_owner_role,
        &ClusterRoles {
            root: &cluster.username,
            management: &cluster.management_role,
        },
    );
    let creation: &[String] = &role.creation_statements;
    let rendered: Vec<String> = if creation.is_empty() {
        DEFAULT_CREATION
            .iter()
            .map(|s| template::render(s, &values))
            .collect()
    } else {
        creation
            .iter()
            .map(|s| template::render(s, &values))
            .collect()
    };
    // Grants on objects run as the objects owner, which owns the tables
    // (see `grants` for why that is safe); only where pgsecrets made the
    // management role a member of it.
    let (rendered, grant_targets) = if db.initialized {
        grants::as_owner(rendered, &db.objects_owner_role)
    } else {
        (rendered, grants::Targets::default())
    };
    let script = one_script(&rendered);

    let lease_id = format!(
        "{}{}/{}",
        engine.mount.path,
        req.path.trim_end_matches('/'),
        // Time-ordered: the lease's storage keys append (see `lease`).
        random::time_ordered(24)
    );
    let mut lease = LeaseEntry {
        lease_id: lease_id.clone(),
        mount: engine.mount.path.clone(),
        path: format!("{}{}", engine.mount.path, req.path),
        cluster: cluster_name,
        database: db_name.clone(),
        role: role_name,
        username: username.clone(),
        issue_time: now,
        expire_time,
        last_renewal: None,
        max_end,
        token_hash: req.caller.token_hash.clone(),
        due: expire_time,
        revoking: false,
        failures: 0,
        last_error: None,
        expire_ms: None,
    };
    lease.end_at(crate::lease::ttl::end_ms(now_ms, ttl_seconds));

    // A connection first: without one nothing is written anywhere.
    let mut client = match engine
        .pools
        .client(&cluster, &db_name, Who::Management)
        .await
    {
        Ok(client) => client,
        Err(Error::PoolClosed { .. }) => {
            still_active(&engine, &cluster.name, &db_name).await?;
            return Err(Error::PoolClosed {
                cluster: cluster.name.clone(),
                database: db_name,
            });
        }
        Err(e) => return Err(e),
    };
    let pending = engine.leases.store_pending(&lease).await?;
    // A disable that ran after the checks above listed the leases to revoke
    // before this one existed: read the states again now that the lease is
    // durable, so either that disable's revocation sees the lease or this
    // request sees the disable. A purge, which refuses while leases exist,
    // then cannot forget a cluster this user is being created in.
    if let Err(e) = still_active(&engine, &cluster.name, &db_name).await {
        pending.not_created().await?;
        return Err(e);
    }
    if let Err(error) = create_user(&mut client, &owner_check, &script).await {
        // The transaction rolled back unless the connection broke mid-commit:
        // only a clean database error (or the owner check's answer) proves
        // no user was created.
        if matches!(error, Error::Refused { .. } | Error::OwnerRefused { .. }) {
            pending.not_created().await?;
        } else {
            pending.maybe_created().await?;
        }
        return Err(grants::explain(&client, &db.objects_owner_role, &grant_targets, error).await);
    }
    drop(client);
    // The lease was durable before the user existed: nothing more to write.
    pending.created();

    let ssl_mode = cluster.ssl_mode.as_str();
    let connection_url = format!(
        "postgresql://{username}:{password}@{host}:{port}/{db}?sslmode={ssl_mode}",
        host = cluster.host,
        port = cluster.port,
        db = percent_encoding::utf8_percent_encode(&db_name, URL_PATH),
    );
    let mut response = Response::json(json!({
        "username": username,
        "password": password,
        "host": cluster.host,
        "port": cluster.port,
        "database": db_name,
        "connection_url": connection_url,
    }));
    response.secret = Some(Secret {
        lease_id,
        ttl: ttl_seconds,
        renewable: true,
    });
    Ok(response)
}

/// Checks the objects owner, then runs the creation script, in one
/// transaction: a refused owner rolls it back before any user exists. The
/// check is a statement prepared once per connection (see `owner_role`).
/// It is answered before the script is sent, so no statement of the
/// script (a `COMMIT` among a role's statements, say) can act before it.
/// `Transaction` rolls back when dropped, so a request cancelled half-way
/// leaves no open transaction on a pooled connection.
async fn create_user(
    client: &mut deadpool_postgres::Object,
    owner_check: &str,
    script: &str,
) -> Result<(), Error> {
    let check = client.prepare_cached(owner_check).await?;
    let tx = client.transaction().await?;
    if let Some(row) = tx.query_opt(&check, &[]).await? {
        let _ = tx.rollback().await;
        return Err(Error::OwnerRefused {
            message: row.get(0),
        });
    }
    if let Err(e) = tx.batch_execute(script).await {
        // Said now, so the connection is clean for `grants::explain`.
        let _ = tx.rollback().await;
        return Err(Error::from(e));
    }
    tx.commit().await?;
    Ok(())
}

const HELP: &str = "Creates a fresh PostgreSQL user in the database with the role's statements (run as the management role in one transaction; their `GRANT ... ON ...` and `REVOKE ... ON ...` statements as the objects-owner role, which owns the tables) and returns its credentials under a lease: `username`, `password`, `host`, `port`, `database`, `connection_url`. The username is `v-<role>-<random>` (or the role's `username_template`), at most 63 bytes; the password is sent to PostgreSQL only as a SCRAM-SHA-256 verifier; `VALID UNTIL` is the lease's expiry. Without creation statements the user is a member of the database's objects-owner role and works as that role, so the objects it creates stay usable by later users. The lease TTL is the role's `default_ttl` (else the mount's, else 1h), capped by `max_ttl` (else the mount's, else 24h). Refused when the cluster, database or role is disabled or missing.";
