//! An audit device's options and its writer: one thread per device takes
//! every line queued since its last write and writes them at once, so
//! requests never take a lock per record or wait on each other's writes
//! (Vault's file device serialises them: hashicorp/vault#7014). A request
//! waits only for the acknowledgement of its own line.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use super::Error;

/// Lines a device may have queued before new ones fail at once: a device
/// that cannot keep up refuses records instead of holding requests.
const QUEUE: usize = 4096;
/// Most bytes written in one go.
const BATCH_BYTES: usize = 1 << 20;

/// Where a device writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Discard,
    Stdout,
    File { path: PathBuf, mode: u32 },
    Socket { address: String, timeout: Duration },
}

/// A device's options, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub target: Target,
    pub hmac_accessor: bool,
    pub log_raw: bool,
    /// Written before every line (Vault's `prefix`).
    pub prefix: String,
}

impl Options {
    /// Parses Vault's option strings for a device of type `kind`.
    /// `log_raw` is accepted only from the configuration file.
    pub fn parse(
        kind: &str,
        options: &BTreeMap<String, String>,
        from_config: bool,
    ) -> Result<Options, Error> {
        let known: &[&str] = match kind {
            "file" => &["file_path", "path", "mode"],
            "socket" => &["address", "socket_type", "write_timeout"],
            _ => return Err(Error::UnknownType(kind.to_string())),
        };
        for key in options.keys() {
            let common = ["hmac_accessor", "log_raw", "prefix", "format"];
            if !known.contains(&key.as_str()) && !common.contains(&key.as_str()) {
                return Err(Error::BadOption(format!(
                    "unknown option {key:?} for a {kind} device; known: {}",
                    [known, &common[..]].concat().join(", ")
                )));
            }
        }
        let flag = |name: &str, default: bool| -> Result<bool, Error> {
            match options.get(name).map(|s| s.trim()) {
                None | Some("") => Ok(default),
                Some("true") | Some("1") => Ok(true),
                Some("false") | Some("0") => Ok(false),
                Some(other) => Err(Error::BadOption(format!(
                    "{name} must be \"true\" or \"false\", not {other:?}"
                ))),
            }
        };
        let log_raw = flag("log_raw", false)?;
        if log_raw && !from_config {
            return Err(Error::BadOption(
                "log_raw may only be set for a device declared in the configuration file".into(),
            ));
        }
        if let Some(format) = options.get("format") {
            if !format.is_empty() && format != "json" {
                return Err(Error::BadOption(format!(
                    "format {format:?} is not supported: use \"json\""
                )));
            }
        }
        let target = match kind {
            "file" => file_target(options)?,
            _ => socket_target(options)?,
        };
        Ok(Options {
            target,
            hmac_accessor: flag("hmac_accessor", true)?,
            log_raw,
            prefix: options.get("prefix").cloned().unwrap_or_default(),
        })
    }
}

fn file_target(options: &BTreeMap<String, String>) -> Result<Target, Error> {
    let path = options
        .get("file_path")
        .or_else(|| options.get("path"))
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::BadOption("file_path is required".into()))?;
    match path {
        "discard" => return Ok(Target::Discard),
        "stdout" => return Ok(Target::Stdout),
        _ => {}
    }
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(Error::BadOption(format!(
            "file_path {path:?} must be an absolute path, \"stdout\" or \"discard\""
        )));
    }
    let text = options.get("mode").map(|s| s.trim()).unwrap_or("");
    let mode = if text.is_empty() {
        0o600
    } else {
        u32::from_str_radix(text, 8).map_err(|_| {
            Error::BadOption(format!(
                "mode {text:?} is not an octal file mode such as \"0600\""
            ))
        })?
    };
    if mode > 0o777 || mode & 0o111 != 0 {
        return Err(Error::BadOption(format!(
            "mode {text:?} is refused: an audit log is never executable (use e.g. \"0600\" or \"0640\")"
        )));
    }
    Ok(Target::File { path, mode })
}

fn socket_target(options: &BTreeMap<String, String>) -> Result<Target, Error> {
    let address = options
        .get("address")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::BadOption("address is required".into()))?;
    match options.get("socket_type").map(|s| s.as_str()) {
        None | Some("") | Some("tcp") => {}
        Some(other) => {
            return Err(Error::BadOption(format!(
                "socket_type {other:?} is not supported: use \"tcp\""
            )))
        }
    }
    let timeout = match options.get("write_timeout").map(|s| s.trim()) {
        None | Some("") => Duration::from_secs(2),
        Some(text) => match crate::logical::duration::parse_seconds(text) {
            Ok(s) if s > 0.0 => Duration::from_secs_f64(s),
            _ => {
                return Err(Error::BadOption(format!(
                    "write_timeout {text:?} is not a positive duration such as \"2s\""
                )))
            }
        },
    };
    Ok(Target::Socket {
        address: address.to_string(),
        timeout,
    })
}

/// Whether a line reached the device, or why not.
pub type Ack = Result<(), String>;

enum Message {
    Line(Vec<u8>, UnboundedSender<Ack>),
    Reopen,
}

/// The sending end of a device's writer thread; the thread ends when this
/// is dropped.
pub struct Sink {
    sender: Option<SyncSender<Message>>,
}

