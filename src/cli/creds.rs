//! `pgsecrets creds CLUSTER/DB/ROLE`: a fresh PostgreSQL user, printed as
//! `export PG...=` lines (default), the JSON envelope, or a connection URL.
//! The lease id always goes to stderr, so `eval "$(pgsecrets creds ...)"`
//! still shows it.

use serde_json::Value;

use crate::client::{self, Client, Envelope};
use crate::logical::duration::format_go;

use super::{output, Error};

/// `-format` of `creds`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredsFormat {
    /// `export PGHOST=... PGPORT=... PGDATABASE=... PGUSER=... PGPASSWORD=... PGSSLMODE=...` lines.
    Env,
    /// The server's JSON envelope.
    Json,
    /// The connection URL (postgresql://user:password@host:port/db?sslmode=...).
    Url,
}

/// `pgsecrets creds`.
#[derive(clap::Args, Debug)]
pub struct CredsArgs {
    /// Which credentials: CLUSTER/DB/ROLE.
    pub target: String,
    /// Where the database engine is mounted.
    #[arg(long, default_value = "database")]
    pub mount: String,
    /// env, json or url.
    #[arg(long, value_enum, default_value_t = CredsFormat::Env)]
    pub format: CredsFormat,
}

/// Issued credentials: the answer and the libpq environment for them.
pub struct Issued {
    pub answer: Envelope,
    /// `PGHOST`, `PGPORT`, `PGDATABASE`, `PGUSER`, `PGPASSWORD`, `PGSSLMODE`.
    pub env: Vec<(&'static str, String)>,
}

pub async fn run(args: CredsArgs) -> Result<(), Error> {
    let path = creds_path(&args.mount, &args.target)?;
    let client = Client::from_env()?;
    let issued = issue(&client, &path).await?;
    eprintln!("{}", lease_line(&issued.answer));
    match args.format {
        CredsFormat::Env => {
            let text: String = issued
                .env
                .iter()
                .map(|(k, v)| format!("export {k}={}\n", shell_quote(v)))
                .collect();
            output::print(&text)
        }
        CredsFormat::Json => output::json(&issued.answer),
        CredsFormat::Url => {
            let url = issued.answer.data_str("connection_url").unwrap_or_default();
            output::print(&format!("{url}\n"))
        }
    }
}

/// `<mount>/creds/<cluster>/<db>/<role>`, refusing anything but three names.
pub fn creds_path(mount: &str, target: &str) -> Result<String, Error> {
    let parts: Vec<&str> = target.split('/').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.trim().is_empty()) {
        return Err(Error::Input(format!(
            "expected CLUSTER/DB/ROLE, got {target:?}"
        )));
    }
    let mount = mount.trim_matches('/');
    if mount.is_empty() {
        return Err(Error::Input("the mount is empty".into()));
    }
    Ok(format!("{mount}/creds/{target}"))
}

/// Reads credentials at `path` and derives the libpq environment.
pub async fn issue(client: &Client, path: &str) -> Result<Issued, Error> {
    let answer = client.read(path).await?;
    let broken = |reason: &str| {
        Error::Client(client::Error::BadResponse {
            method: "GET".into(),
            path: format!("/v1/{path}"),
            status: 200,
            reason: reason.to_string(),
        })
    };
    let text = |key: &str| -> Result<String, Error> {
        match answer.data_value(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => Err(broken(&format!("no {key} in the credentials"))),
        }
    };
    let mut env = vec![
        ("PGHOST", text("host")?),
        ("PGPORT", text("port")?),
        ("PGDATABASE", text("database")?),
        ("PGUSER", text("username")?),
        ("PGPASSWORD", text("password")?),
    ];
    if let Some(mode) = answer
        .data_str("connection_url")
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "sslmode")
                .map(|(_, v)| v.into_owned())
        })
    {
        env.push(("PGSSLMODE", mode));
    }
    Ok(Issued { answer, env })
}

/// The line about the lease, for stderr.
pub fn lease_line(answer: &Envelope) -> String {
    format!(
        "lease_id: {} (lease_duration {})",
        answer.lease_id,
        format_go(answer.lease_duration)
    )
}

/// `'text'` for sh, with embedded quotes as `'\''`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_need_exactly_three_names() {
        assert_eq!(
            creds_path("database", "main/shop/app").unwrap(),
            "database/creds/main/shop/app"
        );
        assert_eq!(
            creds_path("/pg/", "main/shop/app").unwrap(),
            "pg/creds/main/shop/app"
        );
        for bad in ["main/shop", "main/shop/app/x", "main//app", ""] {
            assert!(creds_path("database", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }
}
