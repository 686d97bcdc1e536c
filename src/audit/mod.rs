//! Audit devices (Vault's `sys/audit`): every request and its response are
//! written to each enabled device as Vault writes them, secrets replaced by
//! their HMAC under the device's own key. While a device is enabled no
//! request runs unless its record reached at least one device, and none
//! answers unless its response record did (blocking, as Vault does).
//!
//! Devices come from the configuration file (declared) or, only with
//! `unsafe_allow_api_audit_creation`, from `sys/audit/<path>`: an API that
//! chooses files is how CVE-2025-6000 wrote code onto Vault servers.

pub mod device;
pub mod hash;
pub mod record;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use record::Entry;

use crate::storage::Storage;
use device::{Options, Sink, Target};
use hash::Hasher;

const TABLE_KEY: &str = "core/audit";
const KEY_PREFIX: &str = "core/audit-keys/";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// OpenBao's words; the switch that allows it is
    /// `unsafe_allow_api_audit_creation` (README, `sys/audit` help).
    #[error("cannot enable audit device via API; use declarative, config-based audit device management instead")]
    ApiCreationDisabled,
    #[error("cannot disable configuration-managed audit device")]
    Declared,
    #[error("path already in use")]
    PathInUse,
    #[error("file_path {0} is already written by audit device {1}")]
    FileInUse(String, String),
    #[error(
        "invalid audit device path {0:?}: use letters, digits, '-', '_', '.' and '/' between names"
    )]
    BadPath(String),
    #[error("unknown backend type: {0:?}")]
    UnknownType(String),
    #[error("{0}")]
    BadOption(String),
    #[error("audit backend failed test message: {0}")]
    TestMessage(String),
    #[error("unknown audit backend {0:?}")]
    UnknownDevice(String),
    #[error("the \"input\" parameter is empty")]
    EmptyInput,
    /// No device took the record (the cause is in the log).
    #[error("no audit device could write the {0} record")]
    NotLogged(&'static str),
    #[error("audit device {path}: {reason}")]
    Start { path: String, reason: String },
    #[error(transparent)]
    Storage(#[from] crate::storage::Error),
}

/// A device as declared or enabled: Vault's `sys/audit` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// With a trailing slash.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub local: bool,
}

/// The audit part of the configuration file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub devices: Vec<Spec>,
    pub allow_api_creation: bool,
    /// `audit_failure = "continue"`: serve when no device took a record
    /// (logged and counted) instead of refusing.
    pub continue_on_failure: bool,
}

struct Device {
    spec: Spec,
    declared: bool,
    options: Options,
    hasher: Hasher,
    sink: Sink,
}

/// Counters of records no device took (for metrics).
#[derive(Debug, Default)]
pub struct Failures {
    pub request: AtomicU64,
    pub response: AtomicU64,
}

/// The devices, shared by the router (which logs) and `sys/audit` (which
/// changes them).
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Storage,
    devices: RwLock<BTreeMap<String, Arc<Device>>>,
    any: AtomicBool,
    allow_api: bool,
    continue_on_failure: bool,
    /// How long a request waits for a device to take its record.
    wait: Duration,
    failures: Failures,
    /// One enable or disable at a time: storage table and devices change
    /// together.
    changes: tokio::sync::Mutex<()>,
}

/// Paths never audited (Vault's list): polled by load balancers.
pub fn exempt(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    matches!(path, "sys/health" | "sys/seal-status" | "sys/leader")
}

/// `file` → `file/`; refuses what could not be a mount-like path.
pub fn normalize_path(path: &str) -> Result<String, Error> {
    let trimmed = path.trim_matches('/');
    let ok = !trimmed.is_empty()
        && trimmed.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if !ok {
        return Err(Error::BadPath(path.to_string()));
    }
    Ok(format!("{trimmed}/"))
}

fn key_name(path: &str) -> String {
    format!(
        "{KEY_PREFIX}{}",
        path.trim_end_matches('/').replace('/', "%2F")
    )
}

