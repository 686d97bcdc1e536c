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

/// Characters of [`time_ordered`]'s time prefix: microseconds since 1970 in
/// base 62 fit in nine until the year 2398.
const TIME_CHARS: usize = 9;

/// `len` characters of `[0-9A-Za-z]` (at least 8 of them random after the
/// time prefix) that sort by creation time: the microseconds since 1970 in
/// base 62, then random characters. Storage keys built from them land after
/// the previous ones, on the B-tree page last written, instead of on a
/// random page each. The time is not secret: leases show it anyway.
pub fn time_ordered(len: usize) -> String {
    assert!(len >= TIME_CHARS + 8, "too short to stay unguessable");
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let mut prefix = [ALPHANUMERIC[0]; TIME_CHARS];
    let mut rest = micros;
    for slot in prefix.iter_mut().rev() {
        *slot = ALPHANUMERIC[(rest % 62) as usize];
        rest /= 62;
    }
    let mut out: String = prefix.iter().map(|&b| b as char).collect();
    out.push_str(&alphanumeric(len - TIME_CHARS));
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

    #[test]
    fn time_ordered_ids_sort_by_creation_and_stay_random() {
        let first = time_ordered(24);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = time_ordered(24);
        assert_eq!(first.len(), 24);
        assert!(first.chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(first < second, "{first} should sort before {second}");
        // Made in the same microsecond or not, two ids differ in their random part.
        assert_ne!(
            time_ordered(24)[TIME_CHARS..],
            time_ordered(24)[TIME_CHARS..]
        );
    }
}
