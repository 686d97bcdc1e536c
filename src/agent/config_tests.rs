use super::*;
use crate::agent::render::Format;

fn parse(text: &str) -> Result<Config, Error> {
    Config::parse(
        Some((text.to_string(), Path::new("/etc/pgsecrets/agent.toml"))),
        Overrides::default(),
        Environment::default(),
    )
}

const MINIMAL: &str = r#"
address = "http://127.0.0.1:8200"
token_file = "token"
[[credential]]
path = "main/app_db/app"
file = "/run/app/db.env"
"#;

#[test]
fn the_example_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/agent.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let c = Config::parse(
        Some((text, &path)),
        Overrides::default(),
        Environment::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.credentials.len(), 2);
    assert_eq!(c.credentials[0].format, Format::Env);
    assert!(c.credentials[0].command.is_some());
    assert!(matches!(c.credentials[1].format, Format::Template(_)));
    assert!(c.credentials[1].signal.is_some());
}

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.address.as_str(), "http://127.0.0.1:8200/");
    assert_eq!(c.token_file, Path::new("/etc/pgsecrets/token"));
    assert_eq!(c.grace, Duration::from_secs(10));
    assert_eq!(c.credentials[0].mount, "database");
    assert_eq!(c.credentials[0].format, Format::Env);
    assert_eq!(c.credentials[0].signal, None);
}

#[test]
fn flags_beat_the_file_and_the_file_beats_the_environment() {
    let env = Environment {
        vault_addr: Some("http://from-env:8200".into()),
        vault_cacert: None,
    };
    let text = MINIMAL.replace("address = \"http://127.0.0.1:8200\"\n", "");
    let file = Some((text.clone(), Path::new("/etc/a.toml")));
    let c = Config::parse(file.clone(), Overrides::default(), env.clone()).unwrap();
    assert_eq!(c.address.as_str(), "http://from-env:8200/");
    let c = Config::parse(
        Some((MINIMAL.into(), Path::new("/etc/a.toml"))),
        Overrides::default(),
        env.clone(),
    )
    .unwrap();
    assert_eq!(c.address.as_str(), "http://127.0.0.1:8200/");
    let flags = Overrides {
        address: Some("https://flag:8200/vault".into()),
        mount: Some("/db/".into()),
        credential: Some(FlagCredential {
            path: "c/d/r".into(),
            file: "x.json".into(),
            format: Some("json".into()),
            command: None,
        }),
        ..Overrides::default()
    };
    let c = Config::parse(file, flags, env).unwrap();
    assert_eq!(c.address.as_str(), "https://flag:8200/vault/");
    assert_eq!(c.credentials.len(), 2);
    assert_eq!(c.credentials[1].mount, "db");
    assert_eq!(
        c.credentials[1].file,
        Path::new("x.json"),
        "flag paths stay relative to the working directory"
    );
    assert_eq!(c.credentials[1].format, Format::Json);
}

#[test]
fn flags_alone_are_enough() {
    let flags = Overrides {
        address: Some("http://127.0.0.1:8200".into()),
        token_file: Some("/run/token".into()),
        credential: Some(FlagCredential {
            path: "c/d/r".into(),
            file: "/run/db.env".into(),
            ..FlagCredential::default()
        }),
        ..Overrides::default()
    };
    let c = Config::parse(None, flags, Environment::default()).unwrap();
    assert_eq!(c.credentials[0].path, "c/d/r");
}

#[test]
fn mistakes_are_named_on_one_line() {
    let cases: &[(&str, &str)] = &[
        ("bogus = 1\n", "line 1: unknown field `bogus`"),
        (
            "address = \"127.0.0.1:8200\"\n",
            "is not an http:// or https:// URL",
        ),
        (
            "address = \"ftp://x\"\n",
            "is not an http:// or https:// URL",
        ),
        ("grace = \"soon\"\n", "grace \"soon\" is not a duration"),
        ("mount = \"a//b\"\n", "mount \"a//b\" is not a mount path"),
    ];
    for (extra, expected) in cases {
        let text = format!("{extra}{MINIMAL}");
        let text = if extra.starts_with("address") {
            text.replacen("address = \"http://127.0.0.1:8200\"\n", "", 1)
        } else {
            text
        };
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains(expected), "{extra:?}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
    let credential_cases: &[(&str, &str)] = &[
        (
            "path = \"main/app\"",
            "#1: path \"main/app\" must be CLUSTER/DATABASE/ROLE",
        ),
        (
            "format = \"yaml\"",
            "format \"yaml\" is unknown: use env, json, url or template",
        ),
        ("format = \"template\"", "needs template or template_file"),
        ("template = \"x\"", "go with format = \"template\""),
        (
            "format = \"template\"\ntemplate = \"{{user}}\"",
            "unknown placeholder {{user}}",
        ),
        ("signal = \"HUP\"", "signal and pid_file go together"),
        (
            "signal = \"STOP\"\npid_file = \"p\"",
            "signal \"STOP\" is unknown",
        ),
        (
            "format = \"template\"\ntemplate_file = \"/nonexistent/t\"",
            "cannot read template_file /nonexistent/t",
        ),
    ];
    for (line, expected) in credential_cases {
        let text = if line.starts_with("path") {
            MINIMAL.replace("path = \"main/app_db/app\"", line)
        } else {
            format!("{MINIMAL}{line}\n")
        };
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains(expected), "{line:?}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
    let e = parse(&format!(
        "{MINIMAL}[retry]\ninitial = \"10s\"\nmax = \"1s\"\n"
    ))
    .unwrap_err();
    assert!(
        e.to_string().contains("retry.initial must be positive"),
        "{e}"
    );
    let e = parse("address = \"http://x\"\ntoken_file = \"t\"\n").unwrap_err();
    assert!(e.to_string().contains("no credential to keep"), "{e}");
    let e = parse(&MINIMAL.replace("token_file = \"token\"\n", "")).unwrap_err();
    assert!(e.to_string().contains("no token_file"), "{e}");
    let twice = format!("{MINIMAL}[[credential]]\npath = \"a/b/c\"\nfile = \"/run/app/db.env\"\n");
    let e = parse(&twice).unwrap_err();
    assert!(e.to_string().contains("same file /run/app/db.env"), "{e}");
    let e = Config::parse(None, Overrides::default(), Environment::default()).unwrap_err();
    assert!(e.to_string().contains("VAULT_ADDR"), "{e}");
}

#[test]
fn the_readme_example_parses() {
    let readme = include_str!("../../README.md");
    let agent = &readme[readme.find("## Agent").expect("an Agent section")..];
    let start = agent.find("```toml\n").expect("a toml example") + 8;
    let end = agent[start..].find("```").unwrap() + start;
    let c = parse(&agent[start..end]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.credentials.len(), 2);
}
