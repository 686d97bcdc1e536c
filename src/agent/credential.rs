//! One `[[credential]]` block of the agent's configuration: which
//! credential (`path`, `mount`), where it goes (`file`, `format`, template)
//! and whom to tell (`command`, `signal` + `pid_file`).

use std::path::PathBuf;

use serde::Deserialize;

use super::notify::{parse_signal, SignalTarget};
use super::render::{Format, Template};

/// One credential kept fresh in one sink file.
#[derive(Debug, Clone, PartialEq)]
pub struct Credential {
    /// The engine's mount, without slashes (`database`).
    pub mount: String,
    /// `CLUSTER/DATABASE/ROLE`.
    pub path: String,
    pub file: PathBuf,
    pub format: Format,
    pub command: Option<String>,
    pub signal: Option<SignalTarget>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCredential {
    pub path: String,
    pub mount: Option<String>,
    pub file: PathBuf,
    pub format: Option<String>,
    pub template: Option<String>,
    pub template_file: Option<PathBuf>,
    pub command: Option<String>,
    pub signal: Option<String>,
    pub pid_file: Option<PathBuf>,
}

/// Validates one `[[credential]]` block; the error is the reason alone.
pub(super) fn parse(
    c: FileCredential,
    default_mount: &str,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<Credential, String> {
    let segments: Vec<&str> = c.path.split('/').collect();
    if segments.len() != 3 || !segments.iter().all(|s| is_name(s)) {
        return Err(format!(
            "path {:?} must be CLUSTER/DATABASE/ROLE (names of letters, digits, '_', '-', '.')",
            c.path
        ));
    }
    let mount = match &c.mount {
        Some(m) => parse_mount(m)?,
        None => default_mount.to_string(),
    };
    if c.file.as_os_str().is_empty() || c.file.file_name().is_none() {
        return Err(format!("file {:?} is not a file path", c.file.display()));
    }
    let format_name = c.format.as_deref().unwrap_or("env");
    let template_given = c.template.is_some() || c.template_file.is_some();
    let format = match format_name {
        "env" | "json" | "url" if template_given => {
            return Err(format!(
                "template and template_file go with format = \"template\", not {format_name:?}"
            ))
        }
        "env" => Format::Env,
        "json" => Format::Json,
        "url" => Format::Url,
        "template" => {
            let text = match (c.template, c.template_file) {
                (Some(text), None) => text,
                (None, Some(path)) => {
                    let path = resolve(path);
                    std::fs::read_to_string(&path)
                        .map_err(|e| format!("cannot read template_file {}: {e}", path.display()))?
                }
                _ => {
                    return Err(
                        "format = \"template\" needs template or template_file (one of them)"
                            .into(),
                    )
                }
            };
            Format::Template(Template::parse(&text).map_err(|e| format!("template: {e}"))?)
        }
        other => {
            return Err(format!(
                "format {other:?} is unknown: use env, json, url or template"
            ))
        }
    };
    let signal = match (c.signal, c.pid_file) {
        (Some(name), Some(pid_file)) => Some(SignalTarget {
            signal: parse_signal(&name)?,
            pid_file: resolve(pid_file),
        }),
        (None, None) => None,
        _ => return Err("signal and pid_file go together".into()),
    };
    let command = c.command.filter(|c| !c.trim().is_empty());
    Ok(Credential {
        mount,
        path: c.path,
        file: resolve(c.file),
        format,
        command,
        signal,
    })
}

/// Vault's name rule: `\w(([\w-.]+)?\w)?`.
fn is_name(s: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().last()) else {
        return false;
    };
    word(first) && word(last) && s.chars().all(|c| word(c) || c == '-' || c == '.')
}

/// A mount path without its slashes (`"/database/"` -> `"database"`).
pub(super) fn parse_mount(text: &str) -> Result<String, String> {
    let mount = text.trim_matches('/');
    if mount.is_empty() || !mount.split('/').all(is_name) {
        return Err(format!(
            "mount {text:?} is not a mount path (like \"database\")"
        ));
    }
    Ok(mount.to_string())
}
