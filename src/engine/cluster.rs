//! `cluster/` routes: register, update, read, disable and list clusters.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::records::{now, ClusterRecord, State};
use super::settings::{self, Settings};
use super::{identity, names, rotation, Engine, Error};
use crate::logical::{handler, Field, Operation, Request, Response, Route};
use crate::postgres;

pub fn routes(engine: &Arc<Engine>) -> Vec<Route<Error>> {
    vec![
        Route::new("cluster/?", "List registered clusters.", LIST_HELP).op(
            Operation::List,
            "List every registered cluster with its state.",
            handler(engine, list_clusters),
        ),
        Route::new(
            "cluster/{cluster}/?",
            "Register, read or disable a cluster.",
            CLUSTER_HELP,
        )
        .field(Field::name("cluster", "Name of the cluster."))
        .field(Field::string(
            "host",
            "Host name of the cluster's writer node.",
        ))
        .field(Field::int("port", "Port of the cluster.").default(json!(5432)))
        .field(
            Field::string("database", "Database to connect to for administration.")
                .default(json!("postgres")),
        )
        .field(Field::string(
            "username",
            "Root user: a superuser or a role with CREATEROLE.",
        ))
        .field(
            Field::string(
                "password",
                "Root password; rotated at registration so it stops working.",
            )
            .sensitive(),
        )
        .field(
            Field::string(
                "ssl_mode",
                "TLS mode as in libpq: disable, require, verify-ca or verify-full.",
            )
            .default(json!("verify-full")),
        )
        .field(Field::string(
            "ssl_root_cert",
            "PEM CA certificate(s) to verify the server with (default: the system's trust roots).",
        ))
        .field(Field::string("tls_ca", "Vault's name for ssl_root_cert."))
        .field(Field::string(
            "ssl_cert",
            "PEM client certificate, for servers whose pg_hba.conf asks for one (clientcert=verify-ca or verify-full).",
        ))
        .field(Field::string("tls_certificate", "Vault's name for ssl_cert."))
        .field(
            Field::string(
                "ssl_key",
                "PEM private key of ssl_cert (unencrypted; stored encrypted, read back only with sudo).",
            )
            .sensitive(),
        )
        .field(Field::string("private_key", "Vault's name for ssl_key.").sensitive())
        .field(
            Field::string(
                "channel_binding",
                "As in libpq: require ties the SCRAM login to the TLS connection (SCRAM-SHA-256-PLUS); prefer or disable.",
            )
            .default(json!("prefer")),
        )
        .field(
            Field::int(
                "max_open_connections",
                "Largest number of connections per pool.",
            )
            .default(json!(4)),
        )
        .field(
            Field::int("max_idle_connections", "Idle connections kept per pool.").default(json!(2)),
        )
        .field(
            Field::duration(
                "max_connection_lifetime",
                "Longest a connection is reused (0 = no limit).",
            )
            .default(json!(0)),
        )
        .existence(handler(engine, exists))
        .op(
            Operation::Write,
            "Register a new cluster or update an existing one.",
            handler(engine, write_cluster),
        )
        .op(
            Operation::Read,
            "Read a cluster's configuration (passwords need sudo).",
            handler(engine, read_cluster),
        )
        .op(
            Operation::Delete,
            "Disable a cluster, keeping its configuration.",
            handler(engine, disable_cluster),
        )
        .op(
            Operation::List,
            "List the cluster's databases with their state.",
            handler(engine, list_databases),
        ),
    ]
}

async fn exists(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    Ok(match engine.load_cluster(&req.capture("cluster")).await? {
        Some(_) => Response::json(json!({"exists": true})),
        None => Response::empty(),
    })
}

