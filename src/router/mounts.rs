//! The mount table: which backend serves which path prefix.
//!
//! Built-in mounts (`sys/`, `auth/token/`) are fixed; engine mounts are
//! persisted at `core/mounts` and rebuilt from it at start. Requests find
//! their backend by the longest mount prefix.

use std::sync::{Arc, RwLock};

use super::{AnyBackend, Error};
use crate::storage::Storage;

const TABLE_KEY: &str = "core/mounts";

pub use crate::logical::backend::{Backend, MountConfig, MountEntry, MountSettings};

/// Builds the backend of an engine mount.
pub type Factory = Box<dyn Fn(&MountEntry) -> Result<AnyBackend, Error> + Send + Sync>;

/// Runs before an engine mount is removed (revokes its leases) and after
/// (disconnects the engine); an error before keeps the mount.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
pub type UnmountHook = Box<dyn Fn(String) -> BoxFuture<Result<(), String>> + Send + Sync>;

struct Mounted {
    entry: MountEntry,
    backend: Arc<AnyBackend>,
    builtin: bool,
}

/// The live mount table.
pub struct Mounts {
    storage: Storage,
    factory: Factory,
    table: RwLock<Vec<Mounted>>,
    before_unmount: RwLock<Option<UnmountHook>>,
}

/// Engine types the factory knows.
pub const ENGINE_TYPES: &[&str] = &["database"];

impl Mounts {
    pub fn new(storage: Storage, factory: Factory) -> Mounts {
        Mounts {
            storage,
            factory,
            table: RwLock::new(Vec::new()),
            before_unmount: RwLock::new(None),
        }
    }

    /// Sets what runs before an engine mount is removed.
    pub fn on_unmount(&self, hook: UnmountHook) {
        *self.before_unmount.write().expect("unmount hook") = Some(hook);
    }

    /// Adds a built-in mount (never persisted, never removable).
    pub fn add_builtin(&self, entry: MountEntry, backend: AnyBackend) {
        self.table.write().expect("mount table").push(Mounted {
            entry,
            backend: Arc::new(backend),
            builtin: true,
        });
    }

    /// Loads persisted engine mounts; on first start mounts `database/`.
    pub async fn load(&self) -> Result<(), Error> {
        let entries = match self.storage.get_json::<Vec<MountEntry>>(TABLE_KEY).await? {
            Some(entries) => entries,
            None => {
                let first = vec![MountEntry::new(
                    "database/",
                    "database",
                    "PostgreSQL credentials",
                )];
                self.storage.put_json(TABLE_KEY, &first).await?;
                first
            }
        };
        for entry in entries {
            let backend = (self.factory)(&entry)?;
            self.table.write().expect("mount table").push(Mounted {
                entry,
                backend: Arc::new(backend),
                builtin: false,
            });
        }
        Ok(())
    }

    /// The mount serving `path` (longest prefix), its backend and the path
    /// below it.
    pub fn find(&self, path: &str) -> Option<(MountEntry, Arc<AnyBackend>, String)> {
        let table = self.table.read().expect("mount table");
        table
            .iter()
            .filter(|m| {
                let mount = m.entry.path.as_str();
                // `database` finds the `database/` mount as well.
                path.starts_with(mount) || mount.strip_suffix('/') == Some(path)
            })
            .max_by_key(|m| m.entry.path.len())
            .map(|m| {
                let rest = path.get(m.entry.path.len()..).unwrap_or("").to_string();
                (m.entry.clone(), Arc::clone(&m.backend), rest)
            })
    }

    /// Every mount, built-ins included, sorted by path.
    pub fn entries(&self) -> Vec<MountEntry> {
        let mut entries: Vec<MountEntry> = self
            .table
            .read()
            .expect("mount table")
            .iter()
            .map(|m| m.entry.clone())
            .collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries
    }

    /// Every mount with its backend (for help and OpenAPI).
    pub fn backends(&self) -> Vec<(MountEntry, Arc<AnyBackend>)> {
        let mut all: Vec<(MountEntry, Arc<AnyBackend>)> = self
            .table
            .read()
            .expect("mount table")
            .iter()
            .map(|m| (m.entry.clone(), Arc::clone(&m.backend)))
            .collect();
        all.sort_by(|a, b| a.0.path.cmp(&b.0.path));
        all
    }

