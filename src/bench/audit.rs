//! Scenario 6 (`audit`): what a file audit device costs. Two in-process
//! servers on the same PostgreSQL, each with a cluster of its own, one
//! without audit and one writing every request and response record to a
//! file; windows alternate (without, with, without, with) so the machine's
//! drift weighs on both, and the issued users are dropped between windows.
//! Every window must answer without error, and the audit file must hold a
//! request and a response record for every credential it issued.

use std::collections::BTreeMap;
use std::path::Path;

use super::load::{self, Sample};
use super::pg::Pg;
use super::report::{Row, Target};
use super::target::{Cluster, Server};
use super::{http_load, Error, Plan};
use crate::audit::{Config, Spec};
use crate::server::ServerOptions;

const ROLE: &str = "app";
/// Issue 20: creds/s with a file audit device at least 0.9x those without.
const TARGET: f64 = 0.9;

struct Side {
    server: Server,
    cluster: Cluster,
    token: String,
}

impl Side {
    async fn start(pg: &Pg, name: &str, options: ServerOptions) -> Result<Side, Error> {
        let server = Server::start_with(options).await?;
        let cluster = server.register(pg, name).await?;
        let token = server.app_token().await?;
        Ok(Side {
            server,
            cluster,
            token,
        })
    }

    async fn window(&self, pg: &Pg, concurrency: usize, plan: &Plan) -> Result<Sample, Error> {
        let ops = http_load::creds_ops(
            &self.server.url,
            &self.cluster.creds_path(ROLE),
            &self.token,
            concurrency,
        )?;
        let sample = load::run(ops, plan.warmup, plan.window).await;
        super::pg::drop_roles(pg, &format!("v-{ROLE}-")).await?;
        if sample.ok == 0 || sample.errors > 0 {
            return Err(Error::Failed(format!(
                "audit scenario, {} at c={concurrency}: {} answered, {} failed; first error: {}",
                self.cluster.name,
                sample.ok,
                sample.errors,
                sample.first_error.as_deref().unwrap_or("none")
            )));
        }
        Ok(sample)
    }
}

fn file_device(file: &Path) -> Config {
    Config {
        devices: vec![Spec {
            path: "file/".into(),
            kind: "file".into(),
            description: "bench".into(),
            options: BTreeMap::from([("file_path".into(), file.display().to_string())]),
            local: false,
        }],
        allow_api_creation: false,
        continue_on_failure: false,
    }
}

/// Lines in the audit file whose record is a response to a credentials read.
fn audited_credentials(file: &Path) -> Result<usize, Error> {
    let text = std::fs::read_to_string(file)?;
    Ok(text
        .lines()
        .filter(|line| line.contains("\"type\":\"response\"") && line.contains("/creds/"))
        .count())
}

pub async fn audit(pg: &Pg, plan: &Plan) -> Result<Vec<Row>, Error> {
    let dir = tempfile::Builder::new()
        .prefix("pgsecrets-bench-audit-")
        .tempdir()?;
    let file = dir.path().join("audit.log");
    let plain = Side::start(pg, "noaudit", ServerOptions::default()).await?;
    let audited = Side::start(
        pg,
        "audited",
        ServerOptions {
            audit: file_device(&file),
            ..ServerOptions::default()
        },
    )
    .await?;
    let mut rows = Vec::new();
    let mut issued_audited = 0;
    for iterations in [4096, 1] {
        for side in [&plain, &audited] {
            side.server.write_role(ROLE, 3600, iterations).await?;
        }
        for concurrency in [1, 16] {
            let mut without = plain.window(pg, concurrency, plan).await?;
            let mut with = audited.window(pg, concurrency, plan).await?;
            without.absorb(plain.window(pg, concurrency, plan).await?);
            with.absorb(audited.window(pg, concurrency, plan).await?);
            // The warm-up's answers are audited too, but not counted.
            issued_audited += with.ok;
            let case = format!("c={concurrency} iter={iterations}, file audit device");
            let judged = concurrency == 16;
            let mut throughput = Row::new("audit", &case, "creds/s")
                .floor(without.per_second())
                .value(with.per_second());
            if judged {
                throughput = throughput.target(Target::RatioAtLeast(TARGET));
            }
            rows.push(throughput);
            rows.push(
                Row::new("audit", &case, "p50 ms")
                    .floor(without.percentile_ms(50.0))
                    .value(with.percentile_ms(50.0)),
            );
            rows.push(
                Row::new("audit", &case, "p99 ms")
                    .floor(without.percentile_ms(99.0))
                    .value(with.percentile_ms(99.0)),
            );
            eprintln!(
                "bench: audit {case}: without {:.0} creds/s, with {:.0} creds/s",
                without.per_second(),
                with.per_second()
            );
        }
    }
    plain.server.shutdown().await;
    audited.server.shutdown().await;
    let recorded = audited_credentials(&file)?;
    if recorded < issued_audited {
        return Err(Error::Failed(format!(
            "audit scenario: {issued_audited} credentials issued with the device, but only {recorded} response records in {}",
            file.display()
        )));
    }
    Ok(rows)
}