/// Checks that `user` may create roles (and reports whether it may create
/// databases), on an open root connection.
pub async fn check_root_privileges(
    client: &tokio_postgres::Client,
    user: &str,
) -> Result<bool, Error> {
    let row = client
        .query_one(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    let (superuser, createrole, createdb): (bool, bool, bool) =
        (row.get(0), row.get(1), row.get(2));
    if !(superuser || createrole) {
        return Err(Error::RootCannotCreateRoles { user: user.into() });
    }
    Ok(superuser || createdb)
}

/// Maps a root login failure to what the operator must fix.
pub fn root_login_error(record: &ClusterRecord, e: postgres::Error) -> Error {
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

async fn write_cluster(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let name = req.capture("cluster");
    names::check_identifier("cluster", &name)?;
    let settings = Settings::parse(&req.fields)?;
    let lock = engine.lock_for(&name);
    let _guard = lock.lock().await;
    let existing = match engine.load_cluster(&name).await? {
        Some(r) if r.pending.is_some() => rotation::resolve(&engine, r).await?,
        other => other,
    };
    match existing {
        None => register(&engine, &name, settings).await,
        Some(record) => update(&engine, record, settings, req.caller.sudo).await,
    }
}

async fn register(engine: &Engine, name: &str, settings: Settings) -> Result<Response, Error> {
    let host = settings
        .host
        .clone()
        .ok_or(Error::MissingField { field: "host" })?;
    let username = settings
        .username
        .clone()
        .ok_or(Error::MissingField { field: "username" })?;
    let password = settings
        .password
        .clone()
        .ok_or(Error::MissingField { field: "password" })?;
    let stamp = now();
    let mut record = ClusterRecord {
        name: name.to_string(),
        host,
        port: settings.port,
        database: settings.database.clone(),
        username: username.clone(),
        password,
        password_history: Vec::new(),
        management_role: String::new(),
        management_password: String::new(),
        system_identifier: None,
        ssl_mode: settings.ssl_mode,
        ssl_root_cert: None,
        ssl_cert: None,
        ssl_key: None,
        channel_binding: Default::default(),
        max_open_connections: 0,
        max_idle_connections: 0,
        max_connection_lifetime: 0,
        state: State::Registering,
        generation: 0,
        pending: None,
        created_at: stamp.clone(),
        updated_at: stamp,
        disabled_at: None,
    };
    settings.apply_to(&mut record);
    settings::check_tls(&record)?;
    // From the identity check until the record is stored, no other
    // registration of this mount may look.
    let _registering = engine.registration_lock().await;
    let client = rotation::connect_root(&record, &record.password)
        .await
        .map_err(|e| root_login_error(&record, e))?;
    check_root_privileges(&client, &username).await?;
    record.system_identifier = Some(identity::check_server_is_new(engine, &record, &client).await?);
    let mut pending = rotation::plan(&record, true);
    if engine.options.keep_root_password {
        // Dev mode forgets everything when it stops, but the users it issued
        // stay in PostgreSQL if it is killed. One management role per root
        // user, named for it and taken over by the next dev server, keeps
        // them findable: `reconcile/<cluster>` lists the users its
        // management role granted, whichever dev server did.
        pending.management_role = dev_management_role(&username);
        pending.creates_management_role = client
            .query(
                "SELECT 1 FROM pg_roles WHERE rolname = $1",
                &[&pending.management_role],
            )
            .await
            .map_err(Error::from)?
            .is_empty();
    }
    drop(client);
    let warning = if engine.options.keep_root_password {
        // The same password, set again: the rotation's checks still run,
        // the operator's login keeps working.
        pending.root_password = record.password.clone();
        format!(
            "dev mode: the password of {:?} was not rotated, since in-memory storage would lose it when the server stops; a server with durable storage rotates it",
            record.username
        )
    } else {
        format!(
            "the password of {:?} was rotated: the one you supplied no longer works; pgsecrets keeps the new one (read it with sudo)",
            record.username
        )
    };
    let record = rotation::apply(engine, record, pending).await?;
    let mut response = Response::json(json!({
        "name": record.name,
        "management_role": record.management_role,
        "state": record.state.as_str(),
    }))
    .with_warning(warning);
    response.warnings.extend(settings::tls_warning(&record));
    Ok(response)
}

/// The management role dev mode uses for `root_user`: `v-manage-dev-` and
/// the user's name, cut to PostgreSQL's 63 bytes.
fn dev_management_role(root_user: &str) -> String {
    let mut name = format!("v-manage-dev-{root_user}");
    while name.len() > 63 {
        name.pop();
    }
    name
}

async fn update(
    engine: &Engine,
    mut record: ClusterRecord,
    settings: Settings,
    sudo: bool,
) -> Result<Response, Error> {
    let port = if settings.given.contains(&"port") {
        settings.port
    } else {
        record.port
    };
    if let Some(host) = &settings.host {
        if *host != record.host || port != record.port {
            return Err(Error::ClusterNameTaken {
                name: record.name.clone(),
                host: record.host.clone(),
                port: record.port,
            });
        }
    }
    let mut warnings = Vec::new();
    if settings
        .username
        .as_ref()
        .is_some_and(|u| *u != record.username)
    {
        warnings.push(
            "username was ignored: the root user of a registered cluster cannot change".to_string(),
        );
    }
    if settings.password.is_some() {
        warnings.push(
            "password was ignored: pgsecrets manages it; use rotate-root to change it".to_string(),
        );
    }
    let mut candidate = record.clone();
    settings.update(&mut candidate)?;
    // Every later connection sends the stored passwords under these TLS
    // settings: trusting another CA or verifying less is a decision as
    // weighty as reading the passwords, which needs sudo.
    if !sudo
        && (candidate.ssl_mode != record.ssl_mode
            || candidate.ssl_root_cert != record.ssl_root_cert
            || candidate.ssl_cert != record.ssl_cert
            || candidate.ssl_key != record.ssl_key
            || candidate.channel_binding != record.channel_binding)
    {
        return Err(Error::SudoRequired {
            message: "changing the TLS settings (ssl_mode, ssl_root_cert, ssl_cert, ssl_key, channel_binding) of a registered cluster needs sudo on this path".into(),
        });
    }
    settings::check_tls(&candidate)?;
    // New settings (TLS mode, database) must work before they are kept;
    // a disabled cluster comes back only if its stored credentials still work.
    let client = rotation::connect_root(&candidate, &candidate.password)
        .await
        .map_err(|e| match (&record.state, e) {
            (State::Disabled, postgres::Error::AuthFailed { .. }) => {
                Error::StoredCredentialsRejected {
                    name: record.name.clone(),
                }
            }
            (_, e) => root_login_error(&record, e),
        })?;
    drop(client);
    let reactivated = record.state == State::Disabled;
    settings.update(&mut record)?;
    record.state = State::Active;
    record.disabled_at = None;
    record.generation += 1;
    record.updated_at = now();
    engine.save_cluster(&record).await?;
    engine.pools.trim_idle(&record);
    let mut response = Response::json(json!({
        "name": record.name,
        "management_role": record.management_role,
        "state": record.state.as_str(),
    }));
    warnings.extend(settings::tls_warning(&record));
    if reactivated {
        warnings.push("the cluster was disabled and is active again; its databases stay disabled until written again".into());
    }
    response.warnings = warnings;
    Ok(response)
}

/// The JSON form of a cluster; passwords only for callers with sudo.
pub fn cluster_json(record: &ClusterRecord, with_passwords: bool) -> Map<String, Value> {
    let mut data = json!({
        "name": record.name,
        "host": record.host,
        "port": record.port,
        "database": record.database,
        "username": record.username,
        "management_role": record.management_role,
        "ssl_mode": record.ssl_mode.as_str(),
        "ssl_root_cert": record.ssl_root_cert,
        "ssl_cert": record.ssl_cert,
        "channel_binding": record.channel_binding.as_str(),
        "max_open_connections": record.max_open_connections,
        "max_idle_connections": record.max_idle_connections,
        "max_connection_lifetime": record.max_connection_lifetime,
        "state": record.state.as_str(),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "disabled_at": record.disabled_at,
    });
    if with_passwords {
        data["password"] = json!(record.password);
        data["management_password"] = json!(record.management_password);
        data["ssl_key"] = json!(record.ssl_key);
    }
    match data {
        Value::Object(map) => map,
        _ => unreachable!("json! object"),
    }
}

async fn read_cluster(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let name = req.capture("cluster");
    let record = match engine.load_cluster(&name).await? {
        Some(r) if r.pending.is_some() => {
            let lock = engine.lock_for(&name);
            let _guard = lock.lock().await;
            rotation::resolve(&engine, r).await?
        }
        other => other,
    };
    Ok(match record.filter(|r| r.state != State::Registering) {
        Some(record) => Response::data(cluster_json(&record, req.caller.sudo)),
        None => Response::empty(),
    })
}

async fn disable_cluster(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let name = req.capture("cluster");
    let lock = engine.lock_for(&name);
    let _guard = lock.lock().await;
    let mut record = engine
        .load_cluster(&name)
        .await?
        .filter(|r| r.state != State::Registering)
        .ok_or_else(|| Error::ClusterNotFound { name: name.clone() })?;
    if record.state == State::Disabled {
        return Ok(Response::empty());
    }
    let stamp = now();
    // Databases first: a crash in between leaves the cluster active with
    // disabled databases, which refuses credentials just the same.
    for mut db in engine.databases(&name).await? {
        if db.state == State::Active {
            db.state = State::Disabled;
            db.disabled_at = Some(stamp.clone());
            engine.save_database(&db).await?;
        }
    }
    record.state = State::Disabled;
    record.disabled_at = Some(stamp.clone());
    record.updated_at = stamp;
    record.generation += 1;
    engine.save_cluster(&record).await?;
    engine.pools.close_cluster(&name);
    let revoking = engine.revoke_leases_of(&name, None).await?;
    Ok(disabled_response(revoking))
}

/// 204, or a warning naming the leases now being revoked.
pub fn disabled_response(revoking: usize) -> Response {
    if revoking == 0 {
        return Response::empty();
    }
    Response::default().with_warning(format!(
        "{revoking} outstanding lease(s) are being revoked in the background; sys/leases/lookup shows any that fail"
    ))
}

async fn list_clusters(engine: Arc<Engine>, _req: Request) -> Result<Response, Error> {
    let mut keys_out = Vec::new();
    let mut info = Map::new();
    for record in engine.clusters().await? {
        info.insert(
            record.name.clone(),
            json!({"state": record.state.as_str(), "host": record.host, "port": record.port}),
        );
        keys_out.push(record.name);
    }
    Ok(Response::list_with_info(keys_out, info))
}

async fn list_databases(engine: Arc<Engine>, req: Request) -> Result<Response, Error> {
    let cluster = req.capture("cluster");
    let mut keys_out = Vec::new();
    let mut info = Map::new();
    for db in engine.databases(&cluster).await? {
        info.insert(
            db.name.clone(),
            json!({"state": db.state.as_str(), "objects_owner_role": db.objects_owner_role}),
        );
        keys_out.push(db.name);
    }
    Ok(Response::list_with_info(keys_out, info))
}

const LIST_HELP: &str = "Lists every registered cluster, active or disabled; `key_info` gives each one's state, host and port.";
const CLUSTER_HELP: &str = r#"Writing a new cluster registers it: pgsecrets connects with the given root user (TLS as `ssl_mode` says), checks that it can create roles, then in one PostgreSQL transaction creates a management role (`v-manage-<random>`, LOGIN CREATEROLE NOINHERIT) and changes the root password. The new passwords are stored (encrypted) before PostgreSQL changes, so a crash at any point never loses the working root password. The password you supplied stops working; do not change the root or management role by hand afterwards.

Writing an existing active cluster updates its settings (TLS, pool sizes) without rotating; the new settings must connect. Changing a TLS setting (`ssl_mode`, `ssl_root_cert`, `ssl_cert`, `ssl_key`, `channel_binding`) needs `sudo` on the path: every later connection sends the stored passwords under them. Writing a disabled cluster re-activates it when its stored credentials still work. A name is bound to its host and port.

TLS follows libpq's `sslmode`: `verify-full` (default) checks the chain and the host name, with the system's trust roots unless `ssl_root_cert` gives a CA; `verify-ca` checks the chain only; `require` encrypts without checking the certificate (a warning says so), but given `ssl_root_cert` it checks the chain as `verify-ca` does, as libpq does; `disable` only when written explicitly. `prefer` and `allow`, which fall back to cleartext, are refused. Certificates are inline PEM; Vault's names `tls_ca`, `tls_certificate` and `private_key` are accepted for `ssl_root_cert`, `ssl_cert` and `ssl_key`. A write checks that they parse, are within their validity period and that the key belongs to the certificate; an encrypted key is refused. rustls, which pgsecrets uses, accepts no self-signed server certificate (sign it with a CA and give the CA) and reads host names only from the subjectAltName, never from the common name. `ssl_key` is stored encrypted and read back only with `sudo`.

Passwords are sent only as SCRAM unless TLS verified the server (`ssl_mode=verify-full`): a server asking for a cleartext or md5 password over any other channel is refused before anything is sent (400), as libpq's `require_auth=scram-sha-256` would.

One PostgreSQL server has one registration per mount: registering is refused (400, naming the cluster) when a cluster of the mount, active, disabled or unfinished until it is purged, already holds the server the connection reaches, whatever host name reaches it (servers are told apart by `system_identifier` and, as a restored copy or a replica shares that, by a probe of the running server through an advisory lock), or when the root user is the root or management role of such a cluster. Every rotation of a root user (registration, `rotate-root`, `clone`) holds an advisory lock in the target server for that user, so rotations through any name, mount or pgsecrets run one at a time; under it a fresh login checks that the password it starts from is still current, and after the commit another fresh login proves the new one before it is stored.

Reading returns the configuration and the management role's name; the root and management passwords are included only when the caller's policy grants `sudo` on the path.

Deleting disables the cluster: its configuration is kept, its databases are disabled, new databases, credentials and renewals are refused, and outstanding leases are revoked. Nothing is removed from PostgreSQL. Purge it with `gc/cluster/<name>`.

Listing the cluster returns its databases with their state."#;
