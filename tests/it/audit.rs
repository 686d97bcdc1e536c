//! Audit devices: every request and response recorded in Vault's shape,
//! secrets hashed, records that reach no device refusing the request, and
//! the API that could choose files shut unless the configuration opens it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use pgsecrets::audit::{Config, Spec};
use serde_json::{json, Value};

use crate::support::engine::{register, role_exists, setup};
use crate::support::pg::Pg;
use crate::support::server::TestServer;

fn file_device(path: &str, file: &Path) -> Spec {
    Spec {
        path: path.into(),
        kind: "file".into(),
        description: "test".into(),
        options: BTreeMap::from([("file_path".into(), file.display().to_string())]),
        local: false,
    }
}

fn declared(devices: Vec<Spec>) -> Config {
    Config {
        devices,
        ..Config::default()
    }
}

fn records(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The records of the request whose path is `path`, request then response.
fn of_path<'a>(records: &'a [Value], path: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["request"]["path"] == path)
        .collect()
}

#[tokio::test]
async fn a_file_device_records_every_request_and_no_secret_in_clear() {
    let pg = Pg::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let s = TestServer::start_with_audit(declared(vec![file_device("file", &log)])).await;
    let root_user = register(&s, pg, "aud1").await;
    let root_password = format!("pw-{root_user}-initial");
    assert_eq!(
        s.write("database/cluster/aud1/aud1_db", json!({}))
            .await
            .status,
        200
    );
    assert_eq!(
        s.write("database/roles/app", json!({"default_ttl": "1h"}))
            .await
            .status,
        204
    );
    let creds = s.read("database/creds/aud1/aud1_db/app").await;
    assert_eq!(creds.status, 200, "{}", creds.text);
    let lease_id = creds.json()["lease_id"].as_str().unwrap().to_string();
    let password = creds.data()["password"].as_str().unwrap().to_string();
    let username = creds.data()["username"].as_str().unwrap().to_string();
    let r = s
        .write("sys/leases/renew", json!({"lease_id": lease_id}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let token = s.token_with(&["default"]).await;
    // A request the ACL refuses is recorded too.
    assert_eq!(s.read_as(&token, "sys/policies/acl").await.status, 403);
    let r = s
        .write("sys/leases/revoke", json!({"lease_id": lease_id}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(!role_exists(pg, &username).await);
    // Health checks are not audited.
    assert_eq!(s.read("sys/health").await.status, 200);

    let text = std::fs::read_to_string(&log).unwrap();
    for secret in [&password, &root_password, &s.root_token, &token] {
        assert!(
            !text.contains(secret.as_str()),
            "a secret in clear in the audit log"
        );
    }
    let all = records(&log);
    // Every request id has its request record first, then its response.
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &all {
        by_id
            .entry(r["request"]["id"].as_str().unwrap().to_string())
            .or_default()
            .push(r["type"].as_str().unwrap().to_string());
    }
    let test_message = all[0]["request"]["id"].as_str().unwrap();
    assert_eq!(all[0]["request"]["path"], "sys/audit/test");
    for (id, kinds) in &by_id {
        if id != test_message {
            assert_eq!(kinds, &["request", "response"], "request {id}");
        }
    }
    assert!(of_path(&all, "sys/health").is_empty());

    let issued = of_path(&all, "database/creds/aud1/aud1_db/app");
    assert_eq!(issued.len(), 2);
    let response = issued[1];
    assert_eq!(response["response"]["secret"]["lease_id"], lease_id);
    assert_eq!(response["request"]["mount_point"], "database/");
    assert_eq!(response["request"]["remote_address"], "127.0.0.1");
    // sys/audit-hash gives what the log holds.
    let hash = |input: &str| {
        let s = &s;
        let input = input.to_string();
        async move {
            let r = s
                .write("sys/audit-hash/file", json!({ "input": input }))
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(r.json()["hash"], r.data()["hash"]);
            r.data()["hash"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(
        response["response"]["data"]["password"],
        hash(&password).await
    );
    assert_eq!(response["auth"]["client_token"], hash(&s.root_token).await);
    let denied = of_path(&all, "sys/policies/acl");
    assert_eq!(denied[1]["auth"]["client_token"], hash(&token).await);
    assert!(
        denied[1]["error"]
            .as_str()
            .unwrap()
            .contains("permission denied"),
        "{}",
        denied[1]
    );
    // The created token and its accessor are hashed in the response.
    let created = of_path(&all, "auth/token/create");
    let created_auth = &created.last().unwrap()["response"]["auth"];
    assert_eq!(created_auth["client_token"], hash(&token).await);
    assert!(created_auth["accessor"]
        .as_str()
        .unwrap()
        .starts_with("hmac-sha256:"));
    let registered = of_path(&all, "database/cluster/aud1");
    assert_eq!(
        registered[0]["request"]["data"]["password"],
        hash(&root_password).await
    );
    // The token's own requests from here on are recorded as well.
    let listed = s.read("sys/audit").await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.json()["file/"]["type"], "file");
    assert_eq!(
        listed.data()["file/"]["options"]["file_path"],
        log.display().to_string()
    );
}

#[tokio::test]
async fn api_devices_need_the_unsafe_switch_sudo_and_good_options() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.log");
    let body = json!({"type": "file", "options": {"file_path": file}});
    let r = s.write("sys/audit/file", body.clone()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.error().contains("cannot enable audit device via API"),
        "{}",
        r.text
    );
    assert!(!file.exists(), "a refused device created its file");

    let s = TestServer::start_with_audit(Config {
        allow_api_creation: true,
        ..Config::default()
    })
    .await;
    let t = s.token_with(&["default"]).await;
    assert_eq!(
        s.write_as(&t, "sys/audit/file", body.clone()).await.status,
        403
    );
    assert_eq!(s.read_as(&t, "sys/audit").await.status, 403);
    assert_eq!(
        s.write_as(&t, "sys/audit-hash/file", json!({"input": "x"}))
            .await
            .status,
        403
    );
    for (bad, text) in [
        (json!({"type": "bogus"}), "unknown backend type"),
        (json!({"type": "file"}), "file_path is required"),
        (
            json!({"type": "file", "options": {"file_path": "rel.log"}}),
            "absolute",
        ),
        (
            json!({"type": "file", "options": {"file_path": file, "mode": "0755"}}),
            "never executable",
        ),
        (
            json!({"type": "file", "options": {"file_path": file, "log_raw": true}}),
            "configuration file",
        ),
        (
            json!({"type": "file", "options": {"file_path": dir.path().join("missing/a.log")}}),
            "failed test message",
        ),
        (json!({"type": "file", "options": "nope"}), "options"),
    ] {
        let r = s.write("sys/audit/file", bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert!(r.error().contains(text), "{bad}: {}", r.text);
    }
    assert_eq!(s.write("sys/audit/a%20b", body.clone()).await.status, 400);
    assert_eq!(s.read("sys/audit").await.data(), json!({}));
    assert!(!file.exists());

    assert_eq!(s.write("sys/audit/file", body.clone()).await.status, 204);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let r = s.write("sys/audit/file", body.clone()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error(), "path already in use");
    let r = s.write("sys/audit/other", body.clone()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.error().contains("already written by audit device file/"),
        "{}",
        r.text
    );
    let listed = s.read("sys/audit").await.data();
    assert_eq!(listed["file/"]["path"], "file/");
    assert_eq!(listed.as_object().unwrap().len(), 1);

    let r = s
        .write("sys/audit-hash/missing", json!({"input": "x"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().contains("unknown audit backend"), "{}", r.text);
    let r = s.write("sys/audit-hash/file", json!({})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let first = s
        .write("sys/audit-hash/file", json!({"input": "x"}))
        .await
        .data()["hash"]
        .clone();

    assert_eq!(s.delete("sys/audit/file").await.status, 204);
    assert_eq!(
        s.delete("sys/audit/file").await.status,
        204,
        "absent: no error"
    );
    assert_eq!(s.read("sys/audit").await.data(), json!({}));
    // Disabling dropped the key: the same path enabled again hashes anew.
    assert_eq!(s.write("sys/audit/file", body).await.status, 204);
    let again = s
        .write("sys/audit-hash/file", json!({"input": "x"}))
        .await
        .data()["hash"]
        .clone();
    assert_ne!(first, again);
}

#[tokio::test]
async fn a_declared_device_cannot_be_disabled_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_with_audit(declared(vec![file_device(
        "cfg",
        &dir.path().join("cfg.log"),
    )]))
    .await;
    let r = s.delete("sys/audit/cfg").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().contains("configuration-managed"), "{}", r.text);
    assert_eq!(
        s.read("sys/audit").await.data()["cfg/"]["description"],
        "test"
    );
}

/// With the only device's file replaced by a link to `/dev/full` (a full
/// disk) and reopened, every request is refused before it runs — a creds
/// read creates no user — and service comes back once the file does.
#[tokio::test]
async fn requests_no_device_records_are_refused_and_service_recovers() {
    let pg = Pg::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let s = TestServer::start_with_audit(declared(vec![file_device("file", &log)])).await;
    setup(&s, pg, "aud2", json!({"default_ttl": "1h"})).await;
    // A role of this test's own, so the count of its users is its own.
    assert_eq!(s.write("database/roles/aud2r", json!({})).await.status, 204);
    let creds = "database/creds/aud2/aud2_db/aud2r";
    assert_eq!(s.read(creds).await.status, 200);
    let users = count_users(pg, "aud2r").await;

    std::fs::rename(&log, dir.path().join("audit.log.1")).unwrap();
    std::os::unix::fs::symlink("/dev/full", &log).unwrap();
    s.audit.reopen();
    let failures = s
        .audit
        .failures()
        .request
        .load(std::sync::atomic::Ordering::Relaxed);
    let r = s.read(creds).await;
    assert_eq!(r.status, 500, "{}", r.text);
    assert!(r.error().contains("internal error"), "{}", r.text);
    assert_eq!(
        count_users(pg, "aud2r").await,
        users,
        "a user was created unaudited"
    );
    assert!(
        s.audit
            .failures()
            .request
            .load(std::sync::atomic::Ordering::Relaxed)
            > failures
    );
    assert_eq!(s.read("sys/policies/acl").await.status, 500);
    // Health is not audited: a load balancer still sees the server.
    assert_eq!(s.read("sys/health").await.status, 200);

    std::fs::remove_file(&log).unwrap();
    s.audit.reopen();
    let r = s.read(creds).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(count_users(pg, "aud2r").await, users + 1);
    assert!(records(&log).len() >= 2, "the new file has the records");
}

async fn count_users(pg: &Pg, role: &str) -> i64 {
    pg.admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE $1",
            &[&format!("v-{role}-%")],
        )
        .await
        .unwrap()
        .get(0)
}

/// `audit_non_hmac_response_keys` keeps a key in clear, but never one that
/// holds a secret: naming `password` is refused and changes nothing.
#[tokio::test]
async fn non_hmac_keys_are_honoured_but_never_for_a_password() {
    let pg = Pg::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let s = TestServer::start_with_audit(declared(vec![file_device("file", &log)])).await;
    let creds = setup(&s, pg, "aud3", json!({"default_ttl": "1h"})).await;
    for key in ["password", "connection_url", "ssl_key"] {
        let r = s
            .write(
                "sys/mounts/database/tune",
                json!({"audit_non_hmac_response_keys": ["username", key]}),
            )
            .await;
        assert_eq!(r.status, 400, "{key}: {}", r.text);
        assert!(r.error().contains(key), "{}", r.text);
    }
    let tune = s.read("sys/mounts/database/tune").await;
    assert!(
        tune.data().get("audit_non_hmac_response_keys").is_none(),
        "{}",
        tune.text
    );
    let r = s
        .write(
            "sys/mounts/database/tune",
            json!({"audit_non_hmac_response_keys": ["username"]}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let issued = s.read(&creds).await;
    let username = issued.data()["username"].as_str().unwrap().to_string();
    let all = records(&log);
    let response = of_path(&all, &creds).pop().unwrap().clone();
    assert_eq!(response["response"]["data"]["username"], username);
    assert!(response["response"]["data"]["password"]
        .as_str()
        .unwrap()
        .starts_with("hmac-sha256:"));
}

/// As an operator runs it: a declared device in the configuration file;
/// `mv` plus SIGHUP starts a new file; hashes are the same after a restart;
/// a full disk (a link to /dev/full) plus SIGHUP refuses requests with 500
/// until the file is back.
#[tokio::test]
async fn sighup_reopens_the_file_and_hashes_survive_a_restart() {
    use crate::support::process::{call, durable_server, start_with_config, wait_healthy_async};
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (config, url, root, mut server) = durable_server(dir.path(), &client).await;
    // Add the device to the configuration and start again.
    let log = dir.path().join("audit.log");
    let text = std::fs::read_to_string(&config).unwrap();
    let device = format!(
        "[[audit]]\npath = \"file\"\ntype = \"file\"\noptions = {{ file_path = \"{}\" }}\n",
        log.display()
    );
    std::fs::write(&config, device + &text).unwrap();
    let restart = |server: &mut std::process::Child| {
        server.kill().unwrap();
        server.wait().unwrap();
        start_with_config(&config)
    };
    let mounts_url = format!("{url}/v1/sys/mounts");
    let mounts = || call(&client, "GET", &mounts_url, &root, None);
    let hash_of_x = || async {
        let body = Some(json!({"input": "x"}));
        let (status, answer) = call(
            &client,
            "POST",
            &format!("{url}/v1/sys/audit-hash/file"),
            &root,
            body,
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        answer["hash"].clone()
    };
    // Requests until one answers `status` (a SIGHUP is handled a moment
    // after it is sent).
    let until = |status: u16| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (got, body) = mounts().await;
            if got == status {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never {status}: {got} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let mut server_ = restart(&mut server);
    wait_healthy_async(&client, &url).await;
    let first = hash_of_x().await;
    assert!(log.exists());

    std::fs::rename(&log, dir.path().join("audit.log.1")).unwrap();
    hangup(&server_);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !log.exists() {
        let _ = mounts().await;
        assert!(
            std::time::Instant::now() < deadline,
            "no new file after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!records(&log).is_empty());

    server_ = restart(&mut server_);
    wait_healthy_async(&client, &url).await;
    assert_eq!(hash_of_x().await, first, "the key survived the restart");

    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink("/dev/full", &log).unwrap();
    hangup(&server_);
    let body = until(500).await;
    assert_eq!(
        body["errors"][0],
        "1 error occurred:\n\t* internal error\n\n"
    );
    std::fs::remove_file(&log).unwrap();
    hangup(&server_);
    until(200).await;
    server_.kill().unwrap();
    server_.wait().unwrap();
}

fn hangup(server: &std::process::Child) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The request record was written, the user created, then the response
/// record reached no device: the credential is revoked at once and the
/// client gets a 500, so no working user exists that the log does not
/// account for.
#[tokio::test]
async fn a_credential_whose_response_is_not_recorded_is_revoked() {
    use crate::support::engine::wait_until_gone;
    use crate::support::pg::PgVersion;
    let pg = Pg::start(PgVersion::under_test());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let s = TestServer::start_with_audit(declared(vec![file_device("file", &log)])).await;
    let creds = setup(&s, &pg, "aud4", json!({"default_ttl": "1h"})).await;
    // Hold CREATE ROLE up, so the request is inside its handler (its
    // request record written) while the disk fills.
    let locker = pg.admin().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE pg_authid IN EXCLUSIVE MODE;")
        .await
        .unwrap();
    let request = s.spawn_read(&creds);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains(&format!("\"path\":\"{creds}\""))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the request record never came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink("/dev/full", &log).unwrap();
    s.audit.reopen();
    locker.batch_execute("COMMIT").await.unwrap();
    let (status, text) = request.await.unwrap();
    assert_eq!(status, 500, "{text}");
    assert!(!text.contains("password"), "{text}");
    let users: Vec<String> = pg
        .admin()
        .await
        .query(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'v-app-%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for user in users {
        wait_until_gone(&pg, &user, Duration::from_secs(10)).await;
    }
    std::fs::remove_file(&log).unwrap();
    s.audit.reopen();
    let r = s
        .request(
            "LIST",
            "sys/leases/lookup/database/creds/aud4/aud4_db/app/",
            Some(&s.root_token),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "a lease is left: {}", r.text);
}

/// A socket device whose peer never reads: its writes fail after
/// `write_timeout` and, alone, it refuses requests; beside a file device
/// the server keeps serving.
#[tokio::test]
async fn a_socket_that_never_reads_fails_while_a_file_device_keeps_service_up() {
    // Accepts, and never reads a byte.
    let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = peer.local_addr().unwrap().to_string();
    let held = std::thread::spawn(move || {
        let mut streams = Vec::new();
        for stream in peer.incoming().take(8) {
            streams.push(stream);
        }
        std::thread::sleep(Duration::from_secs(60));
        drop(streams);
    });
    let socket = Spec {
        path: "net".into(),
        kind: "socket".into(),
        description: String::new(),
        options: BTreeMap::from([
            ("address".into(), address),
            ("write_timeout".into(), "1s".into()),
        ]),
        local: false,
    };
    // Records of ~400 KiB each (every string becomes a 76-byte hash) fill
    // the peer's buffers in a few dozen requests.
    let big: serde_json::Map<String, Value> = (0..4000)
        .map(|i| (format!("k{i}"), Value::from("v")))
        .collect();
    let body = json!({"policy": "path \"x\" { capabilities = [\"read\"] }", "extra": big});

    let dir = tempfile::tempdir().unwrap();
    let both = TestServer::start_with_audit(declared(vec![
        socket.clone(),
        file_device("file", &dir.path().join("audit.log")),
    ]))
    .await;
    let failures = || {
        both.audit
            .failures()
            .request
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    for i in 0..60 {
        let r = both
            .write(&format!("sys/policies/acl/p{i}"), body.clone())
            .await;
        assert!(r.status.is_success(), "request {i}: {}", r.text);
    }
    assert_eq!(failures(), 0);

    let alone = TestServer::start_with_audit(declared(vec![socket])).await;
    let mut refused = None;
    for i in 0..200 {
        let r = alone
            .write(&format!("sys/policies/acl/p{i}"), body.clone())
            .await;
        if r.status == 500 {
            refused = Some(i);
            break;
        }
        assert!(r.status.is_success(), "{}", r.text);
    }
    assert!(refused.is_some(), "a socket nobody reads never failed");
    drop(held);
}
