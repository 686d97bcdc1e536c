//! Health, seal status, leader, OpenAPI, engine info: the unauthenticated routes.

use crate::support::server::TestServer;

#[tokio::test]
async fn health_answers_get_and_head_with_the_fields_clients_parse() {
    let s = TestServer::start().await;
    let r = s.request("GET", "sys/health", None, None).await;
    assert_eq!(r.status, 200);
    let b = r.json();
    for key in [
        "initialized",
        "sealed",
        "standby",
        "performance_standby",
        "replication_performance_mode",
        "replication_dr_mode",
        "server_time_utc",
        "version",
        "cluster_name",
        "cluster_id",
    ] {
        assert!(b.get(key).is_some(), "health lacks {key}");
    }
    assert_eq!(b["initialized"], true);
    assert_eq!(b["sealed"], false);
    let r = s.request("HEAD", "sys/health", None, None).await;
    assert_eq!(r.status, 200);
    assert!(r.text.is_empty());
    let r = s
        .request("GET", "sys/health?activecode=299", None, None)
        .await;
    assert_eq!(r.status, 299);
    let r = s
        .request("GET", "sys/health?activecode=abc", None, None)
        .await;
    assert_eq!(r.status, 400);
    let r = s
        .request("HEAD", "sys/mounts", Some(&s.root_token), None)
        .await;
    assert_eq!(r.status, 405);
}

#[tokio::test]
async fn seal_status_leader_and_init_answer_without_a_token() {
    let s = TestServer::start().await;
    let r = s.request("GET", "sys/seal-status", None, None).await;
    assert_eq!(r.status, 200);
    let b = r.json();
    assert_eq!(b["sealed"], false);
    assert_eq!(b["type"], "shamir");
    assert_eq!(b["storage_type"], "inmem");
    let r = s.request("GET", "sys/leader", None, None).await;
    assert_eq!(r.json()["ha_enabled"], false);
    assert!(r.json()["active_time"].as_str().unwrap().ends_with('Z'));
    let r = s.request("GET", "sys/init", None, None).await;
    assert_eq!(r.json()["initialized"], true);
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let s = TestServer::start().await;
    let r = s
        .request("GET", "sys/internal/specs/openapi", None, None)
        .await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.0.2");
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/sys/health",
        "/sys/mounts/{path}",
        "/auth/token/create",
        "/database/info",
        "/sys/policies/acl/{name}",
    ] {
        assert!(paths.contains_key(p), "missing {p}");
    }
    let create = &doc["paths"]["/auth/token/create"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"]["properties"];
    assert_eq!(create["ttl"]["format"], "duration");
}

#[tokio::test]
async fn engine_info_reports_the_build() {
    let s = TestServer::start().await;
    let r = s.request("GET", "database/info", None, None).await;
    assert_eq!(r.status, 200);
    let d = r.data();
    assert_eq!(d["name"], "pgsecrets");
    assert_eq!(d["version"], env!("CARGO_PKG_VERSION"));
    assert!(!d["git_commit"].as_str().unwrap().is_empty());
    assert!(!d["build_date"].as_str().unwrap().is_empty());
}
