//! The encryption barrier: [`Storage`], the only way the rest of the server
//! reads and writes state. Every value is sealed (see `cipher` for the
//! envelope and why) with the keyring's active key on the way down and opened
//! with the key of the term it names on the way up. Keys (paths) pass through
//! unchanged, so ordering, listing and scans work on the backend as is.
//!
//! Backend calls are synchronous and may block on disk I/O (fsync on every
//! commit), so listings and scans, together with the opening of their
//! values, run on tokio's blocking pool. Single-key reads go through
//! [`Backend::fetch`] (in place for the embedded backends, which answer
//! without waiting for writes; awaited for the postgresql backend),
//! and writes go through [`Backend::submit`], which backends implement
//! without a blocking-pool task per write. A write whose caller is
//! cancelled still completes or fails as a whole: batches are atomic in the
//! backend.

use std::sync::{Arc, PoisonError, RwLock};

use super::cipher::Cipher;
use super::keyring::{Keyring, KEYRING_KEY};
use super::{Backend, Error, Op};

/// The encrypted store. Cheap to clone; clones share the keyring.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    /// `None` only in the benchmark-only plaintext mode.
    sealing: Option<Sealing>,
}

struct Sealing {
    /// Kept to re-seal the keyring on rotation.
    root: Cipher,
    /// Swapped whole on rotation; writers take a snapshot per call.
    keyring: RwLock<Arc<Keyring>>,
    /// Serialises rotations (each reads, extends and stores the keyring).
    rotation: tokio::sync::Mutex<()>,
}

/// What a single call seals and opens values with: a keyring snapshot, so a
/// concurrent rotation cannot change keys halfway through a batch.
enum Codec {
    Plain,
    Sealed(Arc<Keyring>),
}

impl Codec {
    fn seal(&self, key: &str, value: Vec<u8>) -> Result<Vec<u8>, Error> {
        match self {
            Codec::Plain => Ok(value),
            Codec::Sealed(keyring) => keyring.seal(key, &value),
        }
    }

    fn open(&self, key: &str, raw: Vec<u8>) -> Result<Vec<u8>, Error> {
        match self {
            Codec::Plain => Ok(raw),
            Codec::Sealed(keyring) => keyring.open(key, &raw),
        }
    }
}

/// Runs backend work on the blocking pool.
async fn blocking<T, F>(work: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::TaskJoin(e.to_string()))?
}

/// The keyring path is the barrier's own: an ordinary write there would
/// destroy every key, and a read would hand out its ciphertext.
fn check_key(key: &str) -> Result<(), Error> {
    if key == KEYRING_KEY {
        return Err(Error::ReservedKey {
            key: key.to_owned(),
        });
    }
    Ok(())
}

impl Storage {
    /// First start: creates the keyring (one random AES-256 key, term 1) sealed with `root_key`
    /// and stores it at "core/keyring". Fails with AlreadyInitialized if present.
    ///
    /// The presence check and the write are not one atomic step: two
    /// processes initialising the same backend at once is not supported.
    pub async fn initialize(
        backend: Arc<dyn Backend>,
        root_key: &[u8; 32],
    ) -> Result<Storage, Error> {
        let root = Cipher::new(root_key);
        let keyring = Keyring::generate()?;
        let sealed = keyring.seal_with_root(&root)?;
        let b = backend.clone();
        blocking(move || {
            if b.get(KEYRING_KEY)?.is_some() {
                return Err(Error::AlreadyInitialized);
            }
            b.apply(&[Op::put(KEYRING_KEY, sealed)])
        })
        .await?;
        tracing::info!(
            backend = backend.kind(),
            "storage initialized with key term 1"
        );
        Ok(Storage::sealed(backend, root, keyring))
    }

    /// Later starts: loads and opens the keyring with `root_key` (BadUnsealKey if it does not open; NotInitialized if absent).
    pub async fn unseal(backend: Arc<dyn Backend>, root_key: &[u8; 32]) -> Result<Storage, Error> {
        let b = backend.clone();
        let raw = blocking(move || b.get(KEYRING_KEY))
            .await?
            .ok_or(Error::NotInitialized)?;
        let root = Cipher::new(root_key);
        let keyring = Keyring::open_with_root(&root, &raw)?;
        tracing::info!(
            backend = backend.kind(),
            active_term = keyring.active_term(),
            "storage unsealed"
        );
        Ok(Storage::sealed(backend, root, keyring))
    }

    pub async fn is_initialized(backend: &Arc<dyn Backend>) -> Result<bool, Error> {
        let b = backend.clone();
        Ok(blocking(move || b.get(KEYRING_KEY)).await?.is_some())
    }

    /// For benchmarks only: same API, values stored unencrypted (so the cost of encryption can be measured).
    /// `active_term` is 0 and `rotate_key` fails with `PlaintextMode`.
    pub fn plaintext_for_benchmarks(backend: Arc<dyn Backend>) -> Storage {
        Storage {
            inner: Arc::new(Inner {
                backend,
                sealing: None,
            }),
        }
    }

