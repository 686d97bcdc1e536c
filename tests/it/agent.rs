//! `pgsecrets agent` as an application's sidecar runs it: the real binary
//! against a real server and real PostgreSQL. What is checked is what the
//! application sees: the file always holds credentials that log in.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgsecrets::wire::WireConfig;
use serde_json::json;

use crate::support::engine::role_exists;
use crate::support::engine::{setup, wait_until_gone};
use crate::support::pg::Pg;
use crate::support::process::free_port;
use crate::support::server::TestServer;

/// What an agent's token needs: read credentials, revoke its leases
/// (renewal is in the default policy).
const POLICY: &str = r#"path "database/creds/*" { capabilities = ["read"] }
path "sys/leases/revoke" { capabilities = ["update"] }"#;

/// A login as a sink file tells it.
#[derive(Debug, Clone, PartialEq)]
struct Login {
    user: String,
    password: String,
    database: String,
}

/// An agent process, killed if a test fails before stopping it.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S]) -> Agent {
        let log = dir.join("agent.log");
        let child = Command::new(env!("CARGO_BIN_EXE_pgsecrets"))
            .arg("agent")
            .args(args)
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_CACERT")
            .env("PGSECRETS_LOG", "info,pgsecrets=debug")
            .stdin(Stdio::null())
            .stdout(File::create(dir.join("agent.out")).unwrap())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent { child, log }
    }

    fn with_config(dir: &Path, config: &str) -> Agent {
        let path = dir.join("agent.toml");
        std::fs::write(&path, config).unwrap();
        Agent::start(dir, &["--config", path.to_str().unwrap()])
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("the agent exited ({status}):\n{}", self.log());
        }
    }

    /// SIGTERM, then waits for the exit.
    async fn stop(mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not stop on SIGTERM:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A token holding [`POLICY`], written to `dir/token`.
async fn agent_token(s: &TestServer, dir: &Path) -> PathBuf {
    let r = s
        .write("sys/policies/acl/agent", json!({"policy": POLICY}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let path = dir.join("token");
    std::fs::write(&path, s.token_with(&["agent"]).await).unwrap();
    path
}

/// `config/agent.toml`, pointed at this test's server, token and files.
fn example_config(address: &str, token_file: &Path, edit: impl FnOnce(&mut toml::Table)) -> String {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/agent.toml")).unwrap();
    let mut config: toml::Table = text.parse().unwrap();
    config.insert("address".into(), address.into());
    config.insert("token_file".into(), token_file.to_str().unwrap().into());
    config["retry"]
        .as_table_mut()
        .unwrap()
        .insert("max".into(), "1s".into());
    edit(&mut config);
    toml::to_string(&config).unwrap()
}

fn credential(config: &mut toml::Table, i: usize) -> &mut toml::Table {
    config["credential"].as_array_mut().unwrap()[i]
        .as_table_mut()
        .unwrap()
}

/// `KEY=VALUE` lines of an env sink.
fn env_login(text: &str) -> Option<Login> {
    let vars: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    Some(Login {
        user: vars.get("PGUSER")?.to_string(),
        password: vars.get("PGPASSWORD")?.to_string(),
        database: vars.get("PGDATABASE")?.to_string(),
    })
}

/// `key=value` pairs of a libpq conninfo sink.
fn conninfo_login(text: &str) -> Option<Login> {
    let pairs: HashMap<&str, &str> = text
        .split_whitespace()
        .filter_map(|p| p.split_once('='))
        .collect();
    Some(Login {
        user: pairs.get("user")?.to_string(),
        password: pairs.get("password")?.to_string(),
        database: pairs.get("dbname")?.to_string(),
    })
}

fn json_login(text: &str) -> Option<Login> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    Some(Login {
        user: v["username"].as_str()?.to_string(),
        password: v["password"].as_str()?.to_string(),
        database: v["database"].as_str()?.to_string(),
    })
}

fn read_login(file: &Path, parse: fn(&str) -> Option<Login>) -> Option<Login> {
    parse(&std::fs::read_to_string(file).ok()?)
}

async fn logs_in(pg: &Pg, login: &Login) -> Result<(), String> {
    pg.connect(&login.user, &login.password, &login.database)
        .await
        .map(drop)
        .map_err(|e| format!("{e:?}"))
}

/// Waits until `file` holds a login other than `not` that works.
async fn wait_for_login(
    agent: &mut Agent,
    pg: &Pg,
    file: &Path,
    parse: fn(&str) -> Option<Login>,
    not: Option<&Login>,
) -> Login {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        agent.assert_running();
        if let Some(login) = read_login(file, parse) {
            if Some(&login) != not && logs_in(pg, &login).await.is_ok() {
                return login;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never held working credentials:\n{}",
            file.display(),
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn mode(file: &Path) -> u32 {
    std::fs::metadata(file).unwrap().permissions().mode() & 0o777
}

/// A stand-in application: writes its pid file and counts the SIGHUPs it gets.
struct App {
    child: Child,
}

impl App {
    async fn start(dir: &Path) -> App {
        let script = format!(
            "trap 'echo hup >> {hups}' HUP; echo $$ > {pid}.tmp; mv {pid}.tmp {pid}; \
             while :; do sleep 0.1; done",
            hups = dir.join("hups").display(),
            pid = dir.join("app.pid").display(),
        );
        let child = Command::new("sh").args(["-c", &script]).spawn().unwrap();
        while !dir.join("app.pid").exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        App { child }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn the_agent_keeps_working_credentials_in_its_files_renewing_then_replacing_them() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let creds = setup(
        &s,
        pg,
        "agent1",
        json!({"default_ttl": "3s", "max_ttl": "8s"}),
    )
    .await;
    let role = creds.strip_prefix("database/creds/").unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token_file = agent_token(&s, d).await;
    let _app = App::start(d).await;
    let (env_file, conninfo_file, commands) =
        (d.join("db.env"), d.join("db.conninfo"), d.join("commands"));
    let config = example_config(&s.url, &token_file, |c| {
        let first = credential(c, 0);
        first.insert("path".into(), role.clone().into());
        first.insert("file".into(), env_file.to_str().unwrap().into());
        let command = format!("echo \"$PGSECRETS_SINK\" >> {}", commands.display());
        first.insert("command".into(), command.into());
        let second = credential(c, 1);
        second.insert("path".into(), role.clone().into());
        second.insert("file".into(), conninfo_file.to_str().unwrap().into());
        let pid_file = d.join("app.pid");
        second.insert("pid_file".into(), pid_file.to_str().unwrap().into());
    });
    let mut agent = Agent::with_config(d, &config);
    wait_for_login(&mut agent, pg, &env_file, env_login, None).await;

    // Poll as an application would, for a few max TTLs: the file always
    // holds a login that works, and it is private.
    let mut seen: Vec<(String, Instant, Instant)> = Vec::new();
    let until = Instant::now() + Duration::from_secs(18);
    while Instant::now() < until {
        agent.assert_running();
        assert_eq!(mode(&env_file), 0o600);
        let login = read_login(&env_file, env_login).expect("a whole env file");
        if let Err(e) = logs_in(pg, &login).await {
            panic!(
                "{} from the sink cannot log in: {e}\n{}",
                login.user,
                agent.log()
            );
        }
        let now = Instant::now();
        match seen.iter_mut().find(|(user, ..)| *user == login.user) {
            Some((_, _, last)) => *last = now,
            None => seen.push((login.user.clone(), now, now)),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let conninfo = read_login(&conninfo_file, conninfo_login).expect("a conninfo sink");
    assert_eq!(mode(&conninfo_file), 0o600);
    logs_in(pg, &conninfo).await.unwrap();

    assert!(
        seen.iter()
            .any(|(_, first, last)| *last - *first >= Duration::from_secs(4)),
        "a user kept working past its 3s TTL, so its lease was renewed: {seen:?}"
    );
    assert!(
        seen.len() >= 2,
        "the user was replaced before its 8s max TTL: {seen:?}\n{}",
        agent.log()
    );
    let runs = lines(&commands);
    assert!(
        runs.len() >= seen.len(),
        "the command ran after each write: {runs:?}"
    );
    assert!(runs.iter().all(|r| Path::new(r) == env_file), "{runs:?}");
    assert!(
        !lines(&d.join("hups")).is_empty(),
        "the application got SIGHUP after a rewrite"
    );

    let last = read_login(&env_file, env_login).unwrap();
    let status = agent.stop().await;
    assert_eq!(status.code(), Some(0));
    // The leases held at shutdown are revoked before the agent exits.
    assert!(!role_exists(pg, &last.user).await);
    assert!(!role_exists(pg, &conninfo.user).await);
    for (user, ..) in &seen {
        wait_until_gone(pg, user, Duration::from_secs(10)).await;
    }
}

#[tokio::test]
async fn the_agent_waits_for_a_server_that_is_away_and_recovers_after_an_outage() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let creds = setup(
        &s,
        pg,
        "agent2",
        json!({"default_ttl": "3s", "max_ttl": "1m"}),
    )
    .await;
    let role = creds.strip_prefix("database/creds/").unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token_file = agent_token(&s, d).await;
    let (storage, root) = (s.storage.clone(), s.root_token.clone());
    s.shutdown().await;

    // Nothing listens where the agent is pointed yet.
    let address = format!("127.0.0.1:{}", free_port());
    let env_file = d.join("db.env");
    let mut agent = Agent::start(
        d,
        &[
            "--address",
            &format!("http://{address}"),
            "--token-file",
            token_file.to_str().unwrap(),
            "--path",
            &role,
            "--file",
            env_file.to_str().unwrap(),
        ],
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    agent.assert_running();
    assert!(!env_file.exists());

    let s = TestServer::start_at(storage.clone(), root.clone(), 1 << 20, &address).await;
    let first = wait_for_login(&mut agent, pg, &env_file, env_login, None).await;

    // The server goes away for longer than the lease's max TTL (an hour
    // by the restarted server's clock), then comes back on the same
    // storage: the lease has ended and the agent gets a new user.
    s.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.assert_running();
    let later = pgsecrets::logical::Clock::default();
    later.advance(Duration::from_secs(3600));
    let _s = TestServer::start_at_on_clock(storage, root, &address, later).await;
    let second = wait_for_login(&mut agent, pg, &env_file, env_login, Some(&first)).await;

    assert_eq!(agent.stop().await.code(), Some(0));
    assert!(!role_exists(pg, &second.user).await);
    wait_until_gone(pg, &first.user, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_rewritten_token_file_is_read_again() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let creds = setup(&s, pg, "agent3", json!({"default_ttl": "1m"})).await;
    let role = creds.strip_prefix("database/creds/").unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token_file = agent_token(&s, d).await;
    let good = std::fs::read_to_string(&token_file).unwrap();
    std::fs::write(&token_file, "not-a-token\n").unwrap();
    let env_file = d.join("db.env");
    let config = example_config(&s.url, &token_file, |c| {
        let first = credential(c, 0).clone();
        c.insert("credential".into(), toml::Value::Array(vec![first.into()]));
        let only = credential(c, 0);
        only.insert("path".into(), role.into());
        only.insert("file".into(), env_file.to_str().unwrap().into());
        only.remove("command");
    });
    let mut agent = Agent::with_config(d, &config);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    agent.assert_running();
    assert!(!env_file.exists(), "a refused token gets nothing");

    std::fs::write(&token_file, good).unwrap();
    let login = wait_for_login(&mut agent, pg, &env_file, env_login, None).await;
    assert_eq!(agent.stop().await.code(), Some(0));
    assert!(!role_exists(pg, &login.user).await);
}

#[tokio::test]
async fn over_https_the_agent_trusts_its_ca_cert() {
    let pg = Pg::shared();
    let s = TestServer::start().await;
    let creds = setup(&s, pg, "agent4", json!({"default_ttl": "1m"})).await;
    let role = creds.strip_prefix("database/creds/").unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token_file = agent_token(&s, d).await;
    let storage = s.storage.clone();
    s.shutdown().await;

    // The same storage, now served over TLS only.
    let certs = crate::support::certs::make(d, "IP:127.0.0.1");
    let tls = pgsecrets::server::tls_config(&pgsecrets::config::TlsConfig::new(
        certs.cert.clone(),
        certs.key.clone(),
    ))
    .unwrap();
    let pgsecrets::server::Assembled {
        router,
        workers: _workers,
    } = pgsecrets::server::assemble(storage).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(pgsecrets::server::serve(
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
    drop(router);

    let sink = |name: &str| d.join(name).to_str().unwrap().to_string();
    let args = |file: &str, ca: Option<&Path>| {
        let mut args = vec![
            "--address".to_string(),
            url.clone(),
            "--token-file".into(),
            token_file.to_str().unwrap().into(),
            "--path".into(),
            role.clone(),
            "--file".into(),
            sink(file),
            "--format".into(),
            "json".into(),
        ];
        if let Some(ca) = ca {
            args.extend(["--ca-cert".into(), ca.to_str().unwrap().into()]);
        }
        args
    };
    // Without the CA the server's certificate is refused, and retried.
    let untrusting_dir = d.join("untrusting");
    std::fs::create_dir(&untrusting_dir).unwrap();
    let mut untrusting = Agent::start(&untrusting_dir, &args("untrusted.json", None));
    let mut agent = Agent::start(d, &args("db.json", Some(&certs.ca_pem)));
    let login = wait_for_login(&mut agent, pg, &d.join("db.json"), json_login, None).await;
    assert_eq!(mode(&d.join("db.json")), 0o600);

    untrusting.assert_running();
    assert!(!d.join("untrusted.json").exists());
    assert_eq!(untrusting.stop().await.code(), Some(0));

    assert_eq!(agent.stop().await.code(), Some(0));
    assert!(!role_exists(pg, &login.user).await);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[test]
fn a_bad_agent_config_is_one_line_on_stderr_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("token"), "t").unwrap();
    let valid = |extra: &str| {
        format!(
            "address = \"http://127.0.0.1:1\"\ntoken_file = \"token\"\n{extra}\
             [[credential]]\npath = \"c/d/r\"\nfile = \"out/db.env\"\n"
        )
    };
    std::fs::create_dir(d.join("out")).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (
            format!("bogus = 1\n{}", valid("")),
            "line 1: unknown field `bogus`",
        ),
        (
            format!("{}format = \"yaml\"\n", valid("")),
            "format \"yaml\" is unknown: use env, json, url or template",
        ),
        (
            valid("").replace("c/d/r", "c/d"),
            "must be CLUSTER/DATABASE/ROLE",
        ),
        (
            valid("").replace("token_file = \"token\"", "token_file = \"missing\""),
            "cannot read token_file",
        ),
        (
            valid("").replace("out/db.env", "nowhere/db.env"),
            "the directory of sink file",
        ),
        (
            valid("grace = \"later\"\n"),
            "grace \"later\" is not a duration",
        ),
    ];
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pgsecrets"))
            .arg("agent")
            .args(args)
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_CACERT")
            .output()
            .unwrap()
    };
    let check = |out: std::process::Output, expected: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{expected}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{expected}: {stderr}"
        );
    };
    for (text, expected) in cases {
        let path = d.join("agent.toml");
        std::fs::write(&path, text).unwrap();
        check(run(&["--config", path.to_str().unwrap()]), expected);
    }
    check(
        run(&["--config", d.join("absent.toml").to_str().unwrap()]),
        "cannot read agent config",
    );
    check(
        run(&["--token-file", "t", "--path", "c/d/r", "--file", "x"]),
        "no server address",
    );
}

/// PostgreSQL away for 30 s while the agent holds a lease: the renewal due
/// in the outage fails as "unavailable" (Vault's 400, with `Retry-After`),
/// so the agent keeps the credential file, renews once PostgreSQL is back,
/// and never fetches another user because of the outage.
#[tokio::test]
async fn a_postgresql_outage_does_not_make_the_agent_drop_its_lease() {
    let pg = Pg::start(crate::support::pg::PgVersion::under_test());
    let s = TestServer::start().await;
    // Renewed at 2/3 of 40 s, i.e. ~27 s: inside the outage below, which
    // begins once the agent has its user and lasts 30 s.
    let creds = setup(
        &s,
        &pg,
        "agent-outage",
        json!({"default_ttl": "40s", "max_ttl": "1h"}),
    )
    .await;
    let role = creds.strip_prefix("database/creds/").unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token_file = agent_token(&s, d).await;
    let env_file = d.join("db.env");
    let config = example_config(&s.url, &token_file, |c| {
        let first = credential(c, 0);
        first.insert("path".into(), role.clone().into());
        first.insert("file".into(), env_file.to_str().unwrap().into());
        c["credential"].as_array_mut().unwrap().truncate(1);
    });
    let mut agent = Agent::with_config(d, &config);
    let login = wait_for_login(&mut agent, &pg, &env_file, env_login, None).await;
    let issued = Instant::now();

    pg.stop();
    tokio::time::sleep(Duration::from_secs(30)).await;
    agent.assert_running();
    assert_eq!(
        read_login(&env_file, env_login).as_ref(),
        Some(&login),
        "the file still holds the same user during the outage"
    );
    pg.restart();
    // The renewal goes through before the lease's 40 s are up.
    let deadline = issued + Duration::from_secs(38);
    while !agent.log().contains("renewed") {
        assert!(
            Instant::now() < deadline,
            "no renewal after PostgreSQL came back:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log = agent.log();
    assert!(
        log.contains("cannot renew the lease"),
        "a renewal was tried during the outage:\n{log}"
    );
    assert!(!log.contains("fetching new credentials"), "{log}");
    assert_eq!(read_login(&env_file, env_login).as_ref(), Some(&login));
    logs_in(&pg, &login).await.unwrap();
    assert_eq!(agent.stop().await.code(), Some(0));
}
