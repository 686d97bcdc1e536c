//! The `pgsecrets` client subcommands, run as a user runs them (the real
//! binary, `VAULT_ADDR`/`VAULT_TOKEN` in its environment) against a real
//! server and, for credentials, real PostgreSQL.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::support::engine::setup;
use crate::support::engine::{register, role_exists};
use crate::support::pg::{Pg, PgVersion};
use crate::support::readme::{readme_script, readme_scripts};
use crate::support::server::TestServer;

/// What a run of the binary gave.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
    /// Exits with `code` and says why in one `error: ` line.
    fn fails(&self, code: i32, needle: &str) {
        assert_eq!(self.code, code, "{self:?}");
        let stderr = self.stderr.trim_end();
        assert_eq!(stderr.lines().count(), 1, "one line on stderr: {self:?}");
        assert!(stderr.starts_with("error: "), "{self:?}");
        assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    }
}

/// The binary with a clean environment for the client: only `env` set.
async fn pgsecrets_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgsecrets"));
    command.args(args);
    for var in [
        "VAULT_ADDR",
        "VAULT_TOKEN",
        "VAULT_CACERT",
        "PGSECRETS_ADDR",
        "PGSECRETS_TOKEN",
    ] {
        command.env_remove(var);
    }
    command
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("the binary runs");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The binary against `s` with its root token.
async fn pgsecrets(s: &TestServer, args: &[&str]) -> Run {
    pgsecrets_with(
        args,
        &[("VAULT_ADDR", &s.url), ("VAULT_TOKEN", &s.root_token)],
        None,
    )
    .await
}

async fn pgsecrets_stdin(s: &TestServer, args: &[&str], stdin: &str) -> Run {
    pgsecrets_with(
        args,
        &[("VAULT_ADDR", &s.url), ("VAULT_TOKEN", &s.root_token)],
        Some(stdin),
    )
    .await
}

/// The value column of a table row.
fn table_value<'a>(table: &'a str, key: &str) -> &'a str {
    table
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim())
        })
        .unwrap_or_else(|| panic!("no row {key:?} in\n{table}"))
}

#[tokio::test]
async fn write_read_list_and_delete_print_tables_or_json() {
    let s = TestServer::start().await;
    let statement = r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}'"#;
    let statements = serde_json::to_string(&[statement]).unwrap();
    let r = pgsecrets(
        &s,
        &[
            "write",
            "database/roles/reporting",
            "default_ttl=1h",
            "max_ttl=2h",
            &format!("creation_statements={statements}"),
        ],
    )
    .await
    .ok();
    assert_eq!(
        r.stdout,
        "Success! Data written to: database/roles/reporting\n"
    );
    // The JSON array was sent as one statement, not split at its commas.
    assert_eq!(
        s.read("database/roles/reporting").await.data()["creation_statements"],
        json!([statement])
    );

    let table = pgsecrets(&s, &["read", "database/roles/reporting"])
        .await
        .ok()
        .stdout;
    assert!(table.starts_with("Key "), "{table}");
    assert_eq!(table_value(&table, "default_ttl"), "1h");
    assert_eq!(table_value(&table, "max_ttl"), "2h");
    assert_eq!(
        table_value(&table, "creation_statements"),
        format!("[{statement}]")
    );

    let json = pgsecrets(&s, &["read", "-format=json", "database/roles/reporting"])
        .await
        .ok()
        .json();
    assert_eq!(json["data"]["default_ttl"], 3600);
    assert!(!json["request_id"].as_str().unwrap().is_empty());
    let field = pgsecrets(
        &s,
        &["read", "-field=default_ttl", "database/roles/reporting"],
    )
    .await
    .ok();
    assert_eq!(field.stdout, "1h\n");

    let list = pgsecrets(&s, &["list", "database/roles"]).await.ok();
    assert_eq!(list.stdout, "Keys\n----\nreporting\n");
    let list = pgsecrets(&s, &["list", "--format", "json", "database/roles"])
        .await
        .ok()
        .json();
    assert_eq!(list["data"]["keys"], json!(["reporting"]));

    let deleted = pgsecrets(&s, &["delete", "database/roles/reporting"])
        .await
        .ok();
    assert_eq!(
        deleted.stdout,
        "Success! Data deleted (if it existed) at: database/roles/reporting\n"
    );
    pgsecrets(&s, &["read", "database/roles/reporting"])
        .await
        .fails(2, "no value found at database/roles/reporting");
    pgsecrets(&s, &["list", "database/roles"])
        .await
        .fails(2, "no value found at database/roles");
}

