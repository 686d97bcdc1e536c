//! The engine's side of the lease manager ([`Revoker`]): revoking users,
//! dropping users of unfinished creations, renewal checks and `VALID UNTIL`.
//!
//! Revocation runs as the management role in the user's database, in one
//! transaction. By default: `NOLOGIN`; membership of the management role in
//! the user is granted here, not at issue time (a management role that is a
//! member of thousands of users makes every `SET ROLE` walk them all);
//! acting as the user, its other sessions are terminated and what it owns
//! goes to the objects-owner role; then the role is dropped. A role's own
//! revocation statements run as the management role, their `REVOKE ... ON`
//! as the objects owner (`grants`). A user that no longer exists counts as
//! revoked.

use std::sync::Arc;

use tokio_postgres::error::SqlState;

use super::creds::{limits, one_script, template_values, valid_until};
use super::pools::{self, Who};
use super::records::{ClusterRecord, DatabaseRecord, State};
use super::{grants, template, Engine, Error};
use crate::lease::{BoxFuture, LeaseEntry, Revoker, RevokerError, TtlLimits};
use crate::postgres::{ident, literal};

/// A connection as the management role to `database` of a cluster (`record`
/// is that database's record, if it has one). Active clusters use their
/// pool; disabled ones a one-off connection, so nothing stays open after
/// the cluster was disabled.
async fn management_client(
    engine: &Engine,
    cluster: &ClusterRecord,
    database: &str,
    record: Option<&DatabaseRecord>,
) -> Result<ManagementClient, Error> {
    let db_active = record.is_some_and(|d| d.state == State::Active);
    if cluster.state == State::Active && db_active {
        return Ok(ManagementClient::Pooled(
            engine
                .pools
                .client(cluster, database, Who::Management)
                .await?,
        ));
    }
    Ok(ManagementClient::Single(
        pools::target(cluster, database, Who::Management)
            .connect()
            .await?,
    ))
}

enum ManagementClient {
    Pooled(deadpool_postgres::Object),
    Single(tokio_postgres::Client),
}

impl std::ops::Deref for ManagementClient {
    type Target = tokio_postgres::Client;
    fn deref(&self) -> &tokio_postgres::Client {
        match self {
            ManagementClient::Pooled(o) => o,
            ManagementClient::Single(c) => c,
        }
    }
}

/// The statements that take `username` out of service before it is dropped:
/// no more logins, its other sessions ended.
fn revocation_prologue(username: &str, management_role: &str, owner: Option<&str>) -> String {
    let user = ident(username);
    // Acting as the user needs membership in it; handing its objects to the
    // owner role needs the user to be a member of that role too (a role from
    // Vault's docs makes users that are not).
    format!(
        "ALTER ROLE {user} NOLOGIN;
         GRANT {user} TO {manage};
         {grant_owner}
         SET ROLE {user};
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = {name} AND pid <> pg_backend_pid();",
        manage = ident(management_role),
        name = literal(username),
        grant_owner = owner
            .map(|o| format!("GRANT {} TO {user};", ident(o)))
            .unwrap_or_default(),
    )
}

/// What it owns goes to the objects-owner role (or is dropped without
/// one), then the role is dropped.
fn default_revocation_body(username: &str, owner: Option<&str>) -> String {
    let user = ident(username);
    format!(
        "{reassign}
         DROP OWNED BY {user};
         RESET ROLE;
         DROP ROLE {user};",
        reassign = owner
            .map(|o| format!("REASSIGN OWNED BY {user} TO {};", ident(o)))
            .unwrap_or_default(),
    )
}

/// The default revocation of an existing user as one script (one implicit
/// transaction), run as the management role in the user's database. Also
/// what the benchmark's revocation floor sends.
pub fn default_revocation(username: &str, management_role: &str, owner: Option<&str>) -> String {
    format!(
        "{}\n{}",
        revocation_prologue(username, management_role, owner),
        default_revocation_body(username, owner)
    )
}

