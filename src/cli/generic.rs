//! `pgsecrets read|write|list|delete PATH [key=value ...]`: any API path, as
//! the `vault` CLI's generic commands.
//!
//! `write` sends the `key=value` arguments as a JSON body (see
//! [`super::kv_args`]); `read`, `list` and `delete` send them as query
//! parameters.

use serde_json::Value;

use crate::client::Client;

use super::error::not_found_at;
use super::output::{self, FormatArg, OutputArgs};
use super::{kv_args, Error};

/// `pgsecrets read`.
#[derive(clap::Args, Debug)]
pub struct ReadArgs {
    /// API path, without /v1/ (e.g. database/roles/app).
    pub path: String,
    /// Query parameters: key=value, key=@file, key=-.
    pub data: Vec<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `pgsecrets write`.
#[derive(clap::Args, Debug)]
pub struct WriteArgs {
    /// API path, without /v1/ (e.g. database/roles/app).
    pub path: String,
    /// The body: key=value, key=@file (file contents), key=- (stdin),
    /// `-` (a JSON object on stdin); a value that is a JSON array or object
    /// is sent as JSON.
    pub data: Vec<String>,
    /// Write even with no data (an empty body).
    #[arg(short, long)]
    pub force: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `pgsecrets list`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// API path, without /v1/ (e.g. sys/policies/acl).
    pub path: String,
    /// Query parameters: key=value.
    pub data: Vec<String>,
    #[command(flatten)]
    pub output: FormatArg,
}

/// `pgsecrets delete`.
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// API path, without /v1/ (e.g. database/roles/app).
    pub path: String,
    /// Query parameters: key=value.
    pub data: Vec<String>,
    #[command(flatten)]
    pub output: FormatArg,
}

fn query(args: &[String]) -> Result<Vec<(String, String)>, Error> {
    let data = kv_args::parse(args, &mut std::io::stdin().lock())
        .map_err(|e| Error::Input(e.to_string()))?;
    Ok(kv_args::to_query(&data))
}

pub async fn read(args: ReadArgs) -> Result<(), Error> {
    let query = query(&args.data)?;
    let client = Client::from_env()?;
    let answer = client
        .read_with(&args.path, &query)
        .await
        .map_err(not_found_at(&args.path))?;
    output::envelope(&args.output, &answer)
}

pub async fn write(args: WriteArgs) -> Result<(), Error> {
    let body = kv_args::parse(&args.data, &mut std::io::stdin().lock())
        .map_err(|e| Error::Input(e.to_string()))?;
    if body.is_empty() && !args.force {
        return Err(Error::Input(
            "no data to write: give key=value pairs, or -force to write an empty body".into(),
        ));
    }
    let client = Client::from_env()?;
    match client.write(&args.path, &Value::Object(body)).await? {
        Some(answer) => output::envelope(&args.output, &answer),
        None => output::success(
            args.output.format,
            &format!("Success! Data written to: {}", args.path),
        ),
    }
}

pub async fn list(args: ListArgs) -> Result<(), Error> {
    let query = query(&args.data)?;
    let client = Client::from_env()?;
    let answer = client
        .list_with(&args.path, &query)
        .await
        .map_err(not_found_at(&args.path))?;
    if answer.keys().is_empty() {
        return Err(Error::NotFound { path: args.path });
    }
    output::list(args.output.format, &answer)
}

pub async fn delete(args: DeleteArgs) -> Result<(), Error> {
    let query = query(&args.data)?;
    let client = Client::from_env()?;
    match client.delete_with(&args.path, &query).await? {
        Some(answer) => output::envelope(
            &OutputArgs {
                format: args.output.format,
                field: None,
            },
            &answer,
        ),
        None => output::success(
            args.output.format,
            &format!("Success! Data deleted (if it existed) at: {}", args.path),
        ),
    }
}
