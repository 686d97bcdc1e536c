//! The keyring: the data-encryption keys behind the barrier, one per key
//! term. The newest term seals new writes; every term still opens the values
//! it sealed, so rotation never rewrites data.
//!
//! Stored at [`KEYRING_KEY`] as a JSON list of `{term, key (base64), created
//! (RFC 3339)}`, sealed in the usual envelope with the root (unseal) key,
//! key term 0, and the path "core/keyring" as associated data. The root key
//! itself is never stored.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use super::cipher::{self, Cipher};
use super::Error;

/// Where the sealed keyring lives. The barrier refuses ordinary reads and
/// writes of this path.
pub const KEYRING_KEY: &str = "core/keyring";

/// The term written in the keyring's own envelope (the root key's).
const ROOT_TERM: u32 = 0;

/// The data keys, by ascending term; never empty.
pub(crate) struct Keyring {
    terms: Vec<TermKey>,
}

struct TermKey {
    term: u32,
    raw: [u8; 32],
    cipher: Cipher,
    created: DateTime<Utc>,
}

impl TermKey {
    fn new(term: u32, raw: [u8; 32], created: DateTime<Utc>) -> TermKey {
        TermKey {
            term,
            cipher: Cipher::new(&raw),
            raw,
            created,
        }
    }

    fn generate(term: u32) -> Result<TermKey, Error> {
        let mut raw = [0u8; 32];
        SystemRandom::new()
            .fill(&mut raw)
            .map_err(|_| Error::Random)?;
        Ok(TermKey::new(term, raw, Utc::now()))
    }
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    term: u32,
    key: String,
    created: DateTime<Utc>,
}

impl Keyring {
    /// A new keyring with one random key, term 1.
    pub(crate) fn generate() -> Result<Keyring, Error> {
        Ok(Keyring {
            terms: vec![TermKey::generate(1)?],
        })
    }

    /// This keyring plus a new random key with the next term, now active.
    pub(crate) fn rotated(&self) -> Result<Keyring, Error> {
        let next = self
            .active_term()
            .checked_add(1)
            .ok_or_else(|| corrupt("key terms are exhausted"))?;
        let mut terms: Vec<TermKey> = self
            .terms
            .iter()
            .map(|t| TermKey::new(t.term, t.raw, t.created))
            .collect();
        terms.push(TermKey::generate(next)?);
        Ok(Keyring { terms })
    }

    /// The term new writes are sealed with.
    pub(crate) fn active_term(&self) -> u32 {
        self.active().term
    }

    fn active(&self) -> &TermKey {
        self.terms.last().expect("a keyring is never empty")
    }

    /// Seals a value for storage at `path` with the active key.
    pub(crate) fn seal(&self, path: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let active = self.active();
        active.cipher.seal(active.term, path, plaintext)
    }

    /// Opens a value read from `path` with the key of the term it names.
    pub(crate) fn open(&self, path: &str, raw: &[u8]) -> Result<Vec<u8>, Error> {
        let envelope = cipher::parse(path, raw)?;
        let Ok(i) = self.terms.binary_search_by_key(&envelope.term, |t| t.term) else {
            return Err(Error::UnknownKeyTerm {
                key: path.to_owned(),
                term: envelope.term,
            });
        };
        self.terms[i].cipher.open(path, &envelope)
    }

    /// The keyring as stored: JSON sealed with the root key.
    pub(crate) fn seal_with_root(&self, root: &Cipher) -> Result<Vec<u8>, Error> {
        let stored: Vec<StoredKey> = self
            .terms
            .iter()
            .map(|t| StoredKey {
                term: t.term,
                key: BASE64.encode(t.raw),
                created: t.created,
            })
            .collect();
        let json = serde_json::to_vec(&stored).map_err(|source| Error::Json {
            key: KEYRING_KEY.to_owned(),
            source,
        })?;
        root.seal(ROOT_TERM, KEYRING_KEY, &json)
    }

