//! Identifiers. Generated ids sort by creation time (newest-first listings need no extra
//! index) and carry 80 random bits so they cannot be guessed or collide.

use sha2::{Digest, Sha256};

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Fills `buf` from the operating system's generator.
pub fn random_bytes(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random generator is unavailable");
}

/// A uniform sample in [0, 1), for retry jitter.
pub fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    random_bytes(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// `prefix_` + 48-bit millisecond time + 80 random bits, Crockford base32 (26 chars).
pub fn time_ordered(prefix: &str, now_ms: i64) -> String {
    let mut raw = [0u8; 16];
    raw[..6].copy_from_slice(&(now_ms as u64).to_be_bytes()[2..]);
    random_bytes(&mut raw[6..]);
    format!("{prefix}_{}", base32(&raw))
}

/// The delivery id of an (event, subscription) pair. Deterministic, so a redelivered event
/// fans out to the same ids and conditional writes make fan-out idempotent. It is also the
/// `webhook-id` header, the same on every attempt.
pub fn delivery_id(account_id: &str, event_id: &str, subscription_id: &str) -> String {
    let mut h = Sha256::new();
    for part in [account_id, event_id, subscription_id] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    format!("msg_{}", base32(&h.finalize()[..16]))
}

/// An opaque secret token of `len` random bytes.
pub fn random_token(len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    random_bytes(&mut b);
    b
}

pub fn token_string(prefix: &str, len: usize) -> String {
    format!("{prefix}{}", base32(&random_token(len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_ordered_ids_sort_by_time() {
        let a = time_ordered("evt", 1_700_000_000_000);
        let b = time_ordered("evt", 1_700_000_000_001);
        assert!(a < b);
        assert_eq!(a.len(), 4 + 26);
    }

    #[test]
    fn delivery_ids_are_deterministic_and_unambiguous() {
        assert_eq!(delivery_id("a", "e", "s"), delivery_id("a", "e", "s"));
        assert_ne!(delivery_id("ab", "c", "s"), delivery_id("a", "bc", "s"));
    }
}
