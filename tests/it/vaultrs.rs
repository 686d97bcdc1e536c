//! The real Rust `vaultrs` client (0.8, on rustify) against a real server
//! and real PostgreSQL: the calls a Rust service makes, unchanged.
//!
//! vaultrs has no `sys/leases` functions, and its generic reads keep only
//! `data`. The lease calls are therefore rustify endpoints executed through
//! vaultrs' own `api::exec_with_*` helpers (the way vaultrs defines its
//! endpoints), and the leased read uses `kv1::get_raw`, which returns the
//! whole envelope.

use rustify_derive::Endpoint;
use serde::Deserialize;
use serde_json::json;
use vaultrs::api::token::requests::CreateTokenRequest;
use vaultrs::client::{Client, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::support::engine::role_exists;
use crate::support::pg::Pg;
use crate::support::server::TestServer;

/// A client for `token`, as a Rust service builds one.
fn client(s: &TestServer, token: &str) -> VaultClient {
    // vaultrs is built with rustls but no crypto provider of its own (no
    // OpenSSL, no aws-lc): use ring, as the server does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    VaultClient::new(
        VaultClientSettingsBuilder::default()
            .address(&s.url)
            .token(token)
            .build()
            .unwrap(),
    )
    .unwrap()
}

/// What `database/creds/...` returns, as an application types it.
#[derive(Debug, Deserialize)]
struct DbCreds {
    username: String,
    password: String,
    host: String,
    port: u16,
    database: String,
    connection_url: String,
}

/// The top-level lease fields of a renewal (its `data` is null).
#[derive(Debug, Deserialize)]
struct Renewed {
    lease_id: String,
    lease_duration: u64,
    renewable: bool,
    warnings: Option<Vec<String>>,
}

#[derive(Debug, Endpoint)]
#[endpoint(path = "sys/leases/renew", method = "PUT", response = "Renewed")]
struct RenewLease {
    lease_id: String,
    increment: Option<String>,
}

#[derive(Debug, Endpoint)]
#[endpoint(path = "sys/leases/revoke", method = "PUT")]
struct RevokeLease {
    lease_id: String,
}

#[derive(Debug, Endpoint)]
#[endpoint(path = "sys/leases/revoke-prefix/{self.prefix}", method = "PUT")]
struct RevokePrefix {
    #[endpoint(skip)]
    prefix: String,
}

