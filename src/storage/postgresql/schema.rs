//! The postgresql backend's tables, and the migrations that create them.
//!
//! Every node runs [`migrate`] when it opens the storage. It runs in one
//! transaction under a transaction-level advisory lock, so nodes starting
//! together take turns: the first creates the schema, the others find it
//! done. A schema newer than this binary knows is refused, since an older
//! binary could misread or damage it.
//!
//! Tables:
//! - `pgsecrets_kv(key bytea PRIMARY KEY, value bytea)`: the sealed values.
//!   `bytea` compares bytewise, the order of the embedded backends (`text`
//!   would follow the database collation and could not hold a NUL).
//! - `pgsecrets_ha_lock`: exactly one row, the HA lock (see
//!   [`super::lock`]). `singleton` keeps it to one row; `epoch` is UNIQUE, so
//!   a takeover (which changes it) waits for writes holding the fence row
//!   `FOR KEY SHARE`, while a renewal (which does not) never does.
//! - `pgsecrets_ha_epoch`: the sequence epochs come from, so they never go
//!   back, even if the lock row is deleted and recreated.
//! - `pgsecrets_ha_members`: the nodes that share the storage.
//! - `pgsecrets_schema_version`: one row per migration applied.

use tokio_postgres::Client;

use crate::storage::Error;

/// The newest schema this binary knows.
pub const SCHEMA_VERSION: i32 = 1;

/// Key of the advisory lock migrations run under ("pgsecret" in ASCII).
/// Transaction-level, so it is released at COMMIT or ROLLBACK and works
/// through a transaction-mode pooler too.
const MIGRATION_LOCK: i64 = 0x7067_7365_6372_6574;

/// Migration `n` is `MIGRATIONS[n - 1]`; only ever appended to.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE pgsecrets_kv (
        key   bytea PRIMARY KEY,
        value bytea NOT NULL
    );
    CREATE SEQUENCE pgsecrets_ha_epoch AS bigint MINVALUE 1 NO CYCLE;
    CREATE TABLE pgsecrets_ha_lock (
        singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        holder       text NOT NULL DEFAULT '',
        epoch        bigint NOT NULL UNIQUE DEFAULT 0,
        expires_at   timestamptz NOT NULL DEFAULT '-infinity',
        active_since timestamptz,
        api_addr     text NOT NULL DEFAULT '',
        cluster_addr text NOT NULL DEFAULT ''
    );
    CREATE TABLE pgsecrets_ha_members (
        holder       text PRIMARY KEY,
        api_addr     text NOT NULL DEFAULT '',
        cluster_addr text NOT NULL DEFAULT '',
        last_seen    timestamptz NOT NULL DEFAULT now()
    );
"];

/// Brings the schema up to [`SCHEMA_VERSION`], or refuses a newer one.
pub(super) async fn migrate(client: &mut Client) -> Result<MigrateOutcome, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    // Inside the lock: two nodes racing on CREATE TABLE IF NOT EXISTS
    // would otherwise collide on the catalog's unique index.
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS pgsecrets_schema_version (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let current: Option<i32> = tx
        .query_one("SELECT max(version) FROM pgsecrets_schema_version", &[])
        .await?
        .get(0);
    let current = current.unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Ok(MigrateOutcome::TooNew { found: current });
    }
    for version in current + 1..=SCHEMA_VERSION {
        let index = usize::try_from(version - 1).unwrap_or(0);
        tx.batch_execute(MIGRATIONS[index]).await?;
        tx.execute(
            "INSERT INTO pgsecrets_schema_version (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tracing::info!(version, "postgresql storage schema migrated");
    }
    // The one lock row. Acquire only ever updates it; if an operator
    // deleted it, the next node to start puts it back (with epoch 0, which
    // no fence carries: epochs come from the sequence).
    tx.execute(
        "INSERT INTO pgsecrets_ha_lock (singleton) VALUES (true) ON CONFLICT DO NOTHING",
        &[],
    )
    .await?;
    tx.commit().await?;
    Ok(MigrateOutcome::Current)
}

/// What [`migrate`] found.
pub(super) enum MigrateOutcome {
    Current,
    TooNew { found: i32 },
}

impl MigrateOutcome {
    pub(super) fn into_result(self, addr: &str) -> Result<(), Error> {
        match self {
            MigrateOutcome::Current => Ok(()),
            MigrateOutcome::TooNew { found } => Err(Error::SchemaTooNew {
                addr: addr.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            }),
        }
    }
}