#[tokio::test]
async fn read_sends_key_values_as_query_parameters() {
    let s = TestServer::start().await;
    let r = pgsecrets(
        &s,
        &["read", "-format=json", "sys/health", "activecode=299"],
    )
    .await
    .ok();
    assert_eq!(r.json()["sealed"], false);
    pgsecrets(&s, &["read", "sys/health", "activecode=abc"])
        .await
        .fails(2, "activecode");
}

#[tokio::test]
async fn values_come_from_files_and_standard_input() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mounts.hcl");
    let rules = "path \"sys/mounts\" {\n  capabilities = [\"read\"]\n}\n";
    std::fs::write(&file, rules).unwrap();
    pgsecrets(
        &s,
        &[
            "write",
            "sys/policies/acl/from-file",
            &format!("policy=@{}", file.display()),
        ],
    )
    .await
    .ok();
    assert_eq!(
        s.read("sys/policies/acl/from-file").await.data()["policy"],
        rules
    );

    pgsecrets_stdin(
        &s,
        &["write", "sys/policies/acl/from-stdin", "policy=-"],
        rules,
    )
    .await
    .ok();
    assert_eq!(
        s.read("sys/policies/acl/from-stdin").await.data()["policy"],
        rules
    );

    let body = json!({ "policy": rules }).to_string();
    pgsecrets_stdin(&s, &["write", "sys/policies/acl/from-json", "-"], &body)
        .await
        .ok();
    assert_eq!(
        s.read("sys/policies/acl/from-json").await.data()["policy"],
        rules
    );
}

#[tokio::test]
async fn policies_are_written_from_a_file_or_stdin_and_take_effect() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mounts.hcl");
    std::fs::write(&file, "path \"sys/mounts\" { capabilities = [\"read\"] }\n").unwrap();
    let r = pgsecrets(
        &s,
        &["policy", "write", "mounts-reader", file.to_str().unwrap()],
    )
    .await
    .ok();
    assert_eq!(r.stdout, "Success! Uploaded policy: mounts-reader\n");
    pgsecrets_stdin(
        &s,
        &["policy", "write", "roles-reader", "-"],
        "path \"database/roles/*\" { capabilities = [\"read\"] }",
    )
    .await
    .ok();
    let list = pgsecrets(&s, &["policy", "list"]).await.ok();
    assert!(
        list.stdout.lines().any(|l| l == "mounts-reader"),
        "{list:?}"
    );
    assert!(list.stdout.lines().any(|l| l == "roles-reader"), "{list:?}");
    let read = pgsecrets(&s, &["policy", "read", "mounts-reader"])
        .await
        .ok();
    assert_eq!(
        read.stdout,
        "path \"sys/mounts\" { capabilities = [\"read\"] }\n"
    );

    let token = s.token_with(&["mounts-reader"]).await;
    let env = [
        ("VAULT_ADDR", s.url.as_str()),
        ("VAULT_TOKEN", token.as_str()),
    ];
    pgsecrets_with(&["read", "sys/mounts"], &env, None)
        .await
        .ok();
    pgsecrets_with(&["list", "sys/policies/acl"], &env, None)
        .await
        .fails(2, "403 Forbidden: permission denied");

    pgsecrets(&s, &["policy", "delete", "mounts-reader"])
        .await
        .ok();
    pgsecrets(&s, &["policy", "read", "mounts-reader"])
        .await
        .fails(2, "no value found");
    pgsecrets(&s, &["policy", "write", "x", "/nonexistent/p.hcl"])
        .await
        .fails(1, "/nonexistent/p.hcl");
}