impl Broker {
    fn new(storage: Storage, config: &Config) -> Broker {
        Broker {
            inner: Arc::new(Inner {
                storage,
                devices: RwLock::new(BTreeMap::new()),
                any: AtomicBool::new(false),
                allow_api: config.allow_api_creation,
                continue_on_failure: config.continue_on_failure,
                wait: Duration::from_secs(2),
                failures: Failures::default(),
                changes: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Starts the declared devices, then those enabled through the API
    /// (kept in storage). A declared device that cannot write fails the
    /// start; an enabled one is kept and fails requests until it can.
    pub async fn load(storage: Storage, config: &Config) -> Result<Broker, Error> {
        let broker = Broker::new(storage.clone(), config);
        for spec in &config.devices {
            let mut spec = spec.clone();
            spec.path = normalize_path(&spec.path)?;
            let start = |reason: String| Error::Start {
                path: spec.path.clone(),
                reason,
            };
            let options = Options::parse(&spec.kind, &spec.options, true)
                .map_err(|e| start(e.to_string()))?;
            broker.check_free(&spec.path, &options)?;
            let device = broker.device(spec.clone(), true, options).await?;
            broker
                .test(&device)
                .await
                .map_err(|e| start(e.to_string()))?;
            broker.insert(device);
        }
        let table: Vec<Spec> = storage.get_json(TABLE_KEY).await?.unwrap_or_default();
        for spec in table {
            if broker
                .inner
                .devices
                .read()
                .expect("audit")
                .contains_key(&spec.path)
            {
                tracing::warn!(path = %spec.path, "an audit device enabled through the API has the path of a declared one: the declared one is used");
                continue;
            }
            match Options::parse(&spec.kind, &spec.options, false) {
                Ok(options) => {
                    let device = broker.device(spec, false, options).await?;
                    broker.insert(device);
                }
                Err(e) => {
                    tracing::error!(path = %spec.path, error = %e, "stored audit device has bad options; not started")
                }
            }
        }
        Ok(broker)
    }

    /// Whether any device is enabled (a load of one atomic per request).
    pub fn enabled(&self) -> bool {
        self.inner.any.load(Ordering::Acquire)
    }

    pub fn failures(&self) -> &Failures {
        &self.inner.failures
    }

    /// The devices as `sys/audit` shows them.
    pub fn list(&self) -> Vec<Spec> {
        let devices = self.inner.devices.read().expect("audit");
        devices.values().map(|d| d.spec.clone()).collect()
    }

    /// Writes `entry` to every device; `Ok` once one took it. With none
    /// taking it, the request is refused (or, with `audit_failure =
    /// "continue"`, it goes on and the failure is counted).
    pub async fn log(&self, entry: &Entry) -> Result<(), Error> {
        let devices = self.devices();
        if devices.is_empty() {
            return Ok(());
        }
        let (ack, mut acks) = tokio::sync::mpsc::unbounded_channel();
        let mut queued = 0;
        for device in &devices {
            let line = device.line(entry);
            if device.sink.send(line, &ack) {
                queued += 1;
            } else {
                tracing::error!(device = %device.spec.path, "audit device is behind: record not queued");
            }
        }
        drop(ack);
        let taken = async {
            for _ in 0..queued {
                match acks.recv().await {
                    Some(Ok(())) => return true,
                    Some(Err(_)) => continue,
                    None => break,
                }
            }
            false
        };
        let taken = tokio::time::timeout(self.inner.wait, taken)
            .await
            .unwrap_or(false);
        if taken {
            return Ok(());
        }
        let counter = if entry.kind == "request" {
            &self.inner.failures.request
        } else {
            &self.inner.failures.response
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            request_id = %entry.request.id,
            record = entry.kind,
            "no audit device took the record"
        );
        if self.inner.continue_on_failure {
            Ok(())
        } else {
            Err(Error::NotLogged(entry.kind))
        }
    }

    /// Enables a device through the API: it must write its test message
    /// first, and its key is stored before it is listed.
    pub async fn enable(&self, mut spec: Spec) -> Result<(), Error> {
        if !self.inner.allow_api {
            return Err(Error::ApiCreationDisabled);
        }
        spec.path = normalize_path(&spec.path)?;
        let options = Options::parse(&spec.kind, &spec.options, false)?;
        let _change = self.inner.changes.lock().await;
        self.check_free(&spec.path, &options)?;
        let device = self.device(spec.clone(), false, options).await?;
        self.test(&device).await?;
        let storage = self.storage();
        let mut table: Vec<Spec> = storage.get_json(TABLE_KEY).await?.unwrap_or_default();
        table.retain(|s| s.path != spec.path);
        table.push(spec);
        storage.put_json(TABLE_KEY, &table).await?;
        self.insert(device);
        Ok(())
    }

    /// Disables a device and drops its key; an absent one is no error.
    pub async fn disable(&self, path: &str) -> Result<(), Error> {
        let path = normalize_path(path)?;
        let _change = self.inner.changes.lock().await;
        let found = self
            .inner
            .devices
            .read()
            .expect("audit")
            .get(&path)
            .cloned();
        let Some(device) = found else {
            return Ok(());
        };
        if device.declared {
            return Err(Error::Declared);
        }
        let storage = self.storage();
        let mut table: Vec<Spec> = storage.get_json(TABLE_KEY).await?.unwrap_or_default();
        table.retain(|s| s.path != path);
        storage.put_json(TABLE_KEY, &table).await?;
        storage.delete(&key_name(&path)).await?;
        let mut devices = self.inner.devices.write().expect("audit");
        devices.remove(&path);
        self.inner.any.store(!devices.is_empty(), Ordering::Release);
        Ok(())
    }

    /// `sys/audit-hash/<path>`: `input` as that device writes it.
    pub fn hash(&self, path: &str, input: &str) -> Result<String, Error> {
        let path = normalize_path(path).map_err(|_| Error::UnknownDevice(path.to_string()))?;
        if input.is_empty() {
            return Err(Error::EmptyInput);
        }
        let devices = self.inner.devices.read().expect("audit");
        let device = devices
            .get(&path)
            .ok_or(Error::UnknownDevice(path.clone()))?;
        Ok(device.hasher.hash(input))
    }

    /// Reopens every file (SIGHUP): a rotated log starts anew.
    pub fn reopen(&self) {
        for device in self.devices() {
            device.sink.reopen();
        }
    }

    fn devices(&self) -> Vec<Arc<Device>> {
        self.inner
            .devices
            .read()
            .expect("audit")
            .values()
            .cloned()
            .collect()
    }

    fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    fn check_free(&self, path: &str, options: &Options) -> Result<(), Error> {
        let devices = self.inner.devices.read().expect("audit");
        if devices.contains_key(path) {
            return Err(Error::PathInUse);
        }
        if let Target::File { path: file, .. } = &options.target {
            if let Some(other) = devices
                .values()
                .find(|d| matches!(&d.options.target, Target::File { path: p, .. } if p == file))
            {
                return Err(Error::FileInUse(
                    file.display().to_string(),
                    other.spec.path.clone(),
                ));
            }
        }
        Ok(())
    }

    /// Builds a device with its key: the stored one (hashes stay the same
    /// across restarts) or a new random one, stored encrypted.
    async fn device(&self, spec: Spec, declared: bool, options: Options) -> Result<Device, Error> {
        let storage = self.storage();
        let name = key_name(&spec.path);
        let key = match storage.get(&name).await? {
            Some(key) if key.len() == 32 => key,
            _ => {
                let mut key = vec![0u8; 32];
                crate::random::fill(&mut key);
                storage.put(&name, key.clone()).await?;
                key
            }
        };
        let sink = Sink::start(&spec.path, options.target.clone());
        Ok(Device {
            hasher: Hasher::new(&key),
            sink,
            spec,
            declared,
            options,
        })
    }

    async fn test(&self, device: &Device) -> Result<(), Error> {
        let (ack, mut acks) = tokio::sync::mpsc::unbounded_channel();
        let line = device.line(&Entry::test_message(&crate::random::uuid()));
        if !device.sink.send(line, &ack) {
            return Err(Error::TestMessage("the device is not running".into()));
        }
        match tokio::time::timeout(self.inner.wait, acks.recv()).await {
            Ok(Some(Ok(()))) => Ok(()),
            Ok(Some(Err(e))) => Err(Error::TestMessage(e)),
            Ok(None) => Err(Error::TestMessage("the device stopped".into())),
            Err(_) => Err(Error::TestMessage("timed out".into())),
        }
    }

    fn insert(&self, device: Device) {
        let mut devices = self.inner.devices.write().expect("audit");
        devices.insert(device.spec.path.clone(), Arc::new(device));
        self.inner.any.store(true, Ordering::Release);
    }
}

impl Device {
    fn line(&self, entry: &Entry) -> Vec<u8> {
        let record = entry.sealed(
            &self.hasher,
            self.options.hmac_accessor,
            self.options.log_raw,
        );
        let mut line = self.options.prefix.clone().into_bytes();
        serde_json::to_writer(&mut line, &record).expect("a JSON value serialises");
        line.push(b'\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_and_hostile_ones_refused() {
        assert_eq!(normalize_path("file").unwrap(), "file/");
        assert_eq!(normalize_path("/a/b/").unwrap(), "a/b/");
        for bad in ["", "/", "a/../b", "a//b", "a b", "a\nb", "."] {
            assert!(normalize_path(bad).is_err(), "{bad:?}");
        }
        assert!(exempt("sys/health") && exempt("sys/leader/") && !exempt("sys/audit"));
    }
}
