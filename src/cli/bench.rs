//! `pgsecrets bench`: runs the benchmarks in [`crate::bench`].

use crate::bench::{self, Options};

use super::BenchArgs;

pub async fn run(args: BenchArgs) -> Result<(), bench::Error> {
    bench::run(Options {
        quick: args.quick,
        scenarios: args.scenario,
        leases: args.leases,
        pg_bin: args.pg_bin,
        openbao: args.openbao,
    })
    .await
}
