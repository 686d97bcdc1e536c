//! Rate-limit quotas: a bucket per client address, the most specific rule
//! winning, checked before the token; Vault's 429 with `Retry-After`.

use pgsecrets::wire::WireConfig;
use serde_json::json;

use crate::support::server::TestServer;

/// Sends `n` GETs of `path` at once as root, each with `forwarded_for`
/// when given; returns their statuses and the last 429's `Retry-After`.
async fn burst(
    s: &TestServer,
    path: &str,
    n: usize,
    forwarded_for: Option<&str>,
) -> (Vec<u16>, Option<String>) {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let mut request = s
            .client
            .get(format!("{}/v1/{path}", s.url))
            .header("X-Vault-Token", &s.root_token);
        if let Some(address) = forwarded_for {
            request = request.header("X-Forwarded-For", address);
        }
        set.spawn(async move {
            let r = request.send().await.unwrap();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            (status, retry, text)
        });
    }
    let mut statuses = Vec::new();
    let mut retry_after = None;
    while let Some(done) = set.join_next().await {
        let (status, retry, text) = done.unwrap();
        if status == 429 {
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&text).unwrap()["errors"][0],
                format!("request path \"{path}\": rate limit quota exceeded")
            );
            retry_after = retry;
        }
        statuses.push(status);
    }
    statuses.sort();
    (statuses, retry_after)
}

#[tokio::test]
async fn at_five_a_second_the_sixth_request_gets_429_with_retry_after() {
    let s = TestServer::start().await;
    let r = s
        .write(
            "sys/quotas/rate-limit/acl",
            json!({"path": "sys/policies/acl", "rate": 5}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let (statuses, retry_after) = burst(&s, "sys/policies/acl/default", 6, None).await;
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);
    assert_eq!(retry_after.as_deref(), Some("1"));
    // Other paths are not limited by this rule.
    assert_eq!(s.read("sys/mounts").await.status, 200);
    // Checked before the token: a made-up token is refused the same way.
    let r = s.read_as("made-up", "sys/policies/acl/default").await;
    assert_eq!(r.status, 429, "{}", r.text);

    let rule = s.read("sys/quotas/rate-limit/acl").await;
    assert_eq!(
        rule.data(),
        json!({"name": "acl", "path": "sys/policies/acl", "type": "rate-limit", "rate": 5.0,
               "interval": 1, "block_interval": 0, "role": "", "inheritable": false})
    );
    let listed = s
        .request("LIST", "sys/quotas/rate-limit", Some(&s.root_token), None)
        .await;
    assert_eq!(listed.data()["keys"], json!(["acl"]));
    assert_eq!(s.delete("sys/quotas/rate-limit/acl").await.status, 204);
    assert_eq!(s.read("sys/quotas/rate-limit/acl").await.status, 404);
    let (statuses, _) = burst(&s, "sys/policies/acl/default", 8, None).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

#[tokio::test]
async fn the_most_specific_rule_wins_and_each_client_has_its_own_bucket() {
    // The test's client is a proxy the listener trusts, so
    // X-Forwarded-For names the client.
    let s = TestServer::start_with_wire(WireConfig {
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..WireConfig::default()
    })
    .await;
    for (name, body) in [
        ("all", json!({"path": "", "rate": 1000})),
        (
            "mounts",
            json!({"path": "sys/mounts", "rate": 2, "interval": "1m"}),
        ),
    ] {
        let r = s
            .write(&format!("sys/quotas/rate-limit/{name}"), body)
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
    }
    let (a, _) = burst(&s, "sys/mounts", 3, Some("10.0.0.1")).await;
    assert_eq!(a, [200, 200, 429]);
    let (b, _) = burst(&s, "sys/mounts", 2, Some("10.0.0.2")).await;
    assert_eq!(b, [200, 200], "another client has its own bucket");
    let (c, _) = burst(&s, "sys/policies/acl/default", 5, Some("10.0.0.1")).await;
    assert!(
        c.iter().all(|s| *s == 200),
        "the global rule applies here: {c:?}"
    );
    // sys/health is exempt.
    let (h, _) = burst(&s, "sys/health", 5, Some("10.0.0.1")).await;
    assert!(h.iter().all(|s| *s == 200), "{h:?}");
}

#[tokio::test]
async fn forwarded_for_is_refused_from_a_proxy_the_listener_does_not_trust() {
    let s = TestServer::start_with_wire(WireConfig {
        trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
        ..WireConfig::default()
    })
    .await;
    let r = s
        .client
        .get(format!("{}/v1/sys/mounts", s.url))
        .header("X-Vault-Token", &s.root_token)
        .header("X-Forwarded-For", "10.1.2.3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("x_forwarded_for_authorized_addrs"));
    // Without the header, the peer is the client.
    assert_eq!(s.read("sys/mounts").await.status, 200);
}

#[tokio::test]
async fn bad_rules_are_refused_and_change_nothing() {
    let s = TestServer::start().await;
    assert_eq!(
        s.write(
            "sys/quotas/rate-limit/ok",
            json!({"path": "sys/", "rate": 100})
        )
        .await
        .status,
        204
    );
    for (body, text) in [
        (
            json!({"path": "sys/mounts", "rate": 0}),
            "'rate' is invalid",
        ),
        (json!({"path": "sys/mounts"}), "rate"),
        (
            json!({"path": "sys/mounts", "rate": "abc"}),
            "'rate' is invalid",
        ),
        (
            json!({"path": "nomount/", "rate": 5}),
            "invalid mount path \"nomount/\"",
        ),
        (
            json!({"path": "sys/", "rate": 5}),
            "similar properties exists under the name \"ok\"",
        ),
        (
            json!({"path": "sys/mounts", "rate": 5, "role": "r"}),
            "role",
        ),
        (
            json!({"path": "sys/mounts", "rate": 5, "interval": "soon"}),
            "interval",
        ),
    ] {
        let r = s.write("sys/quotas/rate-limit/bad", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert!(r.error().contains(text), "{body}: {}", r.text);
    }
    assert_eq!(s.read("sys/quotas/rate-limit/bad").await.status, 404);
    let t = s.token_with(&["default"]).await;
    assert_eq!(
        s.write_as(&t, "sys/quotas/rate-limit/mine", json!({"rate": 1}))
            .await
            .status,
        403
    );
    let config = s.read("sys/quotas/config").await;
    assert_eq!(
        config.data()["rate_limit_exempt_paths"],
        json!(["sys/health", "sys/seal-status", "sys/unseal"])
    );
}
