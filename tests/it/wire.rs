//! The Vault wire protocol: paths, verbs, tokens, bodies, envelope, errors.

use serde_json::json;

use crate::support::server::TestServer;

#[tokio::test]
async fn responses_carry_the_full_envelope_and_exact_headers() {
    let s = TestServer::start().await;
    let r = s.read("auth/token/lookup-self").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["cache-control"], "no-store");
    let body = r.json();
    for key in [
        "request_id",
        "lease_id",
        "renewable",
        "lease_duration",
        "data",
        "wrap_info",
        "warnings",
        "auth",
    ] {
        assert!(body.get(key).is_some(), "missing {key} in {body}");
    }
    assert_eq!(body["request_id"].as_str().unwrap().len(), 36);
    assert_eq!(body["lease_id"], "");
    assert_eq!(body["lease_duration"], 0);
    assert_eq!(body["renewable"], false);
    assert!(body["warnings"].is_null());
}

#[tokio::test]
async fn paths_outside_v1_are_404_with_an_empty_error_list() {
    let s = TestServer::start().await;
    let r = s
        .client
        .get(format!("{}/v2/sys/health", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"errors": []})
    );
}

/// Sends a GET with the path exactly as given; returns status and body.
async fn raw_get(url: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    (status, response)
}

/// Dot segments and doubled slashes are what Vault's Go mux redirects
/// (307 to the cleaned path, query kept); an encoded `..` is refused, as
/// there, and so are control characters.
#[tokio::test]
async fn unclean_paths_redirect_and_encoded_dots_are_refused() {
    let s = TestServer::start().await;
    // HTTP clients normalise dot segments, so send the request line by hand.
    for (path, location) in [
        ("/v1/sys/../sys/health", "/v1/sys/health"),
        ("/v1/sys/./health", "/v1/sys/health"),
        ("/v1/sys//mounts?a=1", "/v1/sys/mounts?a=1"),
        (
            "/v1//sys/policies/acl/default//",
            "/v1/sys/policies/acl/default/",
        ),
    ] {
        let (status, response) = raw_get(&s.url, path).await;
        assert_eq!(status, 307, "{path}: {response}");
        assert!(
            response.to_ascii_lowercase().contains(&format!(
                "\r\nlocation: {}\r\n",
                location.to_ascii_lowercase()
            )),
            "{path}: {response}"
        );
    }
    let (status, body) = raw_get(&s.url, "/v1/sys/%2e%2e/sys/health").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("relative paths not supported"), "{body}");
    let r = s.read("sys/policy/a%0Ab").await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("control characters"), "{}", r.text);
}

#[tokio::test]
async fn list_verb_and_list_query_are_the_same_operation() {
    let s = TestServer::start().await;
    let by_verb = s.list("sys/policies/acl").await;
    assert_eq!(by_verb.status, 200, "{}", by_verb.text);
    for query in ["true", "True", "1", "t"] {
        let by_query = s.read(&format!("sys/policies/acl?list={query}")).await;
        assert_eq!(by_query.status, 200, "{query}: {}", by_query.text);
        assert_eq!(by_query.data()["keys"], by_verb.data()["keys"]);
    }
    let bad = s.read("sys/policies/acl?list=maybe").await;
    assert_eq!(bad.status, 400);
    assert!(bad.error().contains("list"), "{}", bad.text);
}