/// Drops `username` from the cluster, from inside `database`.
pub async fn drop_user(
    engine: &Engine,
    cluster: &ClusterRecord,
    database: &str,
    username: &str,
    custom: &[String],
) -> Result<(), Error> {
    let db = engine.load_database(&cluster.name, database).await?;
    let client = management_client(engine, cluster, database, db.as_ref()).await?;
    // Without a known database (reconciliation of a stray user) its objects
    // are dropped rather than handed to an owner role.
    let owner = db.as_ref().map(|d| d.objects_owner_role.clone());
    let prologue = revocation_prologue(username, &cluster.management_role, owner.as_deref());
    let body = if custom.is_empty() {
        default_revocation_body(username, owner.as_deref())
    } else {
        let placeholder_db = db.unwrap_or(DatabaseRecord {
            cluster: cluster.name.clone(),
            name: database.to_string(),
            objects_owner_role: owner.unwrap_or_default(),
            created_db: false,
            initialized: false,
            state: State::Disabled,
            created_at: String::new(),
            disabled_at: None,
        });
        let values = template_values(cluster, &placeholder_db, username, "", 0);
        let statements: Vec<String> = custom
            .iter()
            .map(|s| template::render(s, &values))
            .collect();
        // `REVOKE ... ON` removes only what the revoking role granted: the
        // creation statements' grants were made as the objects owner.
        let statements = if placeholder_db.initialized {
            grants::as_owner(statements, &placeholder_db.objects_owner_role).0
        } else {
            statements
        };
        format!("RESET ROLE;\n{};", one_script(&statements))
    };
    // One multi-statement query: one implicit transaction. It starts with
    // `ALTER ROLE <user>`, so a user that is already gone fails it with
    // undefined_object and nothing changes; only then is it worth asking
    // PostgreSQL whether the user exists (another object may be missing).
    match client.batch_execute(&format!("{prologue}\n{body}")).await {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_OBJECT) => {
            let exists = !client
                .query("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&username])
                .await?
                .is_empty();
            if exists {
                Err(e.into())
            } else {
                Ok(())
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The lease layer's view of an engine error: worth retrying or not.
fn text(e: Error) -> RevokerError {
    if e.is_unavailable() {
        RevokerError::Unavailable(e.to_string())
    } else {
        RevokerError::Refused(e.to_string())
    }
}

impl Engine {
    async fn cluster_for_revocation(&self, name: &str) -> Result<ClusterRecord, Error> {
        let record = self
            .load_cluster(name)
            .await?
            .ok_or_else(|| Error::ClusterNotFound { name: name.into() })?;
        if record.pending.is_some() {
            let lock = self.lock_for(name);
            let _guard = lock.lock().await;
            let current = self.load_cluster(name).await?.unwrap_or(record);
            return super::rotation::resolve(self, current)
                .await?
                .ok_or_else(|| Error::ClusterNotFound { name: name.into() });
        }
        Ok(record)
    }

    async fn revoke_lease(&self, lease: &LeaseEntry) -> Result<(), Error> {
        let cluster = self.cluster_for_revocation(&lease.cluster).await?;
        // A deleted role still has its users revoked, with the default statements.
        let custom = self
            .load_role(&lease.role)
            .await?
            .map(|r| r.revocation_statements)
            .unwrap_or_default();
        drop_user(self, &cluster, &lease.database, &lease.username, &custom).await
    }

    async fn check_renewable(&self, lease: &LeaseEntry) -> Result<TtlLimits, Error> {
        let cluster = self.active_cluster(&lease.cluster).await?;
        let _ = cluster;
        let db = self
            .load_database(&lease.cluster, &lease.database)
            .await?
            .ok_or_else(|| Error::DatabaseNotFound {
                cluster: lease.cluster.clone(),
                database: lease.database.clone(),
            })?;
        if db.state != State::Active {
            return Err(Error::DatabaseDisabled {
                cluster: lease.cluster.clone(),
                database: lease.database.clone(),
            });
        }
        let role = self
            .load_role(&lease.role)
            .await?
            .ok_or_else(|| Error::RoleNotFound {
                name: lease.role.clone(),
            })?;
        Ok(limits(self, Some(&role)))
    }

    async fn move_valid_until(&self, lease: &LeaseEntry, expire_time: i64) -> Result<(), Error> {
        let cluster = self.active_cluster(&lease.cluster).await?;
        let db = self.load_database(&lease.cluster, &lease.database).await?;
        let client = management_client(self, &cluster, &lease.database, db.as_ref()).await?;
        client
            .batch_execute(&format!(
                "ALTER ROLE {} VALID UNTIL {}",
                ident(&lease.username),
                literal(&valid_until(expire_time))
            ))
            .await?;
        Ok(())
    }
}

impl Revoker for Engine {
    fn revoke<'a>(&'a self, lease: &'a LeaseEntry) -> BoxFuture<'a, Result<(), RevokerError>> {
        Box::pin(async move {
            use crate::telemetry::name;
            let started = std::time::Instant::now();
            let result = self.revoke_lease(lease).await;
            let names = (name::REVOKE_USER, name::REVOKE_USER_ERROR);
            super::measured(&self.telemetry, names, &lease.cluster, started, &result);
            result.map_err(text)
        })
    }

    fn renew_limits<'a>(
        &'a self,
        lease: &'a LeaseEntry,
    ) -> BoxFuture<'a, Result<TtlLimits, RevokerError>> {
        Box::pin(async move { self.check_renewable(lease).await.map_err(text) })
    }

    fn extend<'a>(
        &'a self,
        lease: &'a LeaseEntry,
        expire_time: i64,
    ) -> BoxFuture<'a, Result<(), RevokerError>> {
        Box::pin(async move {
            use crate::telemetry::name;
            let started = std::time::Instant::now();
            let result = self.move_valid_until(lease, expire_time).await;
            let names = (name::RENEW_USER, name::RENEW_USER_ERROR);
            super::measured(&self.telemetry, names, &lease.cluster, started, &result);
            result.map_err(text)
        })
    }
}

/// Connects an engine to the lease manager.
pub fn register(engine: &Arc<Engine>) {
    let weak: std::sync::Weak<dyn Revoker> = Arc::downgrade(engine) as std::sync::Weak<dyn Revoker>;
    engine.leases.register(&engine.mount.path, weak);
}
