//! Random identifiers and secrets from the operating system's CSPRNG (ring).

use ring::rand::{SecureRandom, SystemRandom};

const ALPHANUMERIC: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Fills `buf` with random bytes; the OS generator failing is unrecoverable.
pub fn fill(buf: &mut [u8]) {
    SystemRandom::new()
        .fill(buf)
        .expect("the operating system's random generator failed");
}

/// `len` characters drawn uniformly from `[0-9A-Za-z]` (rejection sampling,
/// so no character is more likely than another).
pub fn alphanumeric(len: usize) -> String {
    from_alphabet(ALPHANUMERIC, len)
}

/// `len` characters drawn uniformly from `alphabet` (at most 256 symbols).
pub fn from_alphabet(alphabet: &[u8], len: usize) -> String {
    assert!(!alphabet.is_empty() && alphabet.len() <= 256);
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        fill(&mut buf);
        for &b in &buf {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// A random version-4 UUID (request ids, mount uuids).
pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphanumeric_has_the_length_and_alphabet_asked_for() {
        let s = alphanumeric(40);
        assert_eq!(s.len(), 40);
        assert!(s.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(alphanumeric(24), alphanumeric(24));
    }
}
