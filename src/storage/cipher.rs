//! The sealed-value envelope: AES-256-GCM with the storage path as associated
//! data.
//!
//! Layout: `[version: 1][key term: u32 big-endian][nonce: 12][ciphertext + tag: 16]`.
//!
//! - Associated data = the storage path. GCM authenticates it with the value,
//!   so a sealed value copied (by someone with write access to the file) under
//!   another path, e.g. one policy's ciphertext pasted over another's, or an
//!   old token entry moved under a new id, fails to open instead of being
//!   silently accepted.
//! - Nonces are 96 random bits from the OS generator, fresh per write. A
//!   counter would need state that must never go backwards, and a crash or a
//!   restored backup could replay it, reusing a nonce, which breaks GCM
//!   completely. Random nonces have no such state; the birthday bound (2^32
//!   writes per key for a 2^-32 collision chance) is far beyond this server's
//!   write volume, and `Storage::rotate_key` starts a fresh key anyway.
//! - The key term names which keyring key sealed the value, so old values
//!   still open after a rotation.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use super::Error;

pub(crate) const VERSION: u8 = 1;
pub(crate) const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
const TAG_LEN: usize = 16;

/// An AES-256-GCM key. Debug never shows the key.
pub(crate) struct Cipher(LessSafeKey);

impl Cipher {
    pub(crate) fn new(key: &[u8; 32]) -> Cipher {
        let unbound =
            UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key is valid for AES-256");
        Cipher(LessSafeKey::new(unbound))
    }

    /// Seals `plaintext` for storage at `path`, labelled with `term`.
    pub(crate) fn seal(&self, term: u32, path: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Error::Random)?;
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.push(VERSION);
        out.extend_from_slice(&term.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(path.as_bytes()),
                &mut out[HEADER_LEN..],
            )
            .map_err(|_| Error::Encrypt {
                key: path.to_owned(),
            })?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens an envelope read from `path` (already checked by [`parse`]).
    pub(crate) fn open(&self, path: &str, envelope: &Envelope<'_>) -> Result<Vec<u8>, Error> {
        let mut buf = envelope.sealed.to_vec();
        let len = self
            .0
            .open_in_place(
                Nonce::assume_unique_for_key(envelope.nonce),
                Aad::from(path.as_bytes()),
                &mut buf,
            )
            .map_err(|_| Error::Decrypt {
                key: path.to_owned(),
            })?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(<redacted>)")
    }
}

/// A stored value split into its fields.
pub(crate) struct Envelope<'a> {
    pub(crate) term: u32,
    nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the tag.
    sealed: &'a [u8],
}

/// Splits a stored value read from `path`; `Corrupt` if it cannot be one.
pub(crate) fn parse<'a>(path: &str, raw: &'a [u8]) -> Result<Envelope<'a>, Error> {
    let corrupt = |reason: String| Error::Corrupt {
        key: path.to_owned(),
        reason,
    };
    if raw.len() < HEADER_LEN + TAG_LEN {
        return Err(corrupt(format!(
            "{} bytes is too short for a sealed value",
            raw.len()
        )));
    }
    if raw[0] != VERSION {
        return Err(corrupt(format!("unknown envelope version {}", raw[0])));
    }
    let term = u32::from_be_bytes(raw[1..5].try_into().expect("4 bytes"));
    let nonce = raw[5..HEADER_LEN].try_into().expect("12 bytes");
    Ok(Envelope {
        term,
        nonce,
        sealed: &raw[HEADER_LEN..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(c: &Cipher, path: &str, raw: &[u8]) -> Result<Vec<u8>, Error> {
        c.open(path, &parse(path, raw)?)
    }

    #[test]
    fn round_trip_and_layout() {
        let c = Cipher::new(&[1; 32]);
        let sealed = c.seal(0x0102_0304, "a/b", b"secret").unwrap();
        assert_eq!(sealed.len(), HEADER_LEN + 6 + TAG_LEN);
        assert_eq!(sealed[..5], [VERSION, 1, 2, 3, 4]);
        assert_eq!(parse("a/b", &sealed).unwrap().term, 0x0102_0304);
        assert_eq!(open(&c, "a/b", &sealed).unwrap(), b"secret");
        let again = c.seal(0x0102_0304, "a/b", b"secret").unwrap();
        assert_ne!(
            sealed[5..HEADER_LEN],
            again[5..HEADER_LEN],
            "fresh nonce per write"
        );
        assert_eq!(
            open(&c, "a/b", &c.seal(7, "a/b", b"").unwrap()).unwrap(),
            b""
        );
    }

    #[test]
    fn wrong_path_key_or_any_flipped_bit_fails() {
        let c = Cipher::new(&[1; 32]);
        let sealed = c.seal(1, "a/b", b"secret").unwrap();
        assert!(matches!(open(&c, "a/c", &sealed), Err(Error::Decrypt { key }) if key == "a/c"));
        assert!(matches!(
            open(&Cipher::new(&[2; 32]), "a/b", &sealed),
            Err(Error::Decrypt { .. })
        ));
        for i in 5..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(
                matches!(open(&c, "a/b", &bad), Err(Error::Decrypt { .. })),
                "byte {i}"
            );
        }
    }

    #[test]
    fn malformed_envelopes_are_corrupt() {
        let c = Cipher::new(&[1; 32]);
        let mut sealed = c.seal(1, "k", b"v").unwrap();
        assert!(matches!(
            open(&c, "k", &sealed[..20]),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(open(&c, "k", b""), Err(Error::Corrupt { .. })));
        sealed[0] = 2;
        assert!(matches!(open(&c, "k", &sealed), Err(Error::Corrupt { .. })));
    }
}
