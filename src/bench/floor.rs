//! The floor: what a minimal correct client does against PostgreSQL
//! directly, with the management role's own connections, no pgsecrets in
//! between. Issuing computes a fresh password and its SCRAM verifier (same
//! iteration count) and sends pgsecrets' default creation statements in one
//! round trip (one implicit transaction); revoking sends pgsecrets' default
//! revocation statements in one round trip.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::Utc;

use super::load::Op;
use super::pg::Pg;
use super::target::Cluster;
use super::Error;
use crate::engine::creds::{one_script, valid_until, DEFAULT_CREATION};
use crate::engine::records::DEFAULT_PASSWORD_LENGTH;
use crate::engine::revocation::default_revocation;
use crate::engine::template;
use crate::engine::username::Template;
use crate::postgres::scram;

/// Lease TTL written into `VALID UNTIL` by the floor (as the role's).
const TTL: i64 = 3600;

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
/// pgsecrets does; returns its name.
pub async fn issue_one(
    client: &tokio_postgres::Client,
    cluster: &Cluster,
    role: &str,
    iterations: u32,
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
    client
        .batch_execute(&one_script(&statements))
        .await
        .map_err(|e| super::pg_text(&e))?;
    Ok(username)
}

/// One issuing worker per connection; created names go to `created` when given.
pub fn issue_ops(
    clients: &[Arc<tokio_postgres::Client>],
    cluster: &Cluster,
    role: &str,
    iterations: u32,
    created: Option<Arc<Mutex<Vec<String>>>>,
) -> Vec<Op> {
    clients
        .iter()
        .map(|client| {
            let (client, cluster, role, created) = (
                Arc::clone(client),
                Arc::new(cluster.clone()),
                role.to_string(),
                created.clone(),
            );
            let op: Op = Arc::new(move || {
                let (client, cluster, role, created) = (
                    Arc::clone(&client),
                    Arc::clone(&cluster),
                    role.clone(),
                    created.clone(),
                );
                Box::pin(async move {
                    let name = issue_one(&client, &cluster, &role, iterations).await?;
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
) -> Vec<Op> {
    clients
        .iter()
        .map(|client| {
            let (client, cluster, queue) = (
                Arc::clone(client),
                Arc::new(cluster.clone()),
                Arc::clone(&queue),
            );
            let op: Op = Arc::new(move || {
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
