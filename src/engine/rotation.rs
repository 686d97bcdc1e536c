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

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::fault;
use super::pools::{self, Who};
use super::records::{now, ClusterRecord, PendingRotation, State};
use super::{identity, Engine, Error};
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

/// How long a rotation waits for another rotation of the same user on the
/// same server before answering [`Error::RotationBusy`].
const LOCK_WAIT_SECONDS: u32 = 10;

fn rejected(record: &ClusterRecord, e: postgres::Error) -> Error {
    match e {
        postgres::Error::AuthFailed { user, reason } => Error::RootCredentialsRejected {
            host: record.host.clone(),
            port: record.port,
            user,
            reason,
        },
        other => Error::from_pg(other),
    }
}

/// Takes the target server's advisory lock for rotating `user`, held by the
/// session of `client` until it is unlocked or closes. Keyed in the server
/// itself, so rotations through any cluster name, mount or pgsecrets
/// process queue behind each other; a holder that does not let go within
/// [`LOCK_WAIT_SECONDS`] makes this one answer 400, not hang.
async fn lock_rotation(client: &Client, user: &str) -> Result<(), Error> {
    client
        .batch_execute(&format!("SET lock_timeout = '{LOCK_WAIT_SECONDS}s'"))
        .await?;
    let locked = client
        .execute(
            "SELECT pg_advisory_lock($1, hashtext($2))",
            &[&identity::ROTATION_NAMESPACE, &user],
        )
        .await;
    match locked {
        Ok(_) => {}
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
            return Err(Error::RotationBusy { user: user.into() })
        }
        Err(e) => return Err(e.into()),
    }
    client.batch_execute("RESET lock_timeout").await?;
    Ok(())
}

async fn unlock_rotation(client: &Client, user: &str) {
    // Closing the session releases it too; this only lets the next one in
    // without waiting for the connection to wind down.
    let _ = client
        .execute(
            "SELECT pg_advisory_unlock($1, hashtext($2))",
            &[&identity::ROTATION_NAMESPACE, &user],
        )
        .await;
}

/// Runs a rotation with its intent written first; returns the record as it
/// is afterwards (active, new passwords, next generation).
///
/// Serialised per target server and root user ([`lock_rotation`]). Under
/// the lock a fresh login proves the password this rotation starts from is
/// still the current one (a rotation that ran meanwhile, through another
/// name or another pgsecrets, changed it: this one then stops, 400), and
/// after the commit a fresh login proves the new one works before it is
/// stored as current.
pub async fn apply(
    engine: &Engine,
    record: ClusterRecord,
    pending: PendingRotation,
) -> Result<ClusterRecord, Error> {
    let client = connect_root(&record, &record.password)
        .await
        .map_err(|e| rejected(&record, e))?;
    lock_rotation(&client, &record.username).await?;
    let user = record.username.clone();
    let outcome = apply_locked(engine, record, pending, client).await;
    if let Ok((_, client)) = &outcome {
        unlock_rotation(client, &user).await;
    }
    outcome.map(|(record, _)| record)
}

async fn apply_locked(
    engine: &Engine,
    mut record: ClusterRecord,
    pending: PendingRotation,
    mut client: Client,
) -> Result<(ClusterRecord, Client), Error> {
    let name = record.name.clone();
    drop(
        connect_root(&record, &record.password)
            .await
            .map_err(|e| rejected(&record, e))?,
    );

    let before = record.clone();
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
    let transaction = client.transaction().await?;
    let changed = async {
        transaction.batch_execute(&manage_statement).await?;
        transaction.batch_execute(&root_statement).await
    }
    .await;
    if let Err(e) = changed {
        let error = Error::from(e);
        if matches!(error, Error::Refused { .. }) {
            // PostgreSQL refused a statement: the transaction rolls back and
            // nothing changed, so the intent goes (an unfinished registration
            // would otherwise hold the server for nobody).
            drop(transaction);
            forget_intent(engine, before).await?;
        }
        return Err(error);
    }
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
    match connect_root(&record, &pending.root_password).await {
        Ok(proof) => drop(proof),
        Err(e) => {
            // The intent stays: `resolve` settles it once a login tells.
            return Err(Error::RotationUnresolved {
                name,
                reason: format!("the new root password could not be proven by a fresh login: {e}"),
            });
        }
    }
    Ok((finish(engine, record, pending).await?, client))
}

/// Drops an intent whose rotation certainly did not happen.
async fn forget_intent(engine: &Engine, before: ClusterRecord) -> Result<(), Error> {
    if before.state == State::Registering {
        engine
            .storage
            .delete(&super::records::keys::cluster(&engine.prefix, &before.name))
            .await?;
        return Ok(());
    }
    engine.save_cluster(&before).await
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
