//! Password rotation with a written-down intent: registration (which also
//! creates the management role), `rotate-root` and clone all go through
//! [`apply`], and a crash at any point is undone or completed by [`resolve`].
//!
//! Order, and why:
//! 1. the new passwords are persisted (encrypted) in `pending` *before*
//!    PostgreSQL changes, so they cannot be lost;
//! 2. one PostgreSQL transaction creates or re-keys the management role and
//!    changes the root password: both change or neither does;
//! 3. the record adopts the new passwords and drops `pending`.
//!
//! If the process dies between 1 and 3, [`resolve`] logs in with the new
//! root password: if that works the transaction committed (finish step 3),
//! if the old one works it did not (forget the intent). Only an
//! authentication failure counts as "does not work"; an unreachable cluster
//! leaves the intent for later.

use tokio_postgres::Client;

use super::fault;
use super::pools::{self, Who};
use super::records::{now, ClusterRecord, PendingRotation, State};
use super::{Engine, Error};
use crate::postgres::{self, ident, literal, scram};
use crate::random;

/// How many earlier root passwords a record keeps (for restored copies).
const HISTORY: usize = 5;

/// Length of generated root and management passwords.
pub const PASSWORD_LENGTH: usize = 40;

/// New passwords for a rotation; `create_role` names a new management role.
pub fn plan(record: &ClusterRecord, create_role: bool) -> PendingRotation {
    PendingRotation {
        root_password: random::alphanumeric(PASSWORD_LENGTH),
        management_role: if create_role {
            format!("v-manage-{}", random::alphanumeric(10).to_lowercase())
        } else {
            record.management_role.clone()
        },
        management_password: random::alphanumeric(PASSWORD_LENGTH),
        creates_management_role: create_role,
    }
}

fn stop_at(point: &'static str, cluster: &str) -> Result<(), Error> {
    if fault::hit(point, cluster) {
        return Err(Error::Fault { point });
    }
    Ok(())
}

/// Connects as root with `password` to the record's maintenance database.
pub async fn connect_root(
    record: &ClusterRecord,
    password: &str,
) -> Result<Client, postgres::Error> {
    pools::target(record, &record.database, Who::Root)
        .as_user(&record.username, password)
        .connect()
        .await
}

/// Runs a rotation with its intent written first; returns the record as it
/// is afterwards (active, new passwords, next generation).
pub async fn apply(
    engine: &Engine,
    mut record: ClusterRecord,
    pending: PendingRotation,
) -> Result<ClusterRecord, Error> {
    let name = record.name.clone();
    let client = connect_root(&record, &record.password)
        .await
        .map_err(|e| match e {
            postgres::Error::AuthFailed { user } => Error::RootCredentialsRejected {
                host: record.host.clone(),
                port: record.port,
                user,
            },
            other => Error::from_pg(other),
        })?;

    record.pending = Some(pending.clone());
    engine.save_cluster(&record).await?;
    stop_at("rotation.after_intent", &name)?;

    let root_verifier = scram::verifier(&pending.root_password, scram::DEFAULT_ITERATIONS);
    let manage_verifier = scram::verifier(&pending.management_password, scram::DEFAULT_ITERATIONS);
    let manage_statement = if pending.creates_management_role {
        format!(
            "CREATE ROLE {} WITH LOGIN CREATEROLE NOINHERIT PASSWORD {}",
            ident(&pending.management_role),
            literal(&manage_verifier)
        )
    } else {
        format!(
            "ALTER ROLE {} WITH PASSWORD {}",
            ident(&pending.management_role),
            literal(&manage_verifier)
        )
    };
    let root_statement = format!(
        "ALTER ROLE {} WITH PASSWORD {}",
        ident(&record.username),
        literal(&root_verifier)
    );
    let mut client = client;
    let transaction = client.transaction().await?;
    transaction.batch_execute(&manage_statement).await?;
    transaction.batch_execute(&root_statement).await?;
    // Dropping the transaction here rolls it back, as a crash would.
    stop_at("rotation.in_transaction", &name)?;
    if let Err(e) = transaction.commit().await {
        // The commit may or may not have happened; the intent stays and
        // `resolve` finds out which password works.
        return Err(Error::RotationUnresolved {
            name,
            reason: e.to_string(),
        });
    }
    stop_at("rotation.after_commit", &name)?;
    finish(engine, record, pending).await
}

async fn finish(
    engine: &Engine,
    mut record: ClusterRecord,
    pending: PendingRotation,
) -> Result<ClusterRecord, Error> {
    let old = std::mem::replace(&mut record.password, pending.root_password);
    record.password_history.insert(0, old);
    record.password_history.truncate(HISTORY);
    record.management_role = pending.management_role;
    record.management_password = pending.management_password;
    record.pending = None;
    if record.state == State::Registering {
        record.state = State::Active;
    }
    record.generation += 1;
    record.updated_at = now();
    engine.save_cluster(&record).await?;
    Ok(record)
}

/// Settles an unfinished rotation. Returns `None` when it was a
/// registration that never reached PostgreSQL (the record is removed).
pub async fn resolve(
    engine: &Engine,
    record: ClusterRecord,
) -> Result<Option<ClusterRecord>, Error> {
    let Some(pending) = record.pending.clone() else {
        return Ok(Some(record));
    };
    let unresolved = |reason: String| Error::RotationUnresolved {
        name: record.name.clone(),
        reason,
    };
    match connect_root(&record, &pending.root_password).await {
        Ok(_) => return finish(engine, record, pending).await.map(Some),
        Err(postgres::Error::AuthFailed { .. }) => {}
        Err(other) => return Err(unresolved(other.to_string())),
    }
    match connect_root(&record, &record.password).await {
        Ok(_) => {
            if record.state == State::Registering {
                engine
                    .storage
                    .delete(&super::records::keys::cluster(&engine.prefix, &record.name))
                    .await?;
                return Ok(None);
            }
            let mut record = record;
            record.pending = None;
            engine.save_cluster(&record).await?;
            Ok(Some(record))
        }
        Err(postgres::Error::AuthFailed { .. }) => Err(unresolved(
            "neither the new nor the old root password is accepted".into(),
        )),
        Err(other) => Err(unresolved(other.to_string())),
    }
}
