//! Shared helpers for the database engine tests.

use serde_json::{json, Value};

use crate::support::pg::Pg;
use crate::support::server::TestServer;

/// A root user of its own in `pg`, so tests sharing a server never rotate
/// each other's passwords.
pub async fn root_user(pg: &Pg, name: &str) -> (String, String) {
    let password = format!("pw-{name}-initial");
    pg.admin()
        .await
        .batch_execute(&format!(
            "CREATE ROLE \"{name}\" WITH LOGIN CREATEROLE CREATEDB PASSWORD '{password}'"
        ))
        .await
        .unwrap();
    (name.to_string(), password)
}

pub fn cluster_body(pg: &Pg, user: &str, password: &str) -> Value {
    json!({
        "host": pg.host(),
        "port": pg.port(),
        "username": user,
        "password": password,
        "ssl_mode": "disable",
    })
}

/// Registers `cluster` on `pg` with a fresh root user; returns that user.
pub async fn register(s: &TestServer, pg: &Pg, cluster: &str) -> String {
    let user = format!("root_{}", cluster.replace(['-', '.'], "_"));
    let (user, password) = root_user(pg, &user).await;
    let r = s
        .write(
            &format!("database/cluster/{cluster}"),
            cluster_body(pg, &user, &password),
        )
        .await;
    assert_eq!(r.status, 200, "register {cluster}: {}", r.text);
    user
}

/// Whether `user` can log in with `password`.
pub async fn can_login(pg: &Pg, user: &str, password: &str, db: &str) -> bool {
    pg.connect(user, password, db).await.is_ok()
}

pub async fn role_exists(pg: &Pg, role: &str) -> bool {
    !pg.admin()
        .await
        .query("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .unwrap()
        .is_empty()
}
