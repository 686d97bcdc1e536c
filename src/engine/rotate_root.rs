//! `rotate-root/<cluster>`: new root and management passwords now.

use std::sync::Arc;

use super::{rotation, Engine, Error};
use crate::logical::{handler, Field, Operation, Request, Response, Route};

pub fn routes(engine: &Arc<Engine>) -> Vec<Route<Error>> {
    vec![Route::new(
        "rotate-root/{cluster}",
        "Rotate a cluster's root and management passwords.",
        HELP,
    )
    .field(Field::name("cluster", "Name of the cluster."))
    .op(
        Operation::Write,
        "Rotate the root and management passwords now.",
        handler(engine, rotate),
    )]
}

async fn rotate(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let name = req.capture("cluster");
    let record = engine.active_cluster(&name).await?;
    let lock = engine.lock_for(&name);
    let _guard = lock.lock().await;
    // Re-read under the lock: another rotation may have finished meanwhile.
    let record = engine.load_cluster(&name).await?.unwrap_or(record);
    let pending = rotation::plan(&record, false);
    rotation::apply(&engine, record, pending).await?;
    Ok(Response::empty())
}

const HELP: &str = "Generates new root and management passwords, stores them (encrypted) as an intent, then changes both in one PostgreSQL transaction. A crash at any point leaves a password that works: the next start, or the next use of the cluster, finds out which. Pools are rebuilt with the new passwords.";
