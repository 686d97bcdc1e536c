//! `sys/metrics?format=prometheus`: scraped and parsed as Prometheus
//! would, its figures checked against what happened (users issued and
//! revoked in PostgreSQL, a PostgreSQL outage).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::support::engine::setup;
use crate::support::pg::{Pg, PgVersion};
use crate::support::server::TestServer;

/// `name{labels}` → value, for every sample line.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.insert(series.to_string(), value);
    }
    samples
}

async fn scrape(s: &TestServer) -> (String, BTreeMap<String, f64>) {
    let r = s.read("sys/metrics?format=prometheus").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        r.headers
    );
    let samples = parse(&r.text);
    (r.text, samples)
}

fn get(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn leases_and_users_are_counted_and_metrics_need_a_token() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let creds = setup(&s, pg, "met1", json!({"default_ttl": "1h"})).await;
    let (_, before) = scrape(&s).await;
    let mut issued = Vec::new();
    for _ in 0..3 {
        let r = s.read(&creds).await;
        assert_eq!(r.status, 200, "{}", r.text);
        issued.push(r.json());
    }
    let (_, after) = scrape(&s).await;
    assert_eq!(
        get(&after, "vault_expire_num_leases") - get(&before, "vault_expire_num_leases"),
        3.0
    );
    assert_eq!(
        get(&after, "vault_database_CreateUser_count")
            - get(&before, "vault_database_CreateUser_count"),
        3.0
    );
    let lease = issued[0]["lease_id"].as_str().unwrap();
    let r = s
        .write(
            "sys/leases/renew",
            json!({"lease_id": issued[1]["lease_id"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s
        .write("sys/leases/revoke", json!({"lease_id": lease}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let (text, revoked) = scrape(&s).await;
    assert_eq!(
        get(&after, "vault_expire_num_leases") - get(&revoked, "vault_expire_num_leases"),
        1.0
    );
    assert_eq!(get(&revoked, "vault_database_RevokeUser_count"), 1.0);
    assert_eq!(get(&revoked, "vault_database_RenewUser_count"), 1.0);
    assert!(get(&revoked, "vault_core_handle_request_count") >= 8.0);
    assert!(revoked.contains_key("vault_database_CreateUser{quantile=\"0.99\"}"));
    // No label (or anything else) names a lease, a user or a token.
    for secret in issued.iter().flat_map(|c| {
        [
            c["lease_id"].as_str().unwrap().to_string(),
            c["data"]["username"].as_str().unwrap().to_string(),
            c["data"]["password"].as_str().unwrap().to_string(),
        ]
    }) {
        assert!(!text.contains(&secret), "{secret} in the metrics");
    }
    assert!(!text.contains(&s.root_token));

    let r = s
        .request("GET", "sys/metrics?format=prometheus", None, None)
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let t = s.token_with(&["default"]).await;
    assert_eq!(
        s.read_as(&t, "sys/metrics?format=prometheus").await.status,
        403
    );
    let r = s.read("sys/metrics?format=bogus").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().contains("\"bogus\""), "{}", r.text);
    // A policy granting read on sys/metrics is enough.
    assert_eq!(
        s.write(
            "sys/policies/acl/scraper",
            json!({"policy": "path \"sys/metrics\" { capabilities = [\"read\"] }"})
        )
        .await
        .status,
        204
    );
    let scraper = s.token_with(&["scraper"]).await;
    assert_eq!(
        s.read_as(&scraper, "sys/metrics?format=prometheus")
            .await
            .status,
        200
    );
}

/// PostgreSQL stopped: the expiry of a lease fails, the error counter
/// rises, and after five failures the lease counts as irrevocable; once
/// PostgreSQL is back the revocation goes through and the count is 0.
/// The server's clock is advanced through the retries' back-off.
#[tokio::test]
async fn an_outage_shows_as_expiry_errors_and_irrevocable_leases_until_it_ends() {
    let pg = Pg::start(PgVersion::under_test());
    let s = TestServer::start().await;
    let creds = setup(&s, &pg, "met2", json!({"default_ttl": "1h"})).await;
    let issued = s.read(&creds).await;
    assert_eq!(issued.status, 200, "{}", issued.text);
    let lease = issued.json()["lease_id"].as_str().unwrap().to_string();
    pg.stop();
    let failures = || async {
        let r = s
            .write("sys/leases/lookup", json!({"lease_id": lease}))
            .await;
        r.data()["revoke_failures"].as_u64().unwrap_or(0)
    };
    s.advance(Duration::from_secs(2 * 3600));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {seen} failed attempts"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = failures().await;
        if now > seen {
            seen = now;
            // The next attempt is due after its back-off.
            s.advance(Duration::from_secs(60));
        }
    }
    let (_, down) = scrape(&s).await;
    assert!(
        get(&down, "vault_expire_lease_expiration_error") >= 5.0,
        "{down:?}"
    );
    assert_eq!(get(&down, "vault_expire_num_irrevocable_leases"), 1.0);
    assert!(
        down.keys()
            .any(|k| k.starts_with("pgsecrets_postgres_errors{cluster=\"met2\",kind=")),
        "{down:?}"
    );

    pg.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        s.advance(Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, up) = scrape(&s).await;
        if get(&up, "vault_expire_num_irrevocable_leases") == 0.0 {
            assert!(get(&up, "vault_expire_lease_expiration") >= 1.0);
            assert_eq!(get(&up, "vault_expire_num_leases"), 0.0);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still irrevocable: {up:?}"
        );
    }
}

/// As an operator configures it: `unauthenticated_metrics_access` lets a
/// scraper without a token read the metrics, and the listener's
/// certificate counts down to its expiry (a day, for the test's).
#[tokio::test]
async fn a_listener_may_open_metrics_to_scrapers_and_reports_its_certificate() {
    use crate::support::process::{free_port, start_with_config};
    let dir = tempfile::tempdir().unwrap();
    let certs = crate::support::certs::make(dir.path(), "IP:127.0.0.1");
    let port = free_port();
    let config = dir.path().join("pgsecrets.toml");
    std::fs::write(
        &config,
        format!(
            "[listener]\naddress = \"127.0.0.1:{port}\"\nunauthenticated_metrics_access = true\n\
             tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n[storage]\nbackend = \"inmem\"\n",
            certs.cert.display(),
            certs.key.display()
        ),
    )
    .unwrap();
    let mut server = start_with_config(&config);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&certs.ca_pem).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/v1/sys/metrics?format=prometheus");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        match client.get(&url).send().await {
            Ok(r) => {
                assert_eq!(r.status(), 200, "no token needed");
                break r.text().await.unwrap();
            }
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("never served: {e}"),
        }
    };
    server.kill().unwrap();
    server.wait().unwrap();
    let samples = parse(&text);
    let left = get(
        &samples,
        "pgsecrets_tls_cert_expiry_seconds{use=\"listener\"}",
    );
    assert!(left > 86_000.0 && left <= 86_400.0, "{left}: {text}");
}