#[tokio::test]
async fn tokens_are_created_and_looked_up() {
    let s = TestServer::start().await;
    s.write(
        "sys/policies/acl/p1",
        json!({"policy": "path \"sys/mounts\" { capabilities = [\"read\"] }"}),
    )
    .await;
    s.write(
        "sys/policies/acl/p2",
        json!({"policy": "path \"sys/health\" { capabilities = [\"read\"] }"}),
    )
    .await;
    let created = pgsecrets(
        &s,
        &[
            "token",
            "create",
            "-policy=p1",
            "-policy=p2",
            "-ttl=1h",
            "-metadata",
            "team=shop",
            "-format=json",
        ],
    )
    .await
    .ok()
    .json();
    let auth = &created["auth"];
    assert_eq!(auth["policies"], json!(["default", "p1", "p2"]));
    assert_eq!(auth["lease_duration"], 3600);
    let token = auth["client_token"].as_str().unwrap();

    let looked_up = pgsecrets(&s, &["token", "lookup", "-format=json", token])
        .await
        .ok()
        .json();
    assert_eq!(
        looked_up["data"]["policies"],
        json!(["default", "p1", "p2"])
    );
    assert_eq!(looked_up["data"]["meta"], json!({"team": "shop"}));
    let ttl = looked_up["data"]["ttl"].as_u64().unwrap();
    assert!((3500..=3600).contains(&ttl), "{ttl}");

    // lookup-self with the new token, PGSECRETS_TOKEN overriding VAULT_TOKEN
    // and PGSECRETS_ADDR overriding a VAULT_ADDR where nothing listens.
    let table = pgsecrets_with(
        &["token", "lookup"],
        &[
            ("VAULT_ADDR", "http://127.0.0.1:1"),
            ("PGSECRETS_ADDR", &s.url),
            ("VAULT_TOKEN", &s.root_token),
            ("PGSECRETS_TOKEN", token),
        ],
        None,
    )
    .await
    .ok()
    .stdout;
    assert_eq!(table_value(&table, "id"), token);
    assert_eq!(table_value(&table, "policies"), "[default p1 p2]");

    let table = pgsecrets(&s, &["token", "create", "-policy=p1", "-ttl=30m"])
        .await
        .ok()
        .stdout;
    assert_eq!(table_value(&table, "token_duration"), "30m");
    assert_eq!(table_value(&table, "token_policies"), r#"["default" "p1"]"#);
    let only = pgsecrets(&s, &["token", "create", "-field=token"])
        .await
        .ok();
    assert_eq!(only.stdout.trim().lines().count(), 1);
    assert!(only.stdout.trim().len() >= 24, "{only:?}");
}

#[tokio::test]
async fn leases_of_real_credentials_are_looked_up_renewed_and_revoked() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let path = setup(
        &s,
        pg,
        "cli1",
        json!({"default_ttl": "10m", "max_ttl": "1h"}),
    )
    .await;
    let issued = pgsecrets(&s, &["read", "-format=json", &path])
        .await
        .ok()
        .json();
    let lease = issued["lease_id"].as_str().unwrap();
    let user = issued["data"]["username"].as_str().unwrap();
    assert!(role_exists(pg, user).await);
    let table = pgsecrets(&s, &["read", &path]).await.ok().stdout;
    assert_eq!(table_value(&table, "lease_duration"), "10m");
    assert_eq!(table_value(&table, "lease_renewable"), "true");

    let looked_up = pgsecrets(&s, &["lease", "lookup", "-format=json", lease])
        .await
        .ok()
        .json();
    assert_eq!(looked_up["data"]["id"], lease);
    assert!(looked_up["data"]["ttl"].as_u64().unwrap() <= 600);

    let renewed = pgsecrets(&s, &["lease", "renew", "-increment=30m", lease])
        .await
        .ok()
        .stdout;
    assert_eq!(table_value(&renewed, "lease_id"), lease);
    assert_eq!(table_value(&renewed, "lease_duration"), "30m");
    // Past max_ttl: capped, with the server's warning on stderr.
    let capped = pgsecrets(
        &s,
        &["lease", "renew", "-increment=2h", "-format=json", lease],
    )
    .await
    .ok()
    .json();
    assert!(capped["lease_duration"].as_u64().unwrap() <= 3600);
    let capped = pgsecrets(&s, &["lease", "renew", "-increment=2h", lease])
        .await
        .ok();
    assert!(capped.stderr.contains("WARNING!"), "{capped:?}");
    assert!(capped.stderr.contains("capped"), "{capped:?}");

    let revoked = pgsecrets(&s, &["lease", "revoke", lease]).await.ok();
    assert_eq!(revoked.stdout, format!("Success! Revoked lease: {lease}\n"));
    assert!(!role_exists(pg, user).await, "the user is dropped");
    pgsecrets(&s, &["lease", "lookup", lease])
        .await
        .fails(2, "invalid lease");
    pgsecrets(&s, &["lease", "renew", lease])
        .await
        .fails(2, "lease not found");
}

