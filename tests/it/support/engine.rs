//! Helpers of the database engine tests: root users of their own, a
//! registered cluster with a database and a role, logins and roles checked
//! in PostgreSQL itself.

use std::time::{Duration, Instant};

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

/// A registered cluster with one database and one role; returns the creds path.
pub async fn setup(s: &TestServer, pg: &Pg, cluster: &str, role_body: Value) -> String {
    register(s, pg, cluster).await;
    let db = format!("{}_db", cluster.replace(['-', '.'], "_"));
    let r = s
        .write(&format!("database/cluster/{cluster}/{db}"), json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s.write("database/roles/app", role_body).await;
    assert!(r.status == 204 || r.status == 200, "{}", r.text);
    format!("database/creds/{cluster}/{db}/app")
}

pub async fn wait_until_gone(pg: &Pg, user: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while role_exists(pg, user).await {
        assert!(
            Instant::now() < deadline,
            "user {user} still exists after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates `db` through pgsecrets and shows a member of its objects-owner
/// role can create objects in schema public (refused to PUBLIC since 15).
pub async fn check_database_is_usable(s: &TestServer, pg: &Pg, cluster: &str, db: &str) {
    let r = s
        .write(&format!("database/cluster/{cluster}/{db}"), json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let owner = r.data()["objects_owner_role"].as_str().unwrap().to_string();
    assert_eq!(r.data()["state"], "active");
    let admin = pg.admin().await;
    let exists = admin
        .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
        .await
        .unwrap();
    assert_eq!(exists.len(), 1, "database created");
    assert!(role_exists(pg, &owner).await, "objects-owner role created");
    let member = format!("m_{}", db.replace(['-', '.'], "_"));
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{member}\" LOGIN PASSWORD 'member-pw' IN ROLE \"{owner}\""
        ))
        .await
        .unwrap();
    let client = pg
        .connect(&member, "member-pw", db)
        .await
        .expect("member can connect");
    client
        .batch_execute("CREATE TABLE public.made_by_member (id int); INSERT INTO public.made_by_member VALUES (1);")
        .await
        .expect("a member of the objects owner can create in schema public");
    // The management role may grant the owner role (ADMIN OPTION, needed on 16+).
    let row = admin
        .query_one(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
             JOIN pg_roles g ON g.oid = m.member WHERE r.rolname = $1 AND g.rolname LIKE 'v-manage-%' AND m.admin_option",
            &[&owner],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        1,
        "management role holds the owner role WITH ADMIN OPTION"
    );
}
