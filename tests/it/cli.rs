//! The `pgsecrets` binary as a user runs it: dev mode, operator init,
//! production server, shutdown, and the README's examples.

use std::process::Stdio;

use crate::support::process::{
    binary, curl, free_port, read_until, sigterm, wait_exit, wait_healthy,
};
use crate::support::readme::{readme_script, readme_scripts};

#[test]
fn the_dev_server_prints_its_exports_serves_and_stops_on_sigterm() {
    let port = free_port();
    let mut child = binary()
        .args([
            "server",
            "-dev",
            "-dev-listen-address",
            &format!("127.0.0.1:{port}"),
        ])
        .env("VAULT_DEV_ROOT_TOKEN_ID", "dev-root-token-1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = read_until(&mut child, "Root Token:").join("\n");
    let url = format!("http://127.0.0.1:{port}");
    assert!(
        lines.contains(&format!("export VAULT_ADDR='{url}'")),
        "{lines}"
    );
    assert!(
        lines.contains("export VAULT_TOKEN='dev-root-token-1'"),
        "{lines}"
    );
    wait_healthy(&url);
    let (code, body) = curl(&[
        "-H",
        "X-Vault-Token: dev-root-token-1",
        &format!("{url}/v1/sys/mounts"),
    ]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"database/\""), "{body}");
    sigterm(&child);
    assert!(wait_exit(&mut child).success());
}

#[test]
fn operator_init_then_server_keeps_state_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("pgsecrets.toml");
    std::fs::write(
        &config,
        format!(
            "[listener]\naddress = \"127.0.0.1:{port}\"\n[storage]\nbackend = \"sqlite\"\npath = \"data/pgsecrets.db\"\n[seal]\nkey_file = \"data/unseal.key\"\n"
        ),
    )
    .unwrap();
    let out = binary()
        .args(["operator", "init", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let root = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Root Token: "))
        .expect("root token printed")
        .to_string();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("data/unseal.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let again = binary()
        .args(["operator", "init", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already initialised"));

    let url = format!("http://127.0.0.1:{port}");
    for round in 0..2 {
        let mut child = binary()
            .args(["server", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_healthy(&url);
        if round == 0 {
            let (code, body) = curl(&[
                "-X",
                "POST",
                "-H",
                &format!("X-Vault-Token: {root}"),
                "-d",
                r#"{"policy": "path \"sys/mounts\" { capabilities = [\"read\"] }"}"#,
                &format!("{url}/v1/sys/policies/acl/survivor"),
            ]);
            assert_eq!(code, 204, "{body}");
        }
        let (code, body) = curl(&[
            "-H",
            &format!("X-Vault-Token: {root}"),
            &format!("{url}/v1/sys/policies/acl/survivor"),
        ]);
        assert_eq!(code, 200, "round {round}: {body}");
        sigterm(&child);
        assert!(wait_exit(&mut child).success());
    }
}

#[test]
fn a_server_without_init_or_with_a_bad_config_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[storage]\nbackend = \"sqlite\"\npath = \"x.db\"\n[seal]\nkey_file = \"k\"\n",
    )
    .unwrap();
    let out = binary()
        .args(["server", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("operator init"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&config, "[storage]\nbackend = \"etcd\"\n").unwrap();
    let out = binary()
        .args(["server", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"etcd\" is unknown"));
}

#[test]
fn a_missing_argument_is_named_in_the_usage_error() {
    for (args, named) in [
        (&["read"][..], "<PATH>"),
        (&["operator", "init"][..], "--config <CONFIG>"),
        (&["policy", "write"][..], "<NAME>, <FILE>"),
    ] {
        let out = binary().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: the following required arguments were not provided: "),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains(named), "{args:?}: {stderr}");
        assert!(stderr.trim_end().ends_with("(see --help)"), "{stderr}");
    }
}

#[test]
fn an_unknown_flag_is_reported_as_typed() {
    for (typed, shown) in [
        ("-bogus", "'-bogus'"),
        ("-bogus=1", "'-bogus'"),
        ("--bogus", "'--bogus'"),
    ] {
        let out = binary().args(["server", typed]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(
            stderr.trim_end(),
            format!("error: unexpected argument {shown} found (see --help)"),
            "{typed}"
        );
    }
}

#[test]
fn a_server_that_fails_to_start_before_init_leaves_no_storage_behind() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let storage = "[storage]\nbackend = \"sqlite\"\npath = \"data/pgsecrets.db\"\n[seal]\nkey_file = \"keys/unseal.key\"\n";
    let cases = [
        (
            format!(
                "[listener]\naddress = \"127.0.0.1:{}\"\ntls_cert_file = \"missing-cert.pem\"\ntls_key_file = \"missing-key.pem\"\n{storage}",
                free_port()
            ),
            "missing-cert.pem",
        ),
        (
            format!("[listener]\naddress = \"127.0.0.1:{busy_port}\"\n{storage}"),
            "operator init",
        ),
        (
            format!("[listener]\naddress = \"nowhere\"\n{storage}"),
            "address",
        ),
    ];
    for (text, said) in cases {
        let config = dir.path().join("pgsecrets.toml");
        std::fs::write(&config, &text).unwrap();
        let out = binary()
            .args(["server", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}: {stderr}");
        assert!(stderr.contains(said), "{said:?} not in {stderr}");
        for left in ["data", "keys"] {
            assert!(
                !dir.path().join(left).exists(),
                "{left}/ was created by a failed start: {stderr}"
            );
        }
    }
    drop(busy);
}

#[test]
fn an_init_whose_key_cannot_be_written_leaves_no_storage_behind() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("unseal.key"), "an older key\n").unwrap();
    let config = dir.path().join("pgsecrets.toml");
    std::fs::write(
        &config,
        "[storage]\nbackend = \"sqlite\"\npath = \"data/pgsecrets.db\"\n[seal]\nkey_file = \"unseal.key\"\n",
    )
    .unwrap();
    let out = binary()
        .args(["operator", "init", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("it must not exist yet"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "{stderr}");
}

/// Runs the README's `sh` blocks marked `<!-- readme-test -->` against a dev server.
#[test]
fn the_readme_examples_work() {
    let scripts = readme_scripts("<!-- readme-test -->");
    let port = free_port();
    let mut child = binary()
        .args([
            "server",
            "--dev",
            "--dev-listen-address",
            &format!("127.0.0.1:{port}"),
            "--dev-root-token-id",
            "readme-root",
            // These examples need no PostgreSQL (the quickstart's is tested
            // in dev_mode.rs).
            "--dev-no-postgres",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    read_until(&mut child, "Root Token:");
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&url);
    for script in scripts {
        let out = readme_script(&script, &url, "readme-root")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README example failed:\n{script}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    sigterm(&child);
    wait_exit(&mut child);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let port = free_port();
    let mut child = binary()
        .args([
            "server",
            "--dev",
            "--dev-listen-address",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    read_until(&mut child, "Root Token:");
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&url);
    sigterm(&child);
    wait_exit(&mut child);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no logs");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v.get("level").is_some() && v.get("fields").is_some(),
            "{line}"
        );
    }
    assert!(
        stderr.contains("/v1/sys/health"),
        "requests are logged: {stderr}"
    );
}
