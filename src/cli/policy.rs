//! `pgsecrets policy write|read|list|delete`, as `vault policy ...`
//! (ACL policies at `sys/policies/acl/<name>`, in HCL or JSON).

use std::io::Read;

use clap::Subcommand;
use serde_json::json;

use crate::client::Client;

use super::error::not_found_at;
use super::output::{self, Format, FormatArg};
use super::Error;

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Create or replace a policy from a file (`-` reads standard input).
    Write {
        name: String,
        /// HCL or JSON policy file, or `-` for standard input.
        file: String,
        #[command(flatten)]
        output: FormatArg,
    },
    /// Print a policy's rules.
    Read {
        name: String,
        #[command(flatten)]
        output: FormatArg,
    },
    /// List the policies.
    List {
        #[command(flatten)]
        output: FormatArg,
    },
    /// Delete a policy.
    Delete {
        name: String,
        #[command(flatten)]
        output: FormatArg,
    },
}

pub async fn run(command: PolicyCommand) -> Result<(), Error> {
    match command {
        PolicyCommand::Write { name, file, output } => {
            let rules = read_rules(&file)?;
            let client = Client::from_env()?;
            client
                .write(
                    &format!("sys/policies/acl/{name}"),
                    &json!({ "policy": rules }),
                )
                .await?;
            output::success(output.format, &format!("Success! Uploaded policy: {name}"))
        }
        PolicyCommand::Read { name, output } => {
            let path = format!("sys/policies/acl/{name}");
            let client = Client::from_env()?;
            let answer = client.read(&path).await.map_err(not_found_at(&path))?;
            match output.format {
                Format::Json => output::json(&answer),
                Format::Table => {
                    let rules = answer.data_str("policy").unwrap_or_default();
                    output::print(&format!("{}\n", rules.trim_end()))
                }
            }
        }
        PolicyCommand::List { output } => {
            let client = Client::from_env()?;
            let answer = client
                .list("sys/policies/acl")
                .await
                .map_err(not_found_at("sys/policies/acl"))?;
            match output.format {
                Format::Json => output::json(&answer),
                Format::Table => {
                    let mut names = answer.keys();
                    names.sort();
                    let text: String = names.iter().map(|n| format!("{n}\n")).collect();
                    output::print(&text)
                }
            }
        }
        PolicyCommand::Delete { name, output } => {
            let client = Client::from_env()?;
            client.delete(&format!("sys/policies/acl/{name}")).await?;
            output::success(output.format, &format!("Success! Deleted policy: {name}"))
        }
    }
}

fn read_rules(file: &str) -> Result<String, Error> {
    let mut rules = String::new();
    let result = if file == "-" {
        std::io::stdin().read_to_string(&mut rules).map(|_| ())
    } else {
        std::fs::read_to_string(file).map(|text| rules = text)
    };
    result.map_err(|e| Error::Input(format!("cannot read policy file {file}: {e}")))?;
    Ok(rules)
}
