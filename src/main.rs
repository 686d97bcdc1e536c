//! The `pgsecrets` binary: parses arguments and dispatches to [`pgsecrets::cli`].

#[tokio::main]
async fn main() {
    let cli = match pgsecrets::cli::parse(std::env::args()) {
        Ok(cli) => cli,
        Err(code) => std::process::exit(code),
    };
    std::process::exit(pgsecrets::cli::run(cli).await);
}
