//! Which PostgreSQL server a connection reaches, so one server has one
//! registration per mount.
//!
//! Two registrations of one server share its roles: a reconcile of one
//! drops the other's users, a rotation through one takes the other's root
//! password away. So a registration (or a clone) is refused when a cluster
//! of the mount, in any state until it is purged, already holds the server
//! it reaches, or when it would log in as a role such a cluster manages.
//!
//! Identity, in two steps:
//! 1. `system_identifier` (from `pg_control_system()`, readable by every
//!    role): servers with different identifiers are different. Equal ones
//!    may still differ: a restored copy or a physical replica keeps it.
//! 2. A probe tells the running server from a copy: a session on the
//!    registered cluster takes an advisory lock under a random key, and the
//!    new connection looks for that lock in `pg_locks`. The lock table is
//!    one per running server (all databases), never copied by a backup nor
//!    replicated to a standby, so the lock shows only on the same server.
//!    A marker written into the server would not do: a copy carries it.
//!
//! When the identifiers match (or the registered one is not known) and the
//! registered cluster cannot be reached to probe it, the registration is
//! refused: nobody can tell, and guessing wrong loses users or passwords.

use tokio_postgres::Client;

use super::pools::{self, Who};
use super::records::{ClusterRecord, State};
use super::{rotation, Engine, Error};
use crate::random;

/// First key of the probe's advisory locks (`pg_advisory_lock(int, int)`);
/// the second is random per probe.
const PROBE_NAMESPACE: i32 = 0x7067_7300; // "pgs\0"

/// First key of the rotation locks ([`super::rotation`]); the second is
/// `hashtext(<user>)`.
pub const ROTATION_NAMESPACE: i32 = 0x7067_7372; // "pgsr"

/// The server's system identifier, as text (it is a 64-bit number).
pub async fn system_identifier(client: &Client) -> Result<String, Error> {
    let row = client
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Whether `ours` and `theirs` are sessions of one running server.
async fn same_running_server(ours: &Client, theirs: &Client) -> Result<bool, Error> {
    // A random key nobody else holds; another holder of it (a clash or a
    // probe running at the same time) only means another draw.
    for _ in 0..4 {
        let mut bytes = [0u8; 4];
        random::fill(&mut bytes);
        let nonce = (u32::from_le_bytes(bytes) >> 1) as i32;
        let taken: bool = theirs
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&PROBE_NAMESPACE, &nonce],
            )
            .await?
            .get(0);
        if !taken {
            continue;
        }
        // Both keys are non-negative, so their oid forms are the same numbers.
        let seen: bool = ours
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                 AND classid = $1::int8::oid AND objid = $2::int8::oid AND objsubid = 2 AND granted)",
                &[&i64::from(PROBE_NAMESPACE), &i64::from(nonce)],
            )
            .await?
            .get(0);
        theirs
            .query_one(
                "SELECT pg_advisory_unlock($1, $2)",
                &[&PROBE_NAMESPACE, &nonce],
            )
            .await?;
        return Ok(seen);
    }
    Err(Error::Postgres(
        "the identity probe found its advisory lock keys taken".into(),
    ))
}

/// Refuses `candidate` (a registration, clone or move to another host,
/// connected as its root user by `client`) when a cluster of the mount other
/// than `candidate.name` holds the same server, or manages the role it logs
/// in as. Returns the server's system identifier, to be stored with the
/// record. The caller holds [`Engine::registration_lock`] until the record
/// is stored, so two registrations cannot both pass.
pub async fn check_server_is_new(
    engine: &Engine,
    candidate: &ClusterRecord,
    client: &Client,
) -> Result<String, Error> {
    let ours = system_identifier(client).await?;
    for other in engine.all_cluster_records().await? {
        if other.name == candidate.name {
            continue;
        }
        let Some(other) = settled(engine, other).await else {
            continue;
        };
        // Management roles have random names: the same name is that role
        // (or its copy in a restored server), on whichever server.
        if !other.management_role.is_empty() && candidate.username == other.management_role {
            return Err(Error::RoleManaged {
                user: candidate.username.clone(),
                what: "management role",
                cluster: other.name,
            });
        }
        if other
            .system_identifier
            .as_ref()
            .is_some_and(|theirs| *theirs != ours)
        {
            continue;
        }
        if same_server(&other, &ours, client).await? {
            if candidate.username == other.username {
                return Err(Error::RoleManaged {
                    user: candidate.username.clone(),
                    what: "root user",
                    cluster: other.name,
                });
            }
            return Err(Error::ServerTaken {
                host: candidate.host.clone(),
                port: candidate.port,
                cluster: other.name,
            });
        }
    }
    Ok(ours)
}

/// An unfinished registration left by a crash holds its server only if it
/// reached PostgreSQL: settle it when nobody is working on it. Its lock is
/// only tried (the caller holds locks a writer of it may wait for); a busy
/// or unsettled one counts as holding its server.
async fn settled(engine: &Engine, other: ClusterRecord) -> Option<ClusterRecord> {
    if other.state != State::Registering || other.pending.is_none() {
        return Some(other);
    }
    let lock = engine.lock_for(&other.name);
    let Ok(_guard) = lock.try_lock() else {
        return Some(other);
    };
    // Read again under its lock: it may have been settled meanwhile.
    let other = match engine.load_cluster(&other.name).await {
        Ok(Some(fresh)) if fresh.pending.is_some() => fresh,
        Ok(fresh) => return fresh,
        Err(_) => return Some(other),
    };
    match rotation::resolve(engine, other.clone()).await {
        Ok(resolved) => resolved,
        Err(_) => Some(other),
    }
}

/// Whether registered cluster `other` is the server `client` reaches (whose
/// system identifier is `ours`).
async fn same_server(other: &ClusterRecord, ours: &str, client: &Client) -> Result<bool, Error> {
    let unverifiable = |reason: String| Error::ServerUnverifiable {
        cluster: other.name.clone(),
        reason,
    };
    // The root user first; the management role if the root password is
    // being rotated right now (or was changed by hand).
    let mut theirs = None;
    let mut last = String::new();
    for who in [Who::Root, Who::Management] {
        if who == Who::Management && other.management_role.is_empty() {
            continue;
        }
        match pools::target(other, &other.database, who).connect().await {
            Ok(c) => {
                theirs = Some(c);
                break;
            }
            Err(e) => last = e.to_string(),
        }
    }
    let theirs = theirs.ok_or_else(|| unverifiable(last))?;
    if other.system_identifier.is_none() {
        // A record from before identities were kept: ask its server.
        let id = system_identifier(&theirs)
            .await
            .map_err(|e| unverifiable(e.to_string()))?;
        if id != ours {
            return Ok(false);
        }
    }
    same_running_server(client, &theirs)
        .await
        .map_err(|e| unverifiable(e.to_string()))
}