#[tokio::test]
async fn tokens_are_read_from_both_headers_and_missing_ones_are_refused() {
    let s = TestServer::start().await;
    let r = s
        .client
        .get(format!("{}/v1/auth/token/lookup-self", s.url))
        .header("Authorization", format!("Bearer {}", s.root_token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s.request("GET", "auth/token/lookup-self", None, None).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error(), "permission denied");
    let r = s
        .request(
            "GET",
            "auth/token/lookup-self",
            Some("pgs.not-a-token"),
            None,
        )
        .await;
    assert_eq!(r.status, 403);
    let r = s
        .client
        .get(format!("{}/v1/auth/token/lookup-self", s.url))
        .header("Authorization", format!("Basic {}", s.root_token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn unknown_mounts_routes_and_operations_get_vaults_codes() {
    let s = TestServer::start().await;
    let r = s.read("nosuchmount/x").await;
    assert_eq!(r.status, 404);
    assert!(r.error().contains("no handler for route"), "{}", r.text);
    let r = s.read("database/no/such/route").await;
    assert_eq!(r.status, 404);
    assert!(r.error().contains("unsupported path"), "{}", r.text);
    let r = s.write("sys/seal-status", json!({})).await;
    assert_eq!(r.status, 405);
    assert!(r.error().contains("unsupported operation"), "{}", r.text);
    // A non-root token learns nothing about which paths exist.
    let t = s.token_with(&["default"]).await;
    let r = s.read_as(&t, "nosuchmount/x").await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn bad_bodies_get_a_clear_400_and_change_nothing() {
    let s = TestServer::start().await;
    let send = |body: &'static str| {
        s.client
            .post(format!("{}/v1/sys/policies/acl/p1", s.url))
            .header("X-Vault-Token", &s.root_token)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let r = send("{not json").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("failed to decode JSON input"),
        "{body}"
    );
    let r = send("[1,2]").await.unwrap();
    assert_eq!(r.status(), 400);
    let r = send(r#"{"policy": ["not", "a", "string"]}"#).await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["errors"][0].as_str().unwrap().contains("\"policy\""),
        "{body}"
    );
    assert_eq!(s.read("sys/policies/acl/p1").await.status, 404);
}

#[tokio::test]
async fn oversized_bodies_are_413_and_change_nothing() {
    let s = TestServer::start_with_limit(1024).await;
    let big = "x".repeat(4096);
    let r = s
        .write(
            "sys/policies/acl/big",
            json!({"policy": format!("# {big}\npath \"a\" {{ capabilities = [\"read\"] }}")}),
        )
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(r.error(), "http: request body too large");
    assert_eq!(s.read("sys/policies/acl/big").await.status, 404);
}

#[tokio::test]
async fn form_bodies_and_json_labelled_as_form_both_work() {
    let s = TestServer::start().await;
    let r = s
        .client
        .post(format!("{}/v1/sys/policies/acl/formpol", s.url))
        .header("X-Vault-Token", &s.root_token)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("policy=path+%22x%2F*%22+%7B+capabilities+%3D+%5B%22read%22%5D+%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = s
        .client
        .post(format!("{}/v1/sys/policies/acl/jsonpol", s.url))
        .header("X-Vault-Token", &s.root_token)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(r#"{"policy": "path \"y/*\" { capabilities = [\"list\"] }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(s.read("sys/policies/acl/formpol").await.data()["policy"]
        .as_str()
        .unwrap()
        .contains("x/*"));
    assert!(s.read("sys/policies/acl/jsonpol").await.data()["policy"]
        .as_str()
        .unwrap()
        .contains("y/*"));
}

#[tokio::test]
async fn namespaces_wrapping_and_patch_are_refused_clearly() {
    let s = TestServer::start().await;
    let get = |name: &'static str, value: &'static str| {
        s.client
            .get(format!("{}/v1/auth/token/lookup-self", s.url))
            .header("X-Vault-Token", &s.root_token)
            .header(name, value)
            .send()
    };
    assert_eq!(
        get("X-Vault-Namespace", "root").await.unwrap().status(),
        200
    );
    assert_eq!(
        get("X-Vault-Namespace", "team-a").await.unwrap().status(),
        404
    );
    let r = get("X-Vault-Wrap-TTL", "60s").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["errors"][0]
        .as_str()
        .unwrap()
        .contains("wrapping is not supported"));
    assert_eq!(get("X-Vault-Request", "true").await.unwrap().status(), 200);
    let r = s
        .request(
            "PATCH",
            "sys/policies/acl/x",
            Some(&s.root_token),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 415);
}

#[tokio::test]
async fn writes_to_a_directory_path_are_refused() {
    let s = TestServer::start().await;
    let r = s.write("sys/policies/acl/", json!({"policy": ""})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "cannot write to a path ending in '/'");
}

#[tokio::test]
async fn unknown_fields_are_ignored_with_a_sorted_warning() {
    let s = TestServer::start().await;
    let r = s
        .write(
            "auth/token/create",
            json!({"policies": ["default"], "zeta": 1, "alpha": true}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["warnings"][0],
        "Endpoint ignored these unrecognized parameters: [alpha zeta]"
    );
}

#[tokio::test]
async fn help_is_generated_from_the_route_table() {
    let s = TestServer::start().await;
    let r = s.read("auth/token/create?help=1").await;
    assert_eq!(r.status, 200);
    let body = r.json();
    let help = body["help"].as_str().unwrap();
    assert!(help.contains("explicit_max_ttl (duration (sec))"), "{help}");
    assert!(body.get("request_id").is_none(), "help is not enveloped");
    assert!(body["openapi"]["paths"]["/auth/token/create"]["post"].is_object());
    // Help needs a token but no capability.
    let t = s.token_with(&["default"]).await;
    assert_eq!(s.read_as(&t, "sys/mounts?help=1").await.status, 200);
    assert_eq!(
        s.request("GET", "sys/mounts?help=1", None, None)
            .await
            .status,
        403
    );
    let r = s
        .request("HELP", "sys/mounts", Some(&s.root_token), None)
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn durations_are_accepted_in_vaults_forms_and_returned_as_seconds() {
    let s = TestServer::start().await;
    for (given, seconds) in [
        (json!("1h"), 3600),
        (json!("90s"), 90),
        (json!("30m"), 1800),
        (json!(120), 120),
        (json!("1h0m0s"), 3600),
    ] {
        let r = s.write("auth/token/create", json!({"ttl": given})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let d = r.json()["auth"]["lease_duration"].as_u64().unwrap();
        assert!(d <= seconds && d + 2 >= seconds, "{given}: {d}");
    }
    let r = s.write("auth/token/create", json!({"ttl": "-5s"})).await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("negative"), "{}", r.text);
    let r = s.write("auth/token/create", json!({"ttl": "soon"})).await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("\"ttl\""), "{}", r.text);
}

#[tokio::test]
async fn every_json_body_ends_with_a_newline_as_vaults_do() {
    let s = TestServer::start().await;
    let envelope = s.read("auth/token/lookup-self").await;
    let raw = s.request("GET", "sys/health", None, None).await;
    let help = s.read("sys/mounts?help=1").await;
    let error = s
        .request("GET", "sys/mounts", Some("bad-token"), None)
        .await;
    let empty_list = s.list("database/roles/").await;
    for (what, r) in [
        ("envelope", &envelope),
        ("raw", &raw),
        ("help", &help),
        ("error", &error),
        ("404", &empty_list),
    ] {
        assert!(
            r.text.ends_with("}\n"),
            "{what} ({}): {:?}",
            r.status,
            r.text
        );
        assert!(!r.text.ends_with("\n\n"), "{what}: {:?}", r.text);
    }
    assert_eq!(error.status, 403);
    assert_eq!(empty_list.text, "{\"errors\":[]}\n");
    // A 204 stays empty.
    let r = s
        .write(
            "sys/policies/acl/newline",
            json!({"policy": "path \"a\" { capabilities = [\"read\"] }"}),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.text, "");
}
