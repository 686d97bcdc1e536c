//! `server --dev`'s PostgreSQL: a throwaway server of the machine's own
//! binaries (the shared launcher), registered as cluster `dev` with
//! database `app` and role `app`, so that the first credential is one
//! command away. It stops with the dev server (ctrl-c, SIGTERM); after a
//! `kill -9` the launcher's watchdog stops it and removes its files.

use std::io::Write;

use serde_json::json;

use crate::client::{Client, Settings};
use crate::postgres::launcher::{self, LocalPg, Options};

/// Names the dev setup uses, as the README shows them.
pub const CLUSTER: &str = "dev";
pub const DATABASE: &str = "app";
pub const ROLE: &str = "app";

/// Starts the throwaway server, or says in one line why there is none
/// (the dev server then serves without it).
pub async fn start_postgres() -> Option<LocalPg> {
    let started = tokio::task::spawn_blocking(|| {
        let bin = launcher::find_bin(None)?;
        LocalPg::start(&bin, Options::new("dev"))
    })
    .await
    .expect("the launcher does not panic");
    match started {
        Ok(pg) => Some(pg),
        Err(launcher::Error::NotFound) => {
            say(
                "No PostgreSQL server binaries found, so no dev PostgreSQL: install them (Debian: \
                 apt-get install postgresql) or set PGSECRETS_PG_BIN; --dev-no-postgres silences this.\n",
            );
            None
        }
        Err(e) => {
            say(&format!(
                "The dev PostgreSQL did not start ({e}); serving without it.\n"
            ));
            None
        }
    }
}

/// Registers `pg` through the server's own API (as an operator would) and
/// prints the two commands that issue a credential.
pub async fn register(pg: &LocalPg, address: &str, token: &str) -> Result<(), String> {
    let mut settings = Settings::new(address);
    settings.token = Some(token.to_string());
    let client = Client::new(settings).map_err(|e| e.to_string())?;
    let steps = [
        (
            format!("database/cluster/{CLUSTER}"),
            json!({"host": pg.host(), "port": pg.port(), "username": pg.superuser(),
                "password": pg.password(), "ssl_mode": "disable"}),
        ),
        (format!("database/cluster/{CLUSTER}/{DATABASE}"), json!({})),
        (
            format!("database/roles/{ROLE}"),
            json!({"default_ttl": "1h", "max_ttl": "24h"}),
        ),
    ];
    for (path, body) in steps {
        client
            .write(&path, &body)
            .await
            .map_err(|e| format!("{path}: {e}"))?;
    }
    say(&format!(
        "A throwaway PostgreSQL {version} runs at {host}:{port} for this server (it stops with it), \
         registered as cluster \"{CLUSTER}\" with database \"{DATABASE}\" and role \"{ROLE}\" \
         (1h leases, 24h at most). A credential:\n\n\
         \x20   curl -s -H 'X-Vault-Token: {token}' {address}/v1/database/creds/{CLUSTER}/{DATABASE}/{ROLE}\n\
         \x20   pgsecrets psql {CLUSTER}/{DATABASE}/{ROLE}    # with the two exports above\n",
        // `postgres (PostgreSQL) 15.18 (Debian ...)` -> `15.18`
        version = pg
            .version()
            .split_once("(PostgreSQL) ")
            .and_then(|(_, v)| v.split_whitespace().next().map(str::to_string))
            .unwrap_or_default(),
        host = pg.host(),
        port = pg.port(),
    ));
    Ok(())
}

/// Prints to stdout; a reader that went away (a closed pipe) is no reason
/// to stop serving.
pub fn say(text: &str) {
    let _ = writeln!(std::io::stdout(), "{text}");
}
