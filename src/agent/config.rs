//! The agent's configuration: an `agent.toml` (see `config/agent.toml`),
//! command-line flags and `VAULT_ADDR`/`VAULT_CACERT`, validated into
//! [`Config`] before anything starts.
//!
//! Flags beat the file, the file beats the environment. Relative paths in
//! the file are resolved against the file's directory. Every mistake is
//! reported as one line naming the setting to fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use super::credential::{self, Credential, FileCredential};
use crate::config::LogFormat;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("agent config {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("agent config: {0}")]
    Invalid(String),
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The server, ending in `/` so API paths join under it.
    pub address: Url,
    /// A PEM bundle file trusted for `https` instead of the built-in roots;
    /// read (and checked) when [`super::api::client`] builds the client.
    pub ca_cert: Option<PathBuf>,
    pub token_file: PathBuf,
    /// How long a replaced credential keeps working before it is revoked.
    pub grace: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub log_format: LogFormat,
    pub credentials: Vec<Credential>,
}

/// Settings given as flags; each wins over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub address: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub mount: Option<String>,
    pub log_format: Option<LogFormat>,
    /// A credential given entirely as flags, added to the file's.
    pub credential: Option<FlagCredential>,
}

#[derive(Debug, Clone, Default)]
pub struct FlagCredential {
    pub path: String,
    pub file: PathBuf,
    pub format: Option<String>,
    pub command: Option<String>,
}

/// The environment variables Vault's clients read.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub vault_addr: Option<String>,
    pub vault_cacert: Option<PathBuf>,
}

impl Environment {
    pub fn from_process() -> Environment {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        Environment {
            vault_addr: var("VAULT_ADDR"),
            vault_cacert: var("VAULT_CACERT").map(PathBuf::from),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    address: Option<String>,
    ca_cert: Option<PathBuf>,
    token_file: Option<PathBuf>,
    mount: Option<String>,
    grace: Option<DurationText>,
    log_format: Option<LogFormat>,
    retry: Option<FileRetry>,
    #[serde(default)]
    credential: Vec<FileCredential>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRetry {
    initial: Option<DurationText>,
    max: Option<DurationText>,
}

/// `"30s"`, `"1m30s"`, or whole seconds.
#[derive(Deserialize)]
#[serde(untagged)]
enum DurationText {
    Seconds(u64),
    Text(String),
}

impl DurationText {
    fn parse(&self, setting: &str) -> Result<Duration, Error> {
        match self {
            DurationText::Seconds(s) => Ok(Duration::from_secs(*s)),
            DurationText::Text(text) => crate::logical::duration::parse_seconds(text)
                .ok()
                .filter(|s| *s >= 0.0 && s.is_finite())
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "{setting} {text:?} is not a duration (\"500ms\", \"30s\", \"5m\")"
                    ))
                }),
        }
    }
}

impl Config {
    /// Reads the file (if any), the flags and the process environment.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> Result<Config, Error> {
        let file = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                    what: "agent config",
                    path: path.to_path_buf(),
                    source,
                })?;
                Some((text, path))
            }
            None => None,
        };
        Config::parse(file, overrides, Environment::from_process())
    }

    /// Validates a config file's text (with its path), flags and environment.
    pub fn parse(
        file: Option<(String, &Path)>,
        overrides: Overrides,
        env: Environment,
    ) -> Result<Config, Error> {
        let (file, base) = match &file {
            Some((text, path)) => {
                let parsed: FileConfig = toml::from_str(text).map_err(|e| Error::Parse {
                    path: path.to_path_buf(),
                    message: toml_message(text, &e),
                })?;
                (parsed, path.parent().unwrap_or(Path::new(".")))
            }
            None => (FileConfig::default(), Path::new(".")),
        };
        let resolve = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };

        let address_text = overrides
            .address
            .or(file.address)
            .or(env.vault_addr)
            .ok_or_else(|| {
                Error::Invalid(
                    "no server address: set address in the config, --address, or VAULT_ADDR".into(),
                )
            })?;
        let address = parse_address(&address_text)?;
        let ca_cert = overrides
            .ca_cert
            .or(file.ca_cert.map(resolve))
            .or(env.vault_cacert);
        let token_file = overrides
            .token_file
            .or(file.token_file.map(resolve))
            .ok_or_else(|| {
                Error::Invalid("no token_file: set token_file in the config or --token-file".into())
            })?;
        let default_mount = credential::parse_mount(
            overrides
                .mount
                .as_deref()
                .or(file.mount.as_deref())
                .unwrap_or("database"),
        )
        .map_err(Error::Invalid)?;
        let grace = match &file.grace {
            Some(d) => d.parse("grace")?,
            None => Duration::from_secs(10),
        };
        let (retry_initial, retry_max) = match &file.retry {
            Some(r) => (
                r.initial
                    .as_ref()
                    .map(|d| d.parse("retry.initial"))
                    .transpose()?,
                r.max.as_ref().map(|d| d.parse("retry.max")).transpose()?,
            ),
            None => (None, None),
        };
        let retry_initial = retry_initial.unwrap_or(Duration::from_millis(500));
        let retry_max = retry_max.unwrap_or(Duration::from_secs(30));
        if retry_initial.is_zero() || retry_max < retry_initial {
            return Err(Error::Invalid(
                "retry.initial must be positive and at most retry.max".into(),
            ));
        }

        let mut credentials = Vec::new();
        for (i, c) in file.credential.into_iter().enumerate() {
            let credential = credential::parse(c, &default_mount, &resolve)
                .map_err(|reason| Error::Invalid(format!("[[credential]] #{}: {reason}", i + 1)))?;
            credentials.push(credential);
        }
        if let Some(flags) = overrides.credential {
            let c = FileCredential {
                path: flags.path,
                mount: None,
                file: flags.file,
                format: flags.format,
                template: None,
                template_file: None,
                command: flags.command,
                signal: None,
                pid_file: None,
            };
            credentials.push(
                credential::parse(c, &default_mount, &|p| p)
                    .map_err(|reason| Error::Invalid(format!("--path: {reason}")))?,
            );
        }
        if credentials.is_empty() {
            return Err(Error::Invalid(
                "no credential to keep: add a [[credential]] block or --path and --file".into(),
            ));
        }
        for (i, c) in credentials.iter().enumerate() {
            if credentials[..i].iter().any(|other| other.file == c.file) {
                return Err(Error::Invalid(format!(
                    "two credentials write the same file {}",
                    c.file.display()
                )));
            }
        }
        Ok(Config {
            address,
            ca_cert,
            token_file,
            grace,
            retry_initial,
            retry_max,
            log_format: overrides.log_format.or(file.log_format).unwrap_or_default(),
            credentials,
        })
    }
}

fn parse_address(text: &str) -> Result<Url, Error> {
    let invalid = || {
        Error::Invalid(format!(
            "address {text:?} is not an http:// or https:// URL (like \"https://127.0.0.1:8200\")"
        ))
    };
    let mut url = Url::parse(text).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid());
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// toml's message with its line number, on one line.
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
