//! `clone/<cluster>`: register a restored copy of a cluster (from a backup,
//! at another host) under a new name, and rotate its passwords so the copy
//! shares no secret with the original.
//!
//! The copy holds the roles and passwords the original had when the backup
//! was taken, so the current root password is tried first, then earlier
//! ones kept in the record's history.

use std::sync::Arc;

use serde_json::json;

use super::cluster::check_root_privileges;
use super::records::{now, ClusterRecord, DatabaseRecord, State};
use super::settings::check_host;
use super::{identity, names, rotation, Engine, Error};
use crate::logical::{handler, Field, Operation, Request, Response, Route};
use crate::postgres;

pub fn routes(engine: &Arc<Engine>) -> Vec<Route<Error>> {
    vec![Route::new(
        "clone/{cluster}",
        "Register a restored copy of a cluster under a new name.",
        HELP,
    )
    .field(Field::name("cluster", "Name of the original cluster."))
    .field(Field::string("target", "Name for the copy.").required())
    .field(Field::string("host", "Host of the copy.").required())
    .field(Field::int(
        "port",
        "Port of the copy (default: the original's).",
    ))
    .field(
        Field::bool(
            "inherit_deleted_db",
            "Also copy the original's disabled databases (as disabled).",
        )
        .default(json!(false)),
    )
    // A clone sends the original's current and earlier root passwords to
    // `host`: as weighty as reading them, so it needs sudo as reading does.
    .sudo_op(
        Operation::Write,
        "Configure a restored copy and rotate its passwords.",
        handler(engine, clone),
    )]
}

async fn clone(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let source_name = req.capture("cluster");
    let target = req.fields.str("target").unwrap_or_default();
    names::check_identifier("target", &target)?;
    if !target
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        || target.ends_with(['-', '.'])
    {
        return Err(Error::InvalidField {
            field: "target",
            reason: format!("{target:?} is not a valid cluster name"),
        });
    }
    let host = req.fields.str("host").unwrap_or_default();
    check_host(&host)?;
    let source = engine
        .load_cluster(&source_name)
        .await?
        .filter(|c| c.state != State::Registering)
        .ok_or_else(|| Error::ClusterNotFound {
            name: source_name.clone(),
        })?;
    let port = match req.fields.int("port") {
        Some(p) => u16::try_from(p)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| Error::InvalidField {
                field: "port",
                reason: format!("{p} is not a TCP port (1-65535)"),
            })?,
        None => source.port,
    };
    // The original's own address is no copy: "cloning" it would rotate the
    // original's passwords away from the cluster that holds its leases.
    if postgres::same_address((&host, port), (&source.host, source.port)).await {
        return Err(Error::InvalidField {
            field: "host",
            reason: format!(
                "{host}:{port} is where cluster {source_name:?} itself is; a clone must be a restored copy at another address"
            ),
        });
    }
    let lock = engine.lock_for(&target);
    let _guard = lock.lock().await;
    // A clone registers another server: the same identity check, held
    // until the record is stored.
    let _registering = engine.registration_lock().await;
    if let Some(existing) = engine.load_cluster(&target).await? {
        return Err(Error::ClusterNameTaken {
            name: target,
            host: existing.host,
            port: existing.port,
        });
    }
    let stamp = now();
    let mut record = ClusterRecord {
        name: target.clone(),
        host,
        port,
        state: State::Registering,
        generation: 0,
        pending: None,
        created_at: stamp.clone(),
        updated_at: stamp,
        disabled_at: None,
        ..source.clone()
    };
    // Find the root password the copy still knows.
    let mut candidates = vec![source.password.clone()];
    candidates.extend(source.password_history.iter().cloned());
    let mut found = None;
    let mut last_refusal = String::new();
    for candidate in candidates {
        match rotation::connect_root(&record, &candidate).await {
            Ok(client) => {
                check_root_privileges(&client, &record.username).await?;
                record.system_identifier =
                    Some(identity::check_server_is_new(&engine, &record, &client).await?);
                found = Some(candidate);
                break;
            }
            Err(postgres::Error::AuthFailed { reason, .. }) => last_refusal = reason,
            Err(other) => return Err(Error::from_pg(other)),
        }
    }
    let Some(password) = found else {
        return Err(Error::RootCredentialsRejected {
            host: record.host,
            port: record.port,
            user: record.username,
            reason: format!("none of the source's root passwords works ({last_refusal})"),
        });
    };
    record.password = password;
    record.password_history = Vec::new();
    let pending = rotation::plan(&record, false);
    let record = rotation::apply(&engine, record, pending).await?;

    let inherit_disabled = req.fields.bool("inherit_deleted_db").unwrap_or(false);
    let mut copied = Vec::new();
    for db in engine.databases(&source_name).await? {
        let keep = db.state == State::Active || (inherit_disabled && db.state == State::Disabled);
        if !keep {
            continue;
        }
        copied.push(db.name.clone());
        engine
            .save_database(&DatabaseRecord {
                cluster: target.clone(),
                created_at: now(),
                ..db
            })
            .await?;
    }
    Ok(Response::json(json!({
        "name": record.name,
        "host": record.host,
        "port": record.port,
        "management_role": record.management_role,
        "databases": copied,
    }))
    .with_warning(
        "the copy's root and management passwords were rotated; the original's are unchanged",
    ))
}

const HELP: &str = "Needs sudo: it sends the original's root passwords to `host`. Registers a restored copy of cluster `<cluster>` (for example from a backup, now at `host`) as cluster `target`: pgsecrets logs in to the copy as the original's root user (trying the current password, then earlier ones it kept), then rotates the copy's root and management passwords in one transaction, with the intent stored first as for registration. The original's active databases are copied to the new cluster (and its disabled ones too with `inherit_deleted_db`). The original is not changed. The copy must be at another address (the same host and port, or a name resolving to the same address, is refused) and another running server: a clone that reaches the original's server (or one any other cluster of the mount holds) is refused, as a registration is.";
