//! The Vault CLI (OpenBao's `bao`, from the pinned PyPI package) as a
//! client: an operator's and an application's day, command by command.
//! Commands that do not touch the database engine run against OpenBao too,
//! and must exit with the same code there; the engine's own commands are
//! checked for what a user sees (the issued user logs in, a revoked one is
//! gone).

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use std::time::Duration;

use crate::support::engine::wait_until_gone;
use crate::support::engine::{can_login, root_user};
use crate::support::openbao::{bao_binary, OpenBao, ROOT_TOKEN};
use crate::support::pg::Pg;
use crate::support::server::TestServer;

/// What a command printed and how it exited.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

/// The CLI pointed at one server, with a HOME of its own (the CLI keeps
/// the token of `bao login` in `~/.vault-token`).
struct Cli {
    bin: PathBuf,
    addr: String,
    home: tempfile::TempDir,
}

impl Cli {
    fn new(addr: &str) -> Cli {
        Cli {
            bin: bao_binary(),
            addr: addr.to_string(),
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs `bao <args>` with `token` in VAULT_TOKEN (or the logged-in
    /// token when `None`), `stdin` on standard input.
    async fn run(&self, token: Option<&str>, args: &[&str], stdin: Option<&str>) -> Run {
        let mut command = tokio::process::Command::new(&self.bin);
        command
            .args(args)
            .env("VAULT_ADDR", &self.addr)
            .env("HOME", self.home.path())
            .env_remove("VAULT_TOKEN")
            .env_remove("BAO_TOKEN")
            .env_remove("BAO_ADDR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(token) = token {
            command.env("VAULT_TOKEN", token);
        }
        let mut child = command.spawn().expect("bao runs");
        let mut input = child.stdin.take().unwrap();
        input
            .write_all(stdin.unwrap_or("").as_bytes())
            .await
            .unwrap();
        drop(input);
        let out = child.wait_with_output().await.unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A step of the day: its arguments, standard input, and whether it needs
/// a token of the step that created it (`{token}`, `{accessor}`).
struct Step {
    args: Vec<String>,
    stdin: Option<&'static str>,
    expected: i32,
}

fn step(args: &str, expected: i32) -> Step {
    Step {
        args: args.split_whitespace().map(String::from).collect(),
        stdin: None,
        expected,
    }
}

const APP_POLICY: &str = r#"path "database/creds/day/app/app" { capabilities = ["read"] }
path "sys/leases/renew" { capabilities = ["update"] }
"#;

/// The commands that do not involve the database engine, on both servers:
/// same exit code, and the code a user expects.
#[tokio::test(flavor = "multi_thread")]
async fn the_operator_commands_exit_as_they_do_against_openbao() {
    let bao = OpenBao::start().await;
    let ours = TestServer::start().await;
    let sides = [
        ("openbao", Cli::new(&bao.url), ROOT_TOKEN.to_string()),
        ("pgsecrets", Cli::new(&ours.url), ours.root_token.clone()),
    ];
    let mut differences = Vec::new();
    for (name, cli, root) in &sides {
        // A token for the steps that use one, made the same way on both.
        let created = cli
            .run(
                Some(root),
                &[
                    "token",
                    "create",
                    "-policy=default",
                    "-ttl=1h",
                    "-format=json",
                ],
                None,
            )
            .await;
        assert_eq!(created.code, 0, "{name}: {}", created.stderr);
        let auth = &created.json()["auth"];
        let (token, accessor) = (
            auth["client_token"].as_str().unwrap().to_string(),
            auth["accessor"].as_str().unwrap().to_string(),
        );
        let mut steps = vec![
            step("status", 0),
            step(&format!("login {root}"), 0),
            step("token lookup", 0),
            step(&format!("token lookup {token}"), 0),
            step(&format!("token lookup -accessor {accessor}"), 0),
            step(&format!("token renew {token}"), 0),
            step(&format!("token renew -increment=30m {token}"), 0),
            step(&format!("token capabilities {token} sys/mounts"), 0),
            step("token capabilities sys/mounts", 0),
            step("token lookup nosuchtoken", 2),
            Step {
                stdin: Some(APP_POLICY),
                ..step("policy write app -", 0)
            },
            step("policy read app", 0),
            step("policy list", 0),
            step("policy read nosuchpolicy", 2),
            Step {
                stdin: Some("path \"x\" { capabilities = [\"fly\"] }"),
                ..step("policy write bad -", 2)
            },
            step("policy delete app", 0),
            step("secrets enable -path=db2 database", 0),
            step("secrets enable -path=db2 database", 2),
            step("secrets list", 0),
            step("secrets list -detailed", 0),
            step(
                "secrets tune -default-lease-ttl=1h -max-lease-ttl=2h db2/",
                0,
            ),
            step("read sys/mounts/db2/tune", 0),
            step("secrets move db2/ db3/", 0),
            step("secrets disable db3/", 0),
            step("auth list", 0),
            step("auth tune -default-lease-ttl=1h token/", 0),
            step("path-help sys/", 0),
            step("path-help sys/policies/acl/x", 0),
            step("lease lookup nosuch/lease/id", 2),
            step("lease revoke -prefix sys/nothing", 0),
            step("read sys/nosuchpath", 2),
            step(&format!("token revoke {token}"), 0),
            step(&format!("token lookup {token}"), 2),
        ];
        for step in steps.drain(..) {
            let args: Vec<&str> = step.args.iter().map(String::as_str).collect();
            let run = cli.run(Some(root), &args, step.stdin).await;
            if run.code != step.expected {
                differences.push(format!(
                    "{name}: bao {}: exit {} (expected {})\n{}{}",
                    step.args.join(" "),
                    run.code,
                    step.expected,
                    run.stdout,
                    run.stderr
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "commands that exit otherwise:\n{}",
        differences.join("\n")
    );
}

/// The engine's day on real PostgreSQL, through the CLI only: register a
/// cluster, create a database and a role, issue a credential that logs in,
/// look up, renew and revoke its lease; an application token holding only
/// its creds path is refused elsewhere with Vault's exit code and words.
#[tokio::test(flavor = "multi_thread")]
async fn an_application_day_through_the_cli_on_real_postgresql() {
    let pg = Pg::shared();
    let ours = TestServer::start().await;
    let cli = Cli::new(&ours.url);
    let root = Some(ours.root_token.as_str());
    let ok = |run: &Run, what: &str| {
        assert_eq!(run.code, 0, "{what}: {}{}", run.stdout, run.stderr);
    };
    let (user, password) = root_user(pg, "root_bao_day").await;
    let register = format!(
        "database/cluster/day host={} port={} username={user} password={password} ssl_mode=disable",
        pg.host(),
        pg.port()
    );
    let args: Vec<&str> = std::iter::once("write")
        .chain(register.split_whitespace())
        .collect();
    ok(&cli.run(root, &args, None).await, "register");
    ok(
        &cli.run(root, &["write", "-f", "database/cluster/day/app"], None)
            .await,
        "database",
    );
    ok(
        &cli.run(
            root,
            &[
                "write",
                "database/roles/app",
                "default_ttl=1h",
                "max_ttl=24h",
            ],
            None,
        )
        .await,
        "role",
    );
    let listed = cli
        .run(root, &["list", "-format=json", "database/cluster"], None)
        .await;
    ok(&listed, "list");
    assert_eq!(listed.json(), serde_json::json!(["day"]));
    ok(
        &cli.run(root, &["read", "database/cluster/day"], None).await,
        "read",
    );
    ok(
        &cli.run(root, &["path-help", "database/"], None).await,
        "path-help",
    );

    // The application: a token that may only read its credentials.
    ok(
        &cli.run(root, &["policy", "write", "app", "-"], Some(APP_POLICY))
            .await,
        "policy",
    );
    let created = cli
        .run(
            root,
            &["token", "create", "-policy=app", "-format=json"],
            None,
        )
        .await;
    ok(&created, "app token");
    let app = created.json()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let creds = cli
        .run(
            Some(&app),
            &["read", "-format=json", "database/creds/day/app/app"],
            None,
        )
        .await;
    ok(&creds, "creds");
    let creds = creds.json();
    let lease = creds["lease_id"].as_str().unwrap().to_string();
    let username = creds["data"]["username"].as_str().unwrap().to_string();
    let secret = creds["data"]["password"].as_str().unwrap().to_string();
    assert!(
        can_login(pg, &username, &secret, "app").await,
        "the issued user logs in"
    );

    let denied = cli
        .run(Some(&app), &["read", "database/cluster/day"], None)
        .await;
    assert_eq!(denied.code, 2, "{}", denied.stderr);
    assert!(
        denied.stderr.contains("Code: 403") && denied.stderr.contains("permission denied"),
        "{}",
        denied.stderr
    );

    ok(
        &cli.run(root, &["lease", "lookup", &lease], None).await,
        "lease lookup",
    );
    ok(
        &cli.run(Some(&app), &["lease", "renew", &lease], None).await,
        "lease renew",
    );
    // The CLI asks for `sync: false`: the revocation is queued and done in
    // the background.
    ok(
        &cli.run(root, &["lease", "revoke", &lease], None).await,
        "lease revoke",
    );
    wait_until_gone(pg, &username, Duration::from_secs(30)).await;

    let second = cli
        .run(
            Some(&app),
            &["read", "-format=json", "database/creds/day/app/app"],
            None,
        )
        .await;
    ok(&second, "second creds");
    let second_user = second.json()["data"]["username"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        &cli.run(
            root,
            &["lease", "revoke", "-prefix", "database/creds/day"],
            None,
        )
        .await,
        "revoke -prefix",
    );
    wait_until_gone(pg, &second_user, Duration::from_secs(30)).await;

    ok(
        &cli.run(root, &["delete", "database/roles/app"], None).await,
        "delete role",
    );
    let gone = cli.run(root, &["read", "database/roles/app"], None).await;
    assert_eq!(gone.code, 2, "{}{}", gone.stdout, gone.stderr);
}