/// `export K='v'` lines as a map.
fn exports(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(|l| {
            let (k, v) = l
                .strip_prefix("export ")
                .and_then(|l| l.split_once('='))
                .unwrap_or_else(|| panic!("not an export line: {l:?}"));
            (k.to_string(), v.trim_matches('\'').to_string())
        })
        .collect()
}

#[tokio::test]
async fn creds_prints_env_lines_json_or_a_url_that_log_in() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let path = setup(&s, pg, "cli2", json!({"default_ttl": "10m"})).await;
    let target = path.strip_prefix("database/creds/").unwrap();

    let env = pgsecrets(&s, &["creds", target]).await.ok();
    let vars = exports(&env.stdout);
    let keys: Vec<&str> = env
        .stdout
        .lines()
        .map(|l| l[7..].split('=').next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "PGHOST",
            "PGPORT",
            "PGDATABASE",
            "PGUSER",
            "PGPASSWORD",
            "PGSSLMODE"
        ]
    );
    assert_eq!(vars["PGHOST"], "127.0.0.1");
    assert_eq!(vars["PGPORT"], pg.port().to_string());
    assert_eq!(vars["PGDATABASE"], "cli2_db");
    assert_eq!(vars["PGSSLMODE"], "disable");
    assert!(
        env.stderr.starts_with(&format!("lease_id: {path}/")),
        "{env:?}"
    );
    pg.connect(&vars["PGUSER"], &vars["PGPASSWORD"], &vars["PGDATABASE"])
        .await
        .expect("the env credentials log in");

    // The lines are meant for eval; psql then needs nothing else.
    let script =
        format!("eval \"$(\"$PGSECRETS_BIN\" creds {target})\"; psql -XtAc 'select session_user'");
    let out = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("PGSECRETS_BIN", env!("CARGO_BIN_EXE_pgsecrets"))
        .env("VAULT_ADDR", &s.url)
        .env("VAULT_TOKEN", &s.root_token)
        .env_remove("PGSECRETS_ADDR")
        .env_remove("PGSECRETS_TOKEN")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.trim().starts_with("v-app-"), "{stdout}");

    let json = pgsecrets(&s, &["creds", target, "-format=json"])
        .await
        .ok()
        .json();
    let d = &json["data"];
    assert!(json["lease_id"].as_str().unwrap().starts_with(&path));
    pg.connect(
        d["username"].as_str().unwrap(),
        d["password"].as_str().unwrap(),
        d["database"].as_str().unwrap(),
    )
    .await
    .expect("the JSON credentials log in");

    let url = pgsecrets(&s, &["creds", target, "-format=url"]).await.ok();
    let url = url.stdout.trim();
    assert!(url.starts_with("postgresql://v-app-"), "{url}");
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the URL logs in");
    tokio::spawn(connection);
    client.query_one("SELECT 1", &[]).await.unwrap();

    pgsecrets(&s, &["creds", "cli2/only-two"])
        .await
        .fails(1, "expected CLUSTER/DB/ROLE");
    pgsecrets(&s, &["creds", "cli2/cli2_db/nosuchrole"])
        .await
        .fails(2, "unknown role");
}