    /// Opens the stored keyring; `BadUnsealKey` if `root` does not open it.
    pub(crate) fn open_with_root(root: &Cipher, raw: &[u8]) -> Result<Keyring, Error> {
        let envelope = cipher::parse(KEYRING_KEY, raw)?;
        if envelope.term != ROOT_TERM {
            return Err(Error::UnknownKeyTerm {
                key: KEYRING_KEY.to_owned(),
                term: envelope.term,
            });
        }
        let json = root.open(KEYRING_KEY, &envelope).map_err(|e| match e {
            Error::Decrypt { .. } => Error::BadUnsealKey,
            other => other,
        })?;
        // Not `Error::Json`: serde_json's message could quote key material.
        let stored: Vec<StoredKey> = serde_json::from_slice(&json)
            .map_err(|e| corrupt(&format!("keyring JSON ({:?} error)", e.classify())))?;
        let mut terms = Vec::with_capacity(stored.len());
        for s in stored {
            let raw: [u8; 32] = BASE64
                .decode(s.key.as_bytes())
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| corrupt(&format!("key term {} is not 32 base64 bytes", s.term)))?;
            terms.push(TermKey::new(s.term, raw, s.created));
        }
        terms.sort_by_key(|t| t.term);
        if terms.is_empty() {
            return Err(corrupt("the keyring is empty"));
        }
        if terms.windows(2).any(|w| w[0].term == w[1].term) || terms[0].term == ROOT_TERM {
            return Err(corrupt("duplicate or reserved key term"));
        }
        Ok(Keyring { terms })
    }
}

fn corrupt(reason: &str) -> Error {
    Error::Corrupt {
        key: KEYRING_KEY.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Shows terms and dates, never key bytes.
impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let terms: Vec<(u32, String)> = self
            .terms
            .iter()
            .map(|t| (t.term, t.created.to_rfc3339()))
            .collect();
        f.debug_struct("Keyring")
            .field("active_term", &self.active_term())
            .field("terms", &terms)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_with_active_term_and_opens_every_term() {
        let one = Keyring::generate().unwrap();
        assert_eq!(one.active_term(), 1);
        let old = one.seal("p", b"old").unwrap();
        let two = one.rotated().unwrap();
        assert_eq!(two.active_term(), 2);
        let new = two.seal("p", b"new").unwrap();
        assert_eq!(new[1..5], 2u32.to_be_bytes());
        assert_eq!(two.open("p", &old).unwrap(), b"old");
        assert_eq!(two.open("p", &new).unwrap(), b"new");
        assert!(matches!(
            one.open("p", &new),
            Err(Error::UnknownKeyTerm { term: 2, .. })
        ));
    }

    #[test]
    fn round_trips_through_the_root_key_only() {
        let root = Cipher::new(&[9; 32]);
        let ring = Keyring::generate().unwrap().rotated().unwrap();
        let sealed = ring.seal_with_root(&root).unwrap();
        let back = Keyring::open_with_root(&root, &sealed).unwrap();
        assert_eq!(back.active_term(), 2);
        assert_eq!(
            back.open("x", &ring.seal("x", b"v").unwrap()).unwrap(),
            b"v"
        );
        assert!(matches!(
            Keyring::open_with_root(&Cipher::new(&[8; 32]), &sealed),
            Err(Error::BadUnsealKey)
        ));
    }

    #[test]
    fn a_malformed_keyring_is_corrupt() {
        let root = Cipher::new(&[9; 32]);
        for json in [
            &b"[]"[..],
            b"{}",
            br#"[{"term":1,"key":"AAAA","created":"2024-01-01T00:00:00Z"}]"#,
        ] {
            let sealed = root.seal(ROOT_TERM, KEYRING_KEY, json).unwrap();
            let err = Keyring::open_with_root(&root, &sealed).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        }
    }

    #[test]
    fn debug_shows_no_key_material() {
        let ring = Keyring::generate().unwrap();
        let raw = ring.terms[0].raw;
        let shown = format!("{ring:?} {:?}", ring.terms[0].cipher);
        assert!(shown.contains("active_term: 1"), "{shown}");
        assert!(!shown.contains(&BASE64.encode(raw)));
        assert!(!shown.contains(&format!("{raw:?}")[1..20]));
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!shown.contains(&hex));
    }
}
