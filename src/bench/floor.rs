//! The floor: what a minimal correct client does against PostgreSQL
//! directly, with the management role's own connections, no pgsecrets in
//! between. Issuing computes a fresh password and its SCRAM verifier (same
//! iteration count) and sends pgsecrets' default creation statements in one
//! round trip (one implicit transaction); revoking sends pgsecrets' default
//! revocation statements in one round trip.
//!
//! The durable floor ([`Intent`]) is that client made to keep pgsecrets'
//! first promise, "the lease is durable before the user exists": before its
//! creation statements it writes a lease-sized record through pgsecrets' own
//! SQLite backend (its group commit, `synchronous=FULL`) and waits for it.
//! pgsecrets must pay that write; the plain floor does not.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tempfile::TempDir;

use super::load::Op as LoadOp;
use super::pg::Pg;
use super::target::Cluster;
use super::Error;
use crate::engine::creds::{one_script, valid_until, DEFAULT_CREATION};
use crate::engine::records::DEFAULT_PASSWORD_LENGTH;
use crate::engine::revocation::default_revocation;
use crate::engine::template;
use crate::engine::username::Template;
use crate::lease::keys;
use crate::postgres::scram;
use crate::storage::{sqlite::SqliteBackend, Backend, Op};

/// Lease TTL written into `VALID UNTIL` by the floor (as the role's).
const TTL: i64 = 3600;
/// Bytes of the durable floor's lease record: about what pgsecrets stores
/// for one lease (its JSON, sealed).
const RECORD_BYTES: usize = 720;

/// The durable floor's storage: a SQLite file of pgsecrets' own backend in a
/// temporary directory of its own (not the server's: nothing is shared but
/// the disk).
pub struct Intent {
    backend: Arc<SqliteBackend>,
    _dir: TempDir,
}

impl Intent {
    pub fn open() -> Result<Intent, Error> {
        let dir = tempfile::Builder::new()
            .prefix("pgsecrets-bench-intent-")
            .tempdir()?;
        let backend = Arc::new(SqliteBackend::open(&dir.path().join("intent.db"))?);
        Ok(Intent { backend, _dir: dir })
    }

    /// Writes one lease-sized record the way pgsecrets stores a lease (the
    /// lease under a time-ordered id, its due-index and token-index keys,
    /// one atomic batch) and waits until it is durable.
    async fn record(&self, path: &str, now: i64) -> Result<(), String> {
        let lease_id = format!("{path}/{}", crate::random::time_ordered(24));
        let value = crate::random::alphanumeric(RECORD_BYTES).into_bytes();
        let ops = vec![
            Op::put(keys::lease(&lease_id), value),
            Op::put(keys::due(now + TTL, &lease_id), Vec::new()),
            Op::put(keys::token("bench-floor-token", &lease_id), Vec::new()),
        ];
        Arc::clone(&self.backend)
            .submit(ops)
            .await
            .map_err(|e| format!("durable floor's record: {e}"))
    }
}

/// `n` connections as the management role to the cluster's database.
pub async fn connections(
    pg: &Pg,
    cluster: &Cluster,
    n: usize,
) -> Result<Vec<Arc<tokio_postgres::Client>>, Error> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let client = pg
            .connect(
                &cluster.management_role,
                &cluster.management_password,
                &cluster.database,
            )
            .await?;
        out.push(Arc::new(client));
    }
    Ok(out)
}

/// Creates one user named as pgsecrets names users of `role`, the way
/// pgsecrets does (after a durable record of it, with `intent`); returns
/// its name.
pub async fn issue_one(
    client: &tokio_postgres::Client,
    cluster: &Cluster,
    role: &str,
    iterations: u32,
    intent: Option<&Intent>,
) -> Result<String, String> {
    let now = Utc::now().timestamp();
    let username = Template::default_template().render(role, &cluster.name, &cluster.database, now);
    let password = crate::random::alphanumeric(DEFAULT_PASSWORD_LENGTH);
    // Where pgsecrets hashes, so does the floor.
    let verifier = scram::verifier_async(&password, iterations)
        .await
        .map_err(|e| e.to_string())?;
    let mut values = BTreeMap::new();
    values.insert("name", username.clone());
    values.insert("password", verifier);
    values.insert("expiration", valid_until(now + TTL));
    values.insert("database", cluster.database.clone());
    values.insert("objects_owner", cluster.objects_owner.clone());
    values.insert("group", cluster.management_role.clone());
    let statements: Vec<String> = DEFAULT_CREATION
        .iter()
        .map(|s| template::render(s, &values))
        .collect();
    if let Some(intent) = intent {
        intent.record(&cluster.creds_path(role), now).await?;
    }
    client
        .batch_execute(&one_script(&statements))
        .await
        .map_err(|e| super::pg_text(&e))?;
    Ok(username)
}

/// One issuing worker per connection; created names go to `created` when
/// given; with `intent`, the durable floor.
pub fn issue_ops(
    clients: &[Arc<tokio_postgres::Client>],
    cluster: &Cluster,
    role: &str,
    iterations: u32,
    created: Option<Arc<Mutex<Vec<String>>>>,
    intent: Option<Arc<Intent>>,
) -> Vec<LoadOp> {
    clients
        .iter()
        .map(|client| {
            let (client, cluster, role, created, intent) = (
                Arc::clone(client),
                Arc::new(cluster.clone()),
                role.to_string(),
                created.clone(),
                intent.clone(),
            );
            let op: LoadOp = Arc::new(move || {
                let (client, cluster, role, created, intent) = (
                    Arc::clone(&client),
                    Arc::clone(&cluster),
                    role.clone(),
                    created.clone(),
                    intent.clone(),
                );
                Box::pin(async move {
                    let name =
                        issue_one(&client, &cluster, &role, iterations, intent.as_deref()).await?;
                    if let Some(created) = created {
                        created.lock().expect("created names").push(name);
                    }
                    Ok(())
                })
            });
            op
        })
        .collect()
}

/// One revoking worker per connection, taking names from `queue`.
pub fn revoke_ops(
    clients: &[Arc<tokio_postgres::Client>],
    cluster: &Cluster,
    queue: Arc<Mutex<VecDeque<String>>>,
) -> Vec<LoadOp> {
    clients
        .iter()
        .map(|client| {
            let (client, cluster, queue) = (
                Arc::clone(client),
                Arc::new(cluster.clone()),
                Arc::clone(&queue),
            );
            let op: LoadOp = Arc::new(move || {
                let (client, cluster, queue) = (
                    Arc::clone(&client),
                    Arc::clone(&cluster),
                    Arc::clone(&queue),
                );
                Box::pin(async move {
                    let Some(name) = queue.lock().expect("queue").pop_front() else {
                        return Err("no user left to revoke".to_string());
                    };
                    let script = default_revocation(
                        &name,
                        &cluster.management_role,
                        Some(&cluster.objects_owner),
                    );
                    client
                        .batch_execute(&script)
                        .await
                        .map_err(|e| super::pg_text(&e))
                })
            });
            op
        })
        .collect()
}