#[tokio::test]
async fn psql_runs_as_a_fresh_user_whose_lease_is_revoked_when_psql_exits() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    // Vault-style statements: the user works as itself, so current_user is
    // the issued user (with the default statements it is the objects owner).
    let statements = [
        r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"#,
    ];
    let path = setup(
        &s,
        pg,
        "cli3",
        json!({"default_ttl": "10m", "creation_statements": statements}),
    )
    .await;
    let target = path.strip_prefix("database/creds/").unwrap();

    let r = pgsecrets(&s, &["psql", target, "--", "-XtAc", "select current_user"])
        .await
        .ok();
    let user = r.stdout.trim();
    assert!(user.starts_with("v-app-"), "{r:?}");
    assert!(r.stderr.contains(&format!("lease_id: {path}/")), "{r:?}");
    assert!(!role_exists(pg, user).await, "revoked when psql exited");
    let r = s.list(&format!("sys/leases/lookup/{path}")).await;
    assert_eq!(r.status, 404, "no lease left: {}", r.text);

    // psql fails: its exit code is ours, and the lease is revoked all the same.
    let r = pgsecrets(
        &s,
        &[
            "psql",
            target,
            "--",
            "-XtA",
            "-c",
            "select current_user",
            "-c",
            "select no_such_column",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("no_such_column"), "{r:?}");
    let user = r.stdout.trim();
    assert!(user.starts_with("v-app-"), "{r:?}");
    assert!(!role_exists(pg, user).await, "revoked after a failing psql");
}

