//! The `pgsecrets` binary: parses arguments and dispatches to [`pgsecrets::cli`].

use clap::Parser;

#[tokio::main]
async fn main() {
    let args = pgsecrets::cli::vault_style_args(std::env::args());
    let cli = pgsecrets::cli::Cli::parse_from(args);
    std::process::exit(pgsecrets::cli::run(cli).await);
}
