//! `reconcile/<cluster>`: users that carry pgsecrets' username prefix but
//! no lease (left by a restore from backup, another tool or a hand-made
//! copy). Reading lists them; writing revokes them (`dry_run` defaults to
//! true, so a plain write only reports).

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;

use super::pools::{self, Who};
use super::records::State;
use super::revocation::drop_user;
use super::{Engine, Error};
use crate::logical::{handler, Field, Operation, Request, Response, Route};

pub fn routes(engine: &Arc<Engine>) -> Vec<Route<Error>> {
    vec![Route::new(
        "reconcile/{cluster}",
        "Find (and revoke) users no lease tracks.",
        HELP,
    )
    .field(Field::name("cluster", "Name of the cluster."))
    .field(
        Field::bool(
            "dry_run",
            "Only report; set to false to revoke the untracked users.",
        )
        .default(json!(true)),
    )
    .op(
        Operation::Read,
        "List users with pgsecrets' prefix that no lease tracks.",
        handler(engine, read),
    )
    .op(
        Operation::Write,
        "Revoke users with pgsecrets' prefix that no lease tracks (dry_run=false).",
        handler(engine, write),
    )]
}

/// Untracked `v-*` users of the cluster, and the database each may be
/// dropped from (one it can connect to).
async fn orphans(
    engine: &Engine,
    cluster_name: &str,
) -> Result<(super::records::ClusterRecord, Vec<String>), Error> {
    let cluster = engine
        .load_cluster(cluster_name)
        .await?
        .filter(|c| c.state != State::Registering)
        .ok_or_else(|| Error::ClusterNotFound {
            name: cluster_name.into(),
        })?;
    let client = pools::target(&cluster, &cluster.database, Who::Root)
        .connect()
        .await
        .map_err(Error::from)?;
    // Only users this cluster's management role made: it granted them a
    // role (`IN ROLE <objects owner>` in the default statements), or, from
    // PostgreSQL 16 on, holds the ADMIN OPTION PostgreSQL gives the creator
    // of a role. Users of another registration of this server (another
    // mount, another pgsecrets, a cluster registered before one server had
    // one registration) or of another tool are never touched.
    let rows = client
        .query(
            "SELECT u.rolname FROM pg_roles u \
             WHERE u.rolname LIKE 'v-%' AND u.rolname NOT LIKE 'v-manage-%' AND u.rolname NOT LIKE 'v-owner-%' \
             AND (EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.grantor \
                          WHERE m.member = u.oid AND g.rolname = $1) \
                  OR EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles c ON c.oid = m.member \
                          WHERE m.roleid = u.oid AND c.rolname = $1 AND m.admin_option)) \
             ORDER BY u.rolname",
            &[&cluster.management_role],
        )
        .await
        .map_err(Error::from)?;
    // Read after the users: a user exists only once its lease (or pending
    // creation) is durable, so every user listed above that some lease
    // tracks is seen here. Leases of every cluster of the mount count, so a
    // name another cluster's lease accounts for is never dropped.
    let tracked: HashSet<String> = engine
        .leases
        .leases_under(&format!("{}creds/", engine.mount.path))
        .await?
        .into_iter()
        .map(|lease| lease.username)
        .collect();
    let owners = owner_roles(engine, cluster_name).await?;
    let found = rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|name| {
            !tracked.contains(name) && !owners.contains(name) && *name != cluster.management_role
        })
        .collect();
    Ok((cluster, found))
}

async fn owner_roles(engine: &Engine, cluster: &str) -> Result<Vec<String>, Error> {
    Ok(owner_databases(engine, cluster)
        .await?
        .into_iter()
        .map(|(owner, _)| owner)
        .collect())
}

/// (objects-owner role, database) of every database of the cluster.
async fn owner_databases(engine: &Engine, cluster: &str) -> Result<Vec<(String, String)>, Error> {
    Ok(engine
        .databases(cluster)
        .await?
        .into_iter()
        .map(|db| (db.objects_owner_role, db.name))
        .collect())
}

async fn read(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let (_, found) = orphans(&engine, &req.capture("cluster")).await?;
    Ok(Response::json(
        json!({"untracked_users": found, "dry_run": true}),
    ))
}

async fn write(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let dry_run = req.fields.bool("dry_run").unwrap_or(true);
    let (cluster, found) = orphans(&engine, &req.capture("cluster")).await?;
    if dry_run {
        return Ok(Response::json(
            json!({"untracked_users": found, "dry_run": true}),
        ));
    }
    let mut revoked = Vec::new();
    let mut failed = Vec::new();
    let databases = owner_databases(&engine, &cluster.name).await?;
    let root = pools::target(&cluster, &cluster.database, Who::Root)
        .connect()
        .await
        .map_err(Error::from)?;
    for user in found {
        // A user that is a member of a database's objects-owner role is
        // revoked in that database (its objects go to the owner role);
        // others from the maintenance database.
        let rows = root
            .query(
                "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
                 JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = $1",
                &[&user],
            )
            .await
            .map_err(Error::from)?;
        let database = rows
            .iter()
            .find_map(|r| {
                databases
                    .iter()
                    .find(|(owner, _)| *owner == r.get::<_, String>(0))
            })
            .map(|(_, db)| db.clone())
            .unwrap_or_else(|| cluster.database.clone());
        match drop_user(&engine, &cluster, &database, &user, &[]).await {
            Ok(()) => revoked.push(user),
            Err(e) => failed.push(json!({"username": user, "error": e.to_string()})),
        }
    }
    Ok(Response::json(
        json!({"revoked": revoked, "failed": failed, "dry_run": false}),
    ))
}

const HELP: &str = "Lists the users of the cluster whose names carry pgsecrets' prefix (`v-`, but not management or objects-owner roles), that this cluster's management role created (it granted them a role, or on PostgreSQL 16 and later holds the ADMIN OPTION given to a role's creator) and that no lease or pending creation tracks: users left by a restore from backup or a crash. Users of another registration, another pgsecrets or another tool are never listed. Writing with `dry_run=false` revokes them (sessions terminated, objects reassigned, role dropped) and reports what was revoked and what failed. Users from a custom `username_template` that does not start with `v-` are not detected.";
