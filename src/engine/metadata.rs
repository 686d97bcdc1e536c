//! `metadata/`: key-value labels on clusters and databases, and lookup of
//! the resources whose labels contain a given subset.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map};

use super::records::keys;
use super::{Engine, Error};
use crate::logical::{handler, Field, Operation, Request, Response, Route};

/// Longest label key and value, and most labels per resource.
pub const MAX_KEY: usize = 64;
pub const MAX_VALUE: usize = 128;
pub const MAX_LABELS: usize = 64;

pub fn routes(engine: &Arc<Engine>) -> Vec<Route<Error>> {
    vec![
        Route::new(
            "metadata/?",
            "Label clusters and databases; look them up by labels.",
            HELP,
        )
        .field(Field::string("cluster", "Cluster to label.").required())
        .field(Field::string(
            "database",
            "Database of the cluster to label (omit to label the cluster).",
        ))
        .field(
            Field::map(
                "labels",
                "Labels to set; they replace the resource's labels.",
            )
            .required(),
        )
        .field(Field::list(
            "selector",
            "Lookup: `key=value` pairs every match must carry.",
        ))
        .op(
            Operation::Write,
            "Set the labels of a cluster or database.",
            handler(engine, write_labels),
        )
        .op(
            Operation::Read,
            "Look up resources whose labels contain the selector.",
            handler(engine, lookup),
        )
        .op(
            Operation::List,
            "List every labelled resource with its labels.",
            handler(engine, list_labels),
        ),
        Route::new(
            "metadata/{id*}",
            "Remove the labels of one resource.",
            DELETE_HELP,
        )
        .field(Field::path("id", "`<cluster>` or `<cluster>/<database>`."))
        .op(
            Operation::Delete,
            "Remove a resource's labels.",
            handler(engine, delete_labels),
        ),
    ]
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), Error> {
    let bad = |reason: String| Error::InvalidField {
        field: "labels",
        reason,
    };
    if labels.is_empty() {
        return Err(bad("give at least one label".into()));
    }
    if labels.len() > MAX_LABELS {
        return Err(bad(format!("at most {MAX_LABELS} labels per resource")));
    }
    for (k, v) in labels {
        if k.is_empty() || k.len() > MAX_KEY {
            return Err(bad(format!("key {k:?} must be 1 to {MAX_KEY} characters")));
        }
        if !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        {
            return Err(bad(format!(
                "key {k:?} may only hold ASCII letters, digits, '_', '-', '.' and '/'"
            )));
        }
        if v.chars().count() > MAX_VALUE {
            return Err(bad(format!(
                "value of {k:?} is longer than {MAX_VALUE} characters"
            )));
        }
        if v.chars().any(char::is_control) {
            return Err(bad(format!("value of {k:?} holds control characters")));
        }
    }
    Ok(())
}

async fn write_labels(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let cluster = req.fields.str("cluster").unwrap_or_default();
    let database = req.fields.str("database").filter(|d| !d.is_empty());
    let labels = req.fields.map("labels").unwrap_or_default();
    check_labels(&labels)?;
    if engine.load_cluster(&cluster).await?.is_none() {
        return Err(Error::ClusterNotFound { name: cluster });
    }
    let id = match &database {
        Some(db) => {
            if engine.load_database(&cluster, db).await?.is_none() {
                return Err(Error::DatabaseNotFound {
                    cluster,
                    database: db.clone(),
                });
            }
            format!("{cluster}/{db}")
        }
        None => cluster,
    };
    engine
        .storage
        .put_json(&keys::metadata(&engine.prefix, &id), &labels)
        .await?;
    Ok(Response::empty())
}

async fn all_labels(engine: &Engine) -> Result<Vec<(String, BTreeMap<String, String>)>, Error> {
    let mut out = Vec::new();
    for name in engine
        .storage
        .list(&keys::metadata_folder(&engine.prefix))
        .await?
    {
        let id = keys::metadata_id(&name);
        if let Some(labels) = engine
            .storage
            .get_json::<BTreeMap<String, String>>(&keys::metadata(&engine.prefix, &id))
            .await?
        {
            out.push((id, labels));
        }
    }
    Ok(out)
}

async fn lookup(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let pairs = req.fields.list("selector").unwrap_or_default();
    if pairs.is_empty() {
        return Err(Error::InvalidField {
            field: "selector",
            reason: "give key=value pairs to look up, e.g. ?selector=team=payments,env=prod (LIST lists everything)".into(),
        });
    }
    let mut wanted = BTreeMap::new();
    for pair in pairs {
        let (k, v) = pair.split_once('=').ok_or_else(|| Error::InvalidField {
            field: "selector",
            reason: format!("{pair:?} is not key=value"),
        })?;
        wanted.insert(k.to_string(), v.to_string());
    }
    let mut ids = Vec::new();
    let mut info = Map::new();
    for (id, labels) in all_labels(&engine).await? {
        if wanted.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            info.insert(id.clone(), json!(labels));
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Ok(Response::empty()); // 404, as an empty list is in Vault
    }
    Ok(Response::list_with_info(ids, info))
}

async fn list_labels(engine: Arc<Engine>, _req: Request) -> Result<Response, Error> {
    let mut ids = Vec::new();
    let mut info = Map::new();
    for (id, labels) in all_labels(&engine).await? {
        info.insert(id.clone(), json!(labels));
        ids.push(id);
    }
    Ok(Response::list_with_info(ids, info))
}

async fn delete_labels(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let id = req.capture("id");
    let key = keys::metadata(&engine.prefix, &id);
    if engine.storage.get(&key).await?.is_none() {
        return Err(Error::InvalidField {
            field: "id",
            reason: format!("{id:?} has no labels"),
        });
    }
    engine.storage.delete(&key).await?;
    Ok(Response::empty())
}

const HELP: &str = "Write sets the labels of a cluster (`cluster`) or one of its databases (`cluster` and `database`), replacing earlier ones: keys of 1-64 characters (letters, digits, `_ - . /`), values of at most 128 characters, at most 64 labels. Read looks resources up by a subset of labels: `?selector=team=payments,env=prod` returns every resource carrying all those pairs (`keys` are `<cluster>` or `<cluster>/<database>`, `key_info` their labels). List returns every labelled resource. Purging a cluster or database removes its labels.";
const DELETE_HELP: &str = "Removes every label of `<cluster>` or `<cluster>/<database>`.";