fn status_of(e: &ClientError) -> Option<u16> {
    match e {
        ClientError::APIError { code, .. } => Some(*code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_vaultrs_client_works_unchanged() {
    let s = TestServer::start().await;
    let pg = Pg::shared();
    let creds_path = crate::support::engine::setup(
        &s,
        pg,
        "vrs1",
        json!({"default_ttl": "10m", "max_ttl": "1h"}),
    )
    .await;
    let role_name = creds_path.strip_prefix("database/creds/").unwrap();
    let root = client(&s, &s.root_token);

    // Health, with the fields vaultrs requires.
    let health = vaultrs::sys::health(&root).await.expect("sys::health");
    assert!(health.initialized && !health.sealed && !health.standby);
    assert!(!health.performance_standby);
    assert_eq!(health.replication_performance_mode, "disabled");
    assert_eq!(health.replication_dr_mode, "disabled");
    assert_eq!(health.version, pgsecrets::VERSION);
    assert!(health.server_time_utc > 1_600_000_000);
    assert!(!health.cluster_name.unwrap_or_default().is_empty());
    assert!(matches!(
        root.status().await.unwrap(),
        vaultrs::sys::ServerStatus::OK
    ));

    // Mounts: vaultrs requires every field of every entry.
    let mounts = vaultrs::sys::mount::list(&root).await.expect("mount::list");
    assert_eq!(mounts["database/"].mount_type, "database");
    assert_eq!(mounts["sys/"].mount_type, "system");

    // Auth methods: the token store.
    let auths = vaultrs::sys::auth::list(&root).await.expect("auth::list");
    assert_eq!(auths["token/"].mount_type, "token");
    assert_eq!(auths["token/"].config.token_type, "default-service");

    // A policy (vaultrs sends `{"name":...}` even on its GET) and a token holding it.
    let rules = r#"path "database/creds/*" { capabilities = ["read"] }"#;
    vaultrs::sys::policy::set(&root, "vrs-app", rules)
        .await
        .expect("policy::set");
    let read = vaultrs::sys::policy::read(&root, "vrs-app")
        .await
        .expect("policy::read");
    assert_eq!(
        (read.name.as_str(), read.rules.as_str()),
        ("vrs-app", rules)
    );
    let listed = vaultrs::sys::policy::list(&root).await.unwrap();
    assert!(listed.policies.contains(&"vrs-app".to_string()));

    let auth = vaultrs::token::new(
        &root,
        Some(
            CreateTokenRequest::builder()
                .policies(vec!["vrs-app".to_string()])
                .ttl("1h"),
        ),
    )
    .await
    .expect("token::new");
    assert_eq!(auth.policies, ["default", "vrs-app"]);
    assert_eq!(auth.token_policies, ["default", "vrs-app"]);
    assert_eq!(auth.lease_duration, 3600);
    assert!(auth.renewable && !auth.orphan);
    assert_eq!(auth.token_type, "service");
    let app = client(&s, &auth.client_token);

    let me = vaultrs::token::lookup_self(&app)
        .await
        .expect("token::lookup_self");
    assert_eq!(me.id, auth.client_token);
    assert_eq!(me.accessor, auth.accessor);
    assert_eq!(me.policies, ["default", "vrs-app"]);
    assert!((3590..=3600).contains(&me.ttl), "ttl {}", me.ttl);
    assert_eq!(me.creation_ttl, 3600);
    assert_eq!(me.path, "auth/token/create");
    assert!(!me.orphan);
    let renewed = app.renew(Some("2h")).await.expect("renew-self");
    assert_eq!(renewed.client_token, auth.client_token);
    assert!(renewed.lease_duration >= 7190, "{}", renewed.lease_duration);
    let by_accessor = vaultrs::token::renew_accessor(&root, &auth.accessor, Some("3h"))
        .await
        .expect("token::renew_accessor");
    assert_eq!(by_accessor.accessor, auth.accessor);
    assert!(by_accessor.lease_duration >= 10790);

    // The app token lacks the policy for anything else: a 403 APIError.
    let denied = vaultrs::sys::policy::read(&app, "vrs-app")
        .await
        .unwrap_err();
    assert_eq!(status_of(&denied), Some(403), "{denied:?}");

    // A generic read of the creds path, typed, with its lease.
    let raw = vaultrs::kv1::get_raw(
        &app,
        "database",
        creds_path.strip_prefix("database/").unwrap(),
    )
    .await
    .expect("read creds");
    assert!(raw.renewable);
    assert_eq!(raw.lease_duration, 600);
    assert!(
        raw.lease_id.starts_with(&format!("{creds_path}/")),
        "{}",
        raw.lease_id
    );
    let creds: DbCreds = serde_json::from_value(raw.data).expect("typed creds");
    assert!(creds.username.starts_with("v-app-"), "{}", creds.username);
    assert_eq!((creds.host.as_str(), creds.port), ("127.0.0.1", pg.port()));
    assert_eq!(
        creds.connection_url,
        format!(
            "postgresql://{}:{}@127.0.0.1:{}/{}?sslmode=disable",
            creds.username,
            creds.password,
            pg.port(),
            creds.database
        )
    );
    assert!(role_exists(pg, &creds.username).await);
    pg.connect(&creds.username, &creds.password, &creds.database)
        .await
        .expect("the issued user logs in");

    // vaultrs' own database-engine call issues a user too (it keeps only
    // username and password).
    let other = vaultrs::database::role::creds(&app, "database", role_name)
        .await
        .expect("database::role::creds");
    assert!(role_exists(pg, &other.username).await);
    pg.connect(&other.username, &other.password, &creds.database)
        .await
        .expect("the second issued user logs in");

    // Renew with the app token (the default policy allows it).
    let renewed: Renewed = vaultrs::api::exec_with_no_result(
        &app,
        RenewLease {
            lease_id: raw.lease_id.clone(),
            increment: Some("20m".into()),
        },
    )
    .await
    .expect("renew lease");
    assert_eq!(renewed.lease_id, raw.lease_id);
    assert_eq!(renewed.lease_duration, 1200);
    assert!(renewed.renewable);
    assert_eq!(renewed.warnings, None);

    // Revoke (root: the default policy does not grant it); the user is gone.
    vaultrs::api::exec_with_empty(
        &root,
        RevokeLease {
            lease_id: raw.lease_id.clone(),
        },
    )
    .await
    .expect("revoke lease");
    assert!(!role_exists(pg, &creds.username).await);
    let gone = vaultrs::api::exec_with_no_result(
        &app,
        RenewLease {
            lease_id: raw.lease_id.clone(),
            increment: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status_of(&gone), Some(400), "{gone:?}");

    // Revoke every lease under the creds path: the other user goes too.
    vaultrs::api::exec_with_empty(
        &root,
        RevokePrefix {
            prefix: creds_path.clone(),
        },
    )
    .await
    .expect("revoke-prefix");
    assert!(!role_exists(pg, &other.username).await);

    // Token housekeeping: revoke-orphan and tidy (both sudo).
    let spare = vaultrs::token::new(&root, Some(CreateTokenRequest::builder().ttl("10m")))
        .await
        .unwrap();
    vaultrs::token::revoke_orphan(&root, &spare.client_token)
        .await
        .expect("token::revoke_orphan");
    let spare_gone = vaultrs::token::lookup(&root, &spare.client_token)
        .await
        .unwrap_err();
    assert_eq!(status_of(&spare_gone), Some(403), "{spare_gone:?}");
    vaultrs::token::tidy(&root).await.expect("token::tidy");

    // Revoke-self ends the token.
    app.revoke().await.expect("revoke-self");
    let after = vaultrs::token::lookup_self(&app).await.unwrap_err();
    assert_eq!(status_of(&after), Some(403), "{after:?}");
}