    pub fn get(&self, path: &str) -> Option<MountEntry> {
        let path = normalize(path);
        self.table
            .read()
            .expect("mount table")
            .iter()
            .find(|m| m.entry.path == path)
            .map(|m| m.entry.clone())
    }

    /// Enables an engine at `path`; nothing changes when it fails.
    pub async fn enable(&self, mut entry: MountEntry) -> Result<(), Error> {
        entry.path = check_path(&entry.path)?;
        if !ENGINE_TYPES.contains(&entry.kind.as_str()) {
            return Err(Error::UnknownEngine { kind: entry.kind });
        }
        if let Some(conflict) = self.table.read().expect("mount table").iter().find(|m| {
            m.entry.path.starts_with(&entry.path) || entry.path.starts_with(&m.entry.path)
        }) {
            return Err(Error::MountInUse {
                path: conflict.entry.path.clone(),
            });
        }
        let backend = (self.factory)(&entry)?;
        let mut persisted = self.persisted();
        persisted.push(entry.clone());
        self.storage.put_json(TABLE_KEY, &persisted).await?;
        self.table.write().expect("mount table").push(Mounted {
            entry,
            backend: Arc::new(backend),
            builtin: false,
        });
        Ok(())
    }

    /// Removes an engine mount and its storage. Absent is not an error.
    pub async fn disable(&self, path: &str) -> Result<Option<MountEntry>, Error> {
        let path = normalize(path);
        let Some(entry) = self.get(&path) else {
            return Ok(None);
        };
        if self.is_builtin(&path) {
            return Err(Error::ProtectedMount { path });
        }
        let revoking = self
            .before_unmount
            .read()
            .expect("unmount hook")
            .as_ref()
            .map(|hook| hook(path.clone()));
        if let Some(revoking) = revoking {
            revoking.await.map_err(Error::MountLeases)?;
        }
        let persisted: Vec<MountEntry> = self
            .persisted()
            .into_iter()
            .filter(|m| m.path != path)
            .collect();
        self.storage.put_json(TABLE_KEY, &persisted).await?;
        self.table
            .write()
            .expect("mount table")
            .retain(|m| m.entry.path != path);
        // The engine's data goes with its mount, as in Vault.
        let prefix = entry.storage_prefix();
        let mut start = prefix.clone();
        let end = format!("{}\u{10ffff}", prefix);
        loop {
            let batch = self.storage.scan(&start, &end, 1000).await?;
            if batch.is_empty() {
                break;
            }
            start = format!("{}\0", batch.last().expect("non-empty").0);
            let ops = batch
                .into_iter()
                .map(|(key, _)| crate::storage::Op::Delete { key })
                .collect();
            self.storage.apply(ops).await?;
        }
        Ok(Some(entry))
    }

    /// Changes a mount's settings (`sys/mounts/<p>/tune`): `change` edits
    /// the entry, which is then stored and its TTLs handed to the engine.
    pub async fn tune(&self, path: &str, change: impl Fn(&mut MountEntry)) -> Result<(), Error> {
        let path = normalize(path);
        let Some(mut tuned) = self.get(&path) else {
            return Err(Error::NoMount { path });
        };
        change(&mut tuned);
        if !self.is_builtin(&path) {
            let persisted: Vec<MountEntry> = self
                .persisted()
                .into_iter()
                .map(|m| if m.path == path { tuned.clone() } else { m })
                .collect();
            self.storage.put_json(TABLE_KEY, &persisted).await?;
        }
        for m in self.table.write().expect("mount table").iter_mut() {
            if m.entry.path == path {
                m.entry = tuned.clone();
                if let Some(tuning) = &m.backend.tuning {
                    *tuning.write().expect("mount tuning") = tuned.config;
                }
            }
        }
        Ok(())
    }