#[tokio::test]
async fn bad_input_gives_one_line_and_the_documented_exit_code() {
    let s = TestServer::start().await;
    let url = s.url.as_str();
    let root = s.root_token.as_str();
    let with_server = [("VAULT_ADDR", url), ("VAULT_TOKEN", root)];
    // (args, environment, exit code, text in the error line)
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let expired = {
        let r = s.write("auth/token/create", json!({"ttl": "1s"})).await;
        r.json()["auth"]["client_token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    s.advance(std::time::Duration::from_secs(2));
    // Each case: no output, one `error: ` line, the documented code.
    let check = |r: Run, code: i32, needle: &str| {
        assert!(r.stdout.is_empty(), "{r:?}");
        r.fails(code, needle);
    };
    check(
        pgsecrets_with(&["read", "-nope", "sys/health"], &with_server, None).await,
        1,
        "'-nope'",
    );
    check(
        pgsecrets_with(&["frobnicate"], &with_server, None).await,
        1,
        "frobnicate",
    );
    check(
        pgsecrets_with(&["lease"], &with_server, None).await,
        1,
        "subcommand",
    );
    check(
        pgsecrets_with(
            &["write", "sys/policies/acl/x", "novalue"],
            &with_server,
            None,
        )
        .await,
        1,
        "\"novalue\": expected key=value",
    );
    check(
        pgsecrets_with(
            &["write", "sys/policies/acl/x", "policy=@/nonexistent/p"],
            &with_server,
            None,
        )
        .await,
        1,
        "cannot read /nonexistent/p",
    );
    check(
        pgsecrets_with(&["write", "sys/policies/acl/x"], &with_server, None).await,
        1,
        "-force",
    );
    check(
        pgsecrets_with(&["token", "create", "-ttl=soon"], &with_server, None).await,
        1,
        "--ttl",
    );
    check(
        pgsecrets_with(&["read", "-format=yaml", "sys/health"], &with_server, None).await,
        1,
        "yaml",
    );
    check(
        pgsecrets_with(&["read", "sys/health"], &[("VAULT_TOKEN", root)], None).await,
        1,
        "VAULT_ADDR is not set",
    );
    check(
        pgsecrets_with(
            &["read", "sys/health"],
            &[("VAULT_ADDR", "localhost:8200")],
            None,
        )
        .await,
        1,
        "invalid server address",
    );
    check(
        pgsecrets_with(
            &["read", "sys/health"],
            &[("VAULT_ADDR", &closed_port)],
            None,
        )
        .await,
        1,
        "cannot reach",
    );
    check(
        pgsecrets_with(
            &["read", "sys/mounts"],
            &[("VAULT_ADDR", url), ("VAULT_TOKEN", "no-such-token")],
            None,
        )
        .await,
        2,
        "403 Forbidden: permission denied",
    );
    check(
        pgsecrets_with(
            &["token", "lookup"],
            &[("VAULT_ADDR", url), ("VAULT_TOKEN", &expired)],
            None,
        )
        .await,
        2,
        "403 Forbidden",
    );
    check(
        pgsecrets_with(&["read", "nothing/here"], &with_server, None).await,
        2,
        "no handler for route",
    );
    check(
        pgsecrets_with(&["lease", "revoke", ""], &with_server, None).await,
        2,
        "lease_id must be specified",
    );
}

#[tokio::test]
async fn https_servers_are_trusted_through_vault_cacert() {
    use pgsecrets::config::TlsConfig;
    use pgsecrets::server;
    use pgsecrets::wire::WireConfig;

    let dir = tempfile::tempdir().unwrap();
    let certs = crate::support::certs::make(dir.path(), "IP:127.0.0.1");
    let tls = server::tls_config(&TlsConfig::new(certs.cert, certs.key)).unwrap();
    let (storage, root) = server::fresh_inmem(None).await.unwrap();
    let server::Assembled {
        router,
        workers: _workers,
    } = server::assemble(storage).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(
        listener,
        Arc::clone(&router),
        WireConfig {
            max_request_size: 1 << 20,
            ..WireConfig::default()
        },
        Some(tls),
        async {
            let _ = stopped.await;
        },
    ));
    let ca = certs.ca_pem.to_str().unwrap();
    let trusted = [
        ("VAULT_ADDR", url.as_str()),
        ("VAULT_TOKEN", &root),
        ("VAULT_CACERT", ca),
    ];
    let r = pgsecrets_with(&["token", "lookup", "-field=id"], &trusted, None)
        .await
        .ok();
    assert_eq!(r.stdout.trim(), root);
    pgsecrets_with(
        &["read", "sys/health"],
        &[("VAULT_ADDR", url.as_str())],
        None,
    )
    .await
    .fails(1, "TLS error");
    pgsecrets_with(
        &["read", "sys/health"],
        &[
            ("VAULT_ADDR", url.as_str()),
            ("VAULT_CACERT", "/nonexistent/ca.pem"),
        ],
        None,
    )
    .await
    .fails(1, "VAULT_CACERT /nonexistent/ca.pem");
    let plain = url.replace("https://", "http://");
    let r = pgsecrets_with(
        &["read", "sys/health"],
        &[("VAULT_ADDR", plain.as_str())],
        None,
    )
    .await;
    assert_ne!(r.code, 0, "{r:?}");
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

/// The README's credential examples, against their own PostgreSQL with the
/// cluster `dev`, database `app` and role `app` they name (the dev server's).
#[tokio::test]
async fn the_readme_credential_examples_work() {
    let pg = Pg::start(PgVersion::under_test());
    let s = TestServer::start().await;
    register(&s, &pg, "dev").await;
    let r = s.write("database/cluster/dev/app", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s
        .write(
            "database/roles/app",
            json!({"default_ttl": "1h", "max_ttl": "24h"}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    for script in readme_scripts("<!-- readme-test-postgres -->") {
        let out = tokio::process::Command::from(readme_script(&script, &s.url, &s.root_token))
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "README example failed:\n{script}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // `pgsecrets psql` revoked its user; `lease revoke` its lease. What is
    // left are the leases of `creds` (eval, JSON, URL).
    let r = s.list("sys/leases/lookup/database/creds/dev/app/app").await;
    assert_eq!(r.data()["keys"].as_array().unwrap().len(), 3, "{}", r.text);
}
