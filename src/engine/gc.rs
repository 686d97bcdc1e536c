//! `gc/`: disabled clusters and databases awaiting purge. Purging forgets a
//! configuration for good; only what is disabled can be purged. Nothing is
//! removed from PostgreSQL.

use std::sync::Arc;

use serde_json::{json, Map};

use super::cluster::cluster_json;
use super::records::{keys, State};
use super::{Engine, Error};
use crate::logical::{handler, Field, Operation, Request, Response, Route};
use crate::storage::Op;

pub fn routes(engine: &Arc<Engine>) -> Vec<Route<Error>> {
    vec![
        Route::new(
            "gc/clusters/?",
            "List disabled clusters awaiting purge.",
            CLUSTERS_HELP,
        )
        .op(
            Operation::List,
            "List disabled clusters.",
            handler(engine, list_disabled_clusters),
        ),
        Route::new(
            "gc/cluster/{cluster}/?",
            "Read or purge a disabled cluster; list its disabled databases.",
            CLUSTER_HELP,
        )
        .field(Field::name("cluster", "Name of the cluster."))
        .op(
            Operation::List,
            "List the cluster's disabled databases.",
            handler(engine, list_disabled_databases),
        )
        .sudo_op(
            Operation::Read,
            "Read a disabled cluster's configuration with its credentials.",
            handler(engine, read_disabled_cluster),
        )
        .sudo_op(
            Operation::Delete,
            "Purge a disabled cluster and all its databases.",
            handler(engine, purge_cluster),
        ),
        Route::new(
            "gc/cluster/{cluster}/{database}",
            "Read or purge a disabled database.",
            DATABASE_HELP,
        )
        .field(Field::name("cluster", "Name of the cluster."))
        .field(Field::name("database", "Name of the database."))
        .op(
            Operation::Read,
            "Read a disabled database's configuration.",
            handler(engine, read_disabled_database),
        )
        .op(
            Operation::Delete,
            "Purge a disabled database.",
            handler(engine, purge_database),
        ),
    ]
}

async fn list_disabled_clusters(engine: Arc<Engine>, _req: Request) -> Result<Response, Error> {
    let mut names = Vec::new();
    let mut info = Map::new();
    for c in engine.clusters().await? {
        if c.state == State::Disabled {
            info.insert(
                c.name.clone(),
                json!({"disabled_at": c.disabled_at, "host": c.host, "port": c.port}),
            );
            names.push(c.name);
        }
    }
    Ok(Response::list_with_info(names, info))
}

async fn list_disabled_databases(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let cluster = req.capture("cluster");
    let mut names = Vec::new();
    let mut info = Map::new();
    for db in engine.databases(&cluster).await? {
        if db.state == State::Disabled {
            info.insert(db.name.clone(), json!({"disabled_at": db.disabled_at}));
            names.push(db.name);
        }
    }
    Ok(Response::list_with_info(names, info))
}

async fn read_disabled_cluster(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let name = req.capture("cluster");
    match engine.load_cluster(&name).await? {
        Some(c) if c.state == State::Disabled => Ok(Response::data(cluster_json(&c, true))),
        Some(c) if c.state == State::Active => Err(Error::InvalidField {
            field: "cluster",
            reason: format!("{name:?} is active: read it at cluster/{name}"),
        }),
        _ => Ok(Response::empty()),
    }
}

async fn purge_cluster(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let name = req.capture("cluster");
    let lock = engine.lock_for(&name);
    let _guard = lock.lock().await;
    let record = engine
        .load_cluster(&name)
        .await?
        .ok_or_else(|| Error::ClusterNotFound { name: name.clone() })?;
    if record.state != State::Disabled {
        return Err(Error::NotDisabled {
            what: format!("cluster {name:?}"),
        });
    }
    refuse_with_leases(&engine, &name, None).await?;
    let mut ops = Vec::new();
    for db in engine
        .storage
        .list(&keys::databases(&engine.prefix, &name))
        .await?
    {
        ops.push(Op::delete(keys::database(&engine.prefix, &name, &db)));
        ops.push(Op::delete(keys::metadata(
            &engine.prefix,
            &format!("{name}/{db}"),
        )));
    }
    ops.push(Op::delete(keys::metadata(&engine.prefix, &name)));
    // The cluster record goes in the same batch: a purge is all or nothing.
    ops.push(Op::delete(keys::cluster(&engine.prefix, &name)));
    engine.storage.apply(ops).await?;
    engine.pools.close_cluster(&name);
    Ok(Response::empty())
}

/// A purge forgets the credentials that revoke a cluster's users: refused
/// while any lease under it exists, whether outstanding, being revoked or
/// still the intent of a creation (leases are stored before their user is
/// created). Disabling hands them to the revocation worker; once PostgreSQL
/// let it drop them, the purge goes through.
async fn refuse_with_leases(
    engine: &Engine,
    cluster: &str,
    database: Option<&str>,
) -> Result<(), Error> {
    let count = engine.lease_count(cluster, database).await?;
    if count == 0 {
        return Ok(());
    }
    let what = match database {
        Some(db) => format!("database {db:?} of cluster {cluster:?}"),
        None => format!("cluster {cluster:?}"),
    };
    Err(Error::HasLeases { what, count })
}

async fn read_disabled_database(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let (cluster, name) = (req.capture("cluster"), req.capture("database"));
    Ok(match engine.load_database(&cluster, &name).await? {
        Some(db) if db.state == State::Disabled => Response::json(json!({
            "cluster": db.cluster,
            "name": db.name,
            "objects_owner_role": db.objects_owner_role,
            "created_db": db.created_db,
            "state": db.state.as_str(),
            "disabled_at": db.disabled_at,
        })),
        _ => Response::empty(),
    })
}

async fn purge_database(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let (cluster, name) = (req.capture("cluster"), req.capture("database"));
    let lock = engine.lock_for(&cluster);
    let _guard = lock.lock().await;
    let db = engine
        .load_database(&cluster, &name)
        .await?
        .ok_or_else(|| Error::DatabaseNotFound {
            cluster: cluster.clone(),
            database: name.clone(),
        })?;
    if db.state != State::Disabled {
        return Err(Error::NotDisabled {
            what: format!("database {name:?} of cluster {cluster:?}"),
        });
    }
    refuse_with_leases(&engine, &cluster, Some(&name)).await?;
    engine
        .storage
        .apply(vec![
            Op::delete(keys::database(&engine.prefix, &cluster, &name)),
            Op::delete(keys::metadata(&engine.prefix, &format!("{cluster}/{name}"))),
        ])
        .await?;
    engine.pools.close_database(&cluster, &name);
    Ok(Response::empty())
}

const CLUSTERS_HELP: &str =
    "Lists the disabled clusters, which keep their configuration until purged.";
const CLUSTER_HELP: &str = "LIST returns the cluster's disabled databases. GET returns a disabled cluster's configuration including the root and management passwords (needs `sudo`), e.g. to recover access by hand. DELETE purges a disabled cluster: its configuration (with the only copy of its root and management passwords), its databases' configurations and their metadata are forgotten for good; PostgreSQL is not touched. It needs `sudo`, as reading those passwords does. An active cluster cannot be purged: disable it first (`DELETE cluster/<name>`). Nor can a cluster with leases: disabling hands them to the revocation worker, which drops their users once PostgreSQL is reachable (`sys/leases/lookup` shows failures); `sys/leases/revoke-force` forgets leases without dropping their users.";
const DATABASE_HELP: &str = "GET returns a disabled database's configuration. DELETE purges it (configuration and metadata); PostgreSQL is not touched. An active database cannot be purged, nor one with leases (see the cluster's purge).";