    /// Moves an engine mount to a new path (`sys/remount`). Its storage
    /// stays (it is keyed by the mount's uuid); a new backend serves the new
    /// path. Leases name their mount's path, so a mount holding leases is
    /// not moved: `leases_at` answers how many it holds, and is asked again
    /// once requests in flight on the old path have finished, when any
    /// lease that slipped in meanwhile is handed back to the caller to be
    /// revoked (`after_move`), never left behind untracked.
    pub async fn remount(
        &self,
        from: &str,
        to: &str,
        leases_at: impl Fn(String) -> BoxFuture<Result<usize, String>>,
        after_move: impl Fn(String) -> BoxFuture<Result<(), String>>,
    ) -> Result<MountEntry, Error> {
        let from = normalize(from);
        let Some(entry) = self.get(&from) else {
            return Err(Error::NoMatchingMount { path: from });
        };
        if self.is_builtin(&from) {
            return Err(Error::CannotRemount { path: from });
        }
        let to = normalize(to);
        if to == "sys/" || to.starts_with("auth/") || to.starts_with("sys/") {
            return Err(Error::CannotRemountTo { path: to });
        }
        let to = check_path(&to)?;
        if let Some(conflict) = self
            .table
            .read()
            .expect("mount table")
            .iter()
            .find(|m| m.entry.path.starts_with(&to) || to.starts_with(&m.entry.path))
        {
            return Err(Error::MountInUse {
                path: conflict.entry.path.clone(),
            });
        }
        let held = leases_at(from.clone()).await.map_err(Error::MountLeases)?;
        if held > 0 {
            return Err(Error::MountHasLeases {
                path: from,
                leases: held,
            });
        }
        // Out of the table first, so no request reaches either path while
        // the old engine finishes what it started: two engines never serve
        // the same clusters at once.
        let old = {
            let mut table = self.table.write().expect("mount table");
            let at = table
                .iter()
                .position(|m| m.entry.path == from)
                .expect("the mount was found above");
            table.remove(at)
        };
        while Arc::strong_count(&old.backend) > 1 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let mut moved = entry.clone();
        moved.path = to.clone();
        let result: Result<AnyBackend, Error> = async {
            // A lease issued by a request that was in flight: revoked, not
            // left naming a path that no longer serves.
            after_move(from.clone()).await.map_err(Error::MountLeases)?;
            let backend = (self.factory)(&moved)?;
            let mut persisted = self.persisted();
            persisted.push(moved.clone());
            self.storage.put_json(TABLE_KEY, &persisted).await?;
            Ok(backend)
        }
        .await;
        let mut table = self.table.write().expect("mount table");
        match result {
            Ok(backend) => {
                table.push(Mounted {
                    entry: moved.clone(),
                    backend: Arc::new(backend),
                    builtin: false,
                });
            }
            Err(e) => {
                table.push(old);
                return Err(e);
            }
        }
        Ok(moved)
    }

    fn is_builtin(&self, path: &str) -> bool {
        self.table
            .read()
            .expect("mount table")
            .iter()
            .any(|m| m.entry.path == path && m.builtin)
    }

    fn persisted(&self) -> Vec<MountEntry> {
        self.table
            .read()
            .expect("mount table")
            .iter()
            .filter(|m| !m.builtin)
            .map(|m| m.entry.clone())
            .collect()
    }
}

/// `database` -> `database/`.
pub fn normalize(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    format!("{trimmed}/")
}

/// Validates a new mount path and returns it normalised.
fn check_path(path: &str) -> Result<String, Error> {
    let path = normalize(path);
    let name_ok = |segment: &str| {
        !segment.is_empty()
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && segment != "."
            && segment != ".."
    };
    if path == "/" || !path.trim_end_matches('/').split('/').all(name_ok) {
        return Err(Error::InvalidMountPath {
            path,
            reason: "use path segments of letters, digits, '-', '_' and '.'",
        });
    }
    if path.starts_with("sys/") || path.starts_with("auth/") || path.starts_with("v1/") {
        return Err(Error::InvalidMountPath {
            path,
            reason: "paths under sys/ and auth/ are reserved",
        });
    }
    Ok(path)
}
