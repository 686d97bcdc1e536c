//! `pgsecrets token create|lookup`, as `vault token ...`.

use clap::Subcommand;
use serde_json::{json, Map, Value};

use crate::client::Client;

use super::output::{self, OutputArgs};
use super::{duration_seconds, kv_args, Error};

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token (a child of the calling token, unless -orphan).
    Create(CreateArgs),
    /// Look up a token: the calling one, or TOKEN (or, with -accessor, the
    /// token with that accessor).
    Lookup {
        /// The token to look up (default: the calling token).
        token: Option<String>,
        /// TOKEN is an accessor.
        #[arg(long, requires = "token")]
        accessor: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// `pgsecrets token create`.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// A policy of the new token; repeat the flag or separate with commas.
    #[arg(long = "policy", value_delimiter = ',')]
    pub policies: Vec<String>,
    /// Time to live, e.g. 1h or 3600 (default: 768h).
    #[arg(long, value_parser = duration_seconds)]
    pub ttl: Option<u64>,
    /// Hard limit on the token's life, renewals included.
    #[arg(long, value_parser = duration_seconds)]
    pub explicit_max_ttl: Option<u64>,
    /// Make a periodic token: each renewal extends it by this much.
    #[arg(long, value_parser = duration_seconds)]
    pub period: Option<u64>,
    /// Name shown in lookups.
    #[arg(long)]
    pub display_name: Option<String>,
    /// Number of requests the token may make (0: unlimited).
    #[arg(long)]
    pub use_limit: Option<u64>,
    /// Metadata key=value kept with the token; repeatable.
    #[arg(long)]
    pub metadata: Vec<String>,
    /// Create a token without a parent (revoking the caller does not revoke it).
    #[arg(long)]
    pub orphan: bool,
    /// Do not attach the default policy.
    #[arg(long)]
    pub no_default_policy: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn run(command: TokenCommand) -> Result<(), Error> {
    match command {
        TokenCommand::Create(args) => create(args).await,
        TokenCommand::Lookup {
            token,
            accessor,
            output,
        } => {
            let client = Client::from_env()?;
            let answer = match (token, accessor) {
                (None, _) => client.token_lookup_self().await?,
                (Some(token), false) => client
                    .write("auth/token/lookup", &json!({ "token": token }))
                    .await?
                    .unwrap_or_default(),
                (Some(accessor), true) => client
                    .write(
                        "auth/token/lookup-accessor",
                        &json!({ "accessor": accessor }),
                    )
                    .await?
                    .unwrap_or_default(),
            };
            output::envelope(&output, &answer)
        }
    }
}

async fn create(args: CreateArgs) -> Result<(), Error> {
    let mut body = Map::new();
    let policies: Vec<String> = args
        .policies
        .iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if !policies.is_empty() {
        body.insert("policies".into(), json!(policies));
    }
    let optional = [
        ("ttl", args.ttl.map(Value::from)),
        ("explicit_max_ttl", args.explicit_max_ttl.map(Value::from)),
        ("period", args.period.map(Value::from)),
        ("display_name", args.display_name.map(Value::from)),
        ("num_uses", args.use_limit.map(Value::from)),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            body.insert(key.into(), value);
        }
    }
    if !args.metadata.is_empty() {
        let meta = kv_args::parse(&args.metadata, &mut std::io::empty())
            .map_err(|e| Error::Input(format!("-metadata: {e}")))?;
        body.insert("meta".into(), Value::Object(meta));
    }
    if args.no_default_policy {
        body.insert("no_default_policy".into(), json!(true));
    }
    let path = if args.orphan {
        "auth/token/create-orphan"
    } else {
        "auth/token/create"
    };
    let client = Client::from_env()?;
    let answer = client
        .write(path, &Value::Object(body))
        .await?
        .unwrap_or_default();
    output::envelope(&args.output, &answer)
}