impl Sink {
    /// Starts the writer of `target` (none for `discard`).
    pub fn start(name: &str, target: Target) -> Sink {
        if target == Target::Discard {
            return Sink { sender: None };
        }
        let (sender, receiver) = mpsc::sync_channel(QUEUE);
        let name = name.to_string();
        std::thread::Builder::new()
            .name(format!("audit {name}"))
            .spawn(move || write_loop(&name, target, receiver))
            .expect("spawn an audit writer thread");
        Sink {
            sender: Some(sender),
        }
    }

    /// Queues `line`; its outcome arrives on `ack`. `false` when the line
    /// could not even be queued (the device is behind or gone); `discard`
    /// acknowledges at once.
    pub fn send(&self, line: Vec<u8>, ack: &UnboundedSender<Ack>) -> bool {
        let Some(sender) = &self.sender else {
            let _ = ack.send(Ok(()));
            return true;
        };
        match sender.try_send(Message::Line(line, ack.clone())) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Closes and reopens the file (SIGHUP: log rotation).
    pub fn reopen(&self) {
        if let Some(sender) = &self.sender {
            // A full queue reopens with the next failure anyway.
            let _ = sender.try_send(Message::Reopen);
        }
    }
}

fn write_loop(name: &str, target: Target, receiver: Receiver<Message>) {
    let mut out: Option<Box<dyn Write>> = None;
    while let Ok(first) = receiver.recv() {
        let mut batch = Vec::new();
        let mut acks = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Line(line, ack) => {
                    batch.extend_from_slice(&line);
                    acks.push(ack);
                }
                Message::Reopen => out = None,
            }
            if batch.len() < BATCH_BYTES {
                next = receiver.try_recv().ok();
            }
        }
        if acks.is_empty() {
            continue;
        }
        let written = write_batch(&target, &mut out, &batch);
        if let Err(e) = &written {
            // The next batch opens the target again: a disk that had no
            // room, or a peer that went away, works again without a restart.
            out = None;
            tracing::error!(device = name, target = ?target, error = %e, "audit device cannot write");
        }
        let ack = written.map_err(|e| e.to_string());
        for a in acks {
            let _ = a.send(ack.clone());
        }
    }
}

fn write_batch(
    target: &Target,
    out: &mut Option<Box<dyn Write>>,
    batch: &[u8],
) -> std::io::Result<()> {
    if out.is_none() {
        *out = Some(open(target)?);
    }
    let w = out.as_mut().expect("opened above");
    w.write_all(batch)?;
    w.flush()
}

fn open(target: &Target) -> std::io::Result<Box<dyn Write>> {
    match target {
        Target::Discard => Ok(Box::new(std::io::sink())),
        Target::Stdout => Ok(Box::new(std::io::stdout())),
        Target::File { path, mode } => {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(*mode)
                .open(path)?;
            // An existing log takes the configured mode too; only a regular
            // file (never what a link points at, such as a device).
            if file.metadata()?.is_file() {
                file.set_permissions(std::fs::Permissions::from_mode(*mode))?;
            }
            Ok(Box::new(file))
        }
        Target::Socket { address, timeout } => {
            use std::net::ToSocketAddrs;
            let addr = address.to_socket_addrs()?.next().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "address resolves to nothing")
            })?;
            let stream = std::net::TcpStream::connect_timeout(&addr, *timeout)?;
            // A peer that stops reading fails the write after the timeout
            // instead of holding the device.
            stream.set_write_timeout(Some(*timeout))?;
            Ok(Box::new(stream))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn file_options_are_checked() {
        let o = Options::parse("file", &opts(&[("file_path", "/var/log/a.log")]), false).unwrap();
        assert_eq!(
            o.target,
            Target::File {
                path: "/var/log/a.log".into(),
                mode: 0o600
            }
        );
        assert!(o.hmac_accessor && !o.log_raw);
        for (pairs, text) in [
            (vec![], "file_path is required"),
            (vec![("file_path", "rel.log")], "absolute"),
            (
                vec![("file_path", "/a"), ("mode", "0755")],
                "never executable",
            ),
            (vec![("file_path", "/a"), ("mode", "abc")], "octal"),
            (
                vec![("file_path", "/a"), ("log_raw", "true")],
                "configuration file",
            ),
            (
                vec![("file_path", "/a"), ("hmac_accessor", "maybe")],
                "\"true\" or \"false\"",
            ),
            (vec![("file_path", "/a"), ("bogus", "1")], "unknown option"),
            (vec![("file_path", "/a"), ("format", "jsonx")], "format"),
        ] {
            let e = Options::parse("file", &opts(&pairs), false).unwrap_err();
            assert!(e.to_string().contains(text), "{pairs:?}: {e}");
        }
        let raw = Options::parse(
            "file",
            &opts(&[("file_path", "stdout"), ("log_raw", "true")]),
            true,
        )
        .unwrap();
        assert!(raw.log_raw);
        assert_eq!(raw.target, Target::Stdout);
        assert!(Options::parse("bogus", &opts(&[]), false).is_err());
        assert!(Options::parse("socket", &opts(&[]), false).is_err());
        let s = Options::parse("socket", &opts(&[("address", "127.0.0.1:9")]), false).unwrap();
        assert_eq!(
            s.target,
            Target::Socket {
                address: "127.0.0.1:9".into(),
                timeout: Duration::from_secs(2)
            }
        );
    }
}