    fn sealed(backend: Arc<dyn Backend>, root: Cipher, keyring: Keyring) -> Storage {
        Storage {
            inner: Arc::new(Inner {
                backend,
                sealing: Some(Sealing {
                    root,
                    keyring: RwLock::new(Arc::new(keyring)),
                    rotation: tokio::sync::Mutex::new(()),
                }),
            }),
        }
    }

    /// Adds a new key term and makes it the one new writes use; old terms still decrypt.
    /// The new keyring is durably stored before any value is sealed with it.
    pub async fn rotate_key(&self) -> Result<u32, Error> {
        let sealing = self.inner.sealing.as_ref().ok_or(Error::PlaintextMode)?;
        let _one_at_a_time = sealing.rotation.lock().await;
        let next = Arc::new(self.keyring()?.rotated()?);
        let sealed = next.seal_with_root(&sealing.root)?;
        let b = self.inner.backend.clone();
        blocking(move || b.apply(&[Op::put(KEYRING_KEY, sealed)])).await?;
        let term = next.active_term();
        *sealing
            .keyring
            .write()
            .unwrap_or_else(PoisonError::into_inner) = next;
        tracing::info!(active_term = term, "storage key rotated");
        Ok(term)
    }

    fn keyring(&self) -> Result<Arc<Keyring>, Error> {
        let sealing = self.inner.sealing.as_ref().ok_or(Error::PlaintextMode)?;
        let keyring = sealing
            .keyring
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(Arc::clone(&keyring))
    }

    fn codec(&self) -> Codec {
        match self.keyring() {
            Ok(keyring) => Codec::Sealed(keyring),
            Err(_) => Codec::Plain,
        }
    }

    /// The key term new writes are sealed with (0 in plaintext mode).
    pub fn active_term(&self) -> u32 {
        self.keyring().map_or(0, |k| k.active_term())
    }

    pub fn backend_kind(&self) -> &'static str {
        self.inner.backend.kind()
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        check_key(key)?;
        let raw = Arc::clone(&self.inner.backend)
            .fetch(key.to_owned())
            .await?;
        raw.map(|raw| self.codec().open(key, raw)).transpose()
    }

    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), Error> {
        self.apply(vec![Op::put(key, value)]).await
    }

    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        self.apply(vec![Op::delete(key)]).await
    }

    /// Applies the batch atomically; `Put` values are plaintext, sealed here
    /// (on the caller's thread: sealing a value takes microseconds, less
    /// than a hand-off to another thread).
    pub async fn apply(&self, ops: Vec<Op>) -> Result<(), Error> {
        for op in &ops {
            check_key(op.key())?;
        }
        let codec = self.codec();
        let sealed = ops
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value } => {
                    let value = codec.seal(&key, value)?;
                    Ok(Op::Put { key, value })
                }
                delete => Ok(delete),
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Arc::clone(&self.inner.backend).submit(sealed).await
    }

    /// One-level listing (see [`Backend::list`]); the keyring is not shown.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let (b, prefix) = (self.inner.backend.clone(), prefix.to_owned());
        blocking(move || {
            let mut children = b.list(&prefix)?;
            if let Some(name) = KEYRING_KEY.strip_prefix(prefix.as_str()) {
                if !name.contains('/') {
                    children.retain(|c| c != name);
                }
            }
            Ok(children)
        })
        .await
    }

    /// Decrypted pairs with start <= key < end, at most `limit`, ascending;
    /// the keyring is skipped.
    pub async fn scan(
        &self,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let (b, codec) = (self.inner.backend.clone(), self.codec());
        let (start, end) = (start.to_owned(), end.to_owned());
        blocking(move || {
            let has_keyring = start.as_str() <= KEYRING_KEY && KEYRING_KEY < end.as_str();
            let fetch = if has_keyring {
                limit.saturating_add(1)
            } else {
                limit
            };
            b.scan(&start, &end, fetch)?
                .into_iter()
                .filter(|(key, _)| key != KEYRING_KEY)
                .take(limit)
                .map(|(key, raw)| {
                    let value = codec.open(&key, raw)?;
                    Ok((key, value))
                })
                .collect()
        })
        .await
    }

    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, Error> {
        let Some(bytes) = self.get(key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::Json {
                key: key.to_owned(),
                source,
            })
    }

    pub async fn put_json<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value).map_err(|source| Error::Json {
            key: key.to_owned(),
            source,
        })?;
        self.put(key, bytes).await
    }
}

/// Shows the backend and key terms, never keys.
impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("backend", &self.backend_kind())
            .field("encrypted", &self.inner.sealing.is_some())
            .field("active_term", &self.active_term())
            .finish()
    }
}
