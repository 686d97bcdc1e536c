//! Connection pools to managed clusters: one per (cluster, database, user),
//! sized by the cluster's settings and replaced when its generation changes
//! (new passwords or settings). Disabling or purging a cluster drops its
//! pools, which closes their connections.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::{Object, Pool, PoolError};

use super::records::ClusterRecord;
use super::Error;
use crate::postgres::{self, Target};

/// How long to wait for a connection before answering "busy".
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a new connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Which identity a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Who {
    Root,
    Management,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    cluster: String,
    database: String,
    who: Who,
}

#[derive(Default)]
pub struct Pools {
    pools: Mutex<HashMap<Key, (u64, Pool)>>,
}

/// Where and as whom to connect for a cluster record.
pub fn target(record: &ClusterRecord, database: &str, who: Who) -> Target {
    let (user, password) = match who {
        Who::Root => (record.username.clone(), record.password.clone()),
        Who::Management => (
            record.management_role.clone(),
            record.management_password.clone(),
        ),
    };
    Target {
        host: record.host.clone(),
        port: record.port,
        dbname: database.to_string(),
        user,
        password,
        ssl_mode: record.ssl_mode,
        ssl_root_cert: record.ssl_root_cert.clone(),
        client_identity: record.client_identity(),
        channel_binding: record.channel_binding,
        connect_timeout: CONNECT_TIMEOUT,
    }
}

impl Pools {
    fn pool(&self, record: &ClusterRecord, database: &str, who: Who) -> Result<Pool, Error> {
        let key = Key {
            cluster: record.name.clone(),
            database: database.to_string(),
            who,
        };
        let mut pools = self.pools.lock().expect("pool registry");
        if let Some((generation, pool)) = pools.get(&key) {
            if *generation == record.generation {
                return Ok(pool.clone());
            }
        }
        let size = match who {
            Who::Root => 2,
            Who::Management => record.max_open_connections.max(1) as usize,
        };
        let pool = target(record, database, who).pool(size, WAIT)?;
        // The replaced pool (older generation) is dropped here; its idle
        // connections close now and busy ones when they are returned.
        pools.insert(key, (record.generation, pool.clone()));
        Ok(pool)
    }

    /// A pooled connection to `database` of the cluster.
    pub async fn client(
        &self,
        record: &ClusterRecord,
        database: &str,
        who: Who,
    ) -> Result<Object, Error> {
        let pool = self.pool(record, database, who)?;
        let object = pool.get().await.map_err(|e| match e {
            PoolError::Timeout(_) => Error::Busy {
                name: record.name.clone(),
                seconds: WAIT.as_secs(),
            },
            PoolError::Backend(pg) => {
                Error::from_pg(postgres::Error::from_pg(pg, &target(record, database, who)))
            }
            // Disabling a cluster or database closes its pools, also under
            // a request that already held one: a 4xx, not a gateway error.
            PoolError::Closed => Error::PoolClosed {
                cluster: record.name.clone(),
                database: database.to_string(),
            },
            other => Error::Postgres(other.to_string()),
        })?;
        if let Some(lifetime) = Some(record.max_connection_lifetime).filter(|l| *l > 0) {
            if Object::metrics(&object).age() > Duration::from_secs(lifetime) {
                // Too old: discard it and take a fresh one.
                let _ = Object::take(object);
                return Box::pin(self.client(record, database, who)).await;
            }
        }
        Ok(object)
    }

    /// Closes idle connections beyond each pool's idle limit.
    pub fn trim_idle(&self, record: &ClusterRecord) {
        let pools = self.pools.lock().expect("pool registry");
        for (key, (_, pool)) in pools.iter() {
            if key.cluster == record.name {
                let mut kept = 0u32;
                pool.retain(|_, _| {
                    kept += 1;
                    kept <= record.max_idle_connections
                });
            }
        }
    }

    /// Drops every pool of a cluster.
    pub fn close_cluster(&self, cluster: &str) {
        let mut pools = self.pools.lock().expect("pool registry");
        pools.retain(|key, (_, pool)| {
            let keep = key.cluster != cluster;
            if !keep {
                pool.close();
            }
            keep
        });
    }

    /// Drops the pools of one database.
    pub fn close_database(&self, cluster: &str, database: &str) {
        let mut pools = self.pools.lock().expect("pool registry");
        pools.retain(|key, (_, pool)| {
            let keep = !(key.cluster == cluster && key.database == database);
            if !keep {
                pool.close();
            }
            keep
        });
    }
}
