//! Identifiers. Each kind of id is its own type, so an account id cannot be passed where a
//! subscription id is expected, and the one rule every id follows is checked in one place:
//! when text from outside (a request, a path, a producer's event) becomes an id.
//!
//! Generated ids sort by creation time (newest-first listings need no extra index) and
//! carry 80 random bits so they cannot be guessed or collide.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::random::Random;
use crate::time::Timestamp;

/// The longest id, in characters (all of them ASCII, so also in bytes).
pub const MAX_ID_CHARS: usize = 128;

/// What every id must be; said to whoever sent one that is not.
pub const ID_RULE: &str = "must be 1 to 128 characters of letters, digits, '_', '-', '.', ':'";

/// Text that does not follow [`ID_RULE`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ID_RULE}")]
pub struct InvalidId;

/// Whether `s` follows [`ID_RULE`]. Only ASCII is allowed, so length in bytes is length in
/// characters.
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_CHARS
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':'))
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The id `s` names, if it follows [`ID_RULE`].
            pub fn parse(s: impl Into<String>) -> Result<Self, InvalidId> {
                let s = s.into();
                if is_valid_id(&s) {
                    Ok($name(s))
                } else {
                    Err(InvalidId)
                }
            }

            /// An id written in the code (a constant, a test): panics if it breaks the rule,
            /// which is the code's mistake, never input's.
            pub fn from_static(s: &'static str) -> Self {
                match $name::parse(s) {
                    Ok(id) => id,
                    Err(_) => panic!("{s:?} is not a valid {}", stringify!($name)),
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                $name::parse(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidId;
            fn try_from(s: &str) -> Result<Self, InvalidId> {
                $name::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

id_type!(
    /// The customer account that owns subscriptions, events and deliveries.
    AccountId
);
id_type!(
    /// A subscription (a webhook endpoint and what it receives); `wh_…` when generated.
    SubscriptionId
);
id_type!(
    /// An event: the producer's own id, or `evt_…` when it gave none.
    EventId
);
id_type!(
    /// One event's delivery to one subscription (`msg_…`); also its `webhook-id` header.
    DeliveryId
);
id_type!(
    /// An account API key's id (`key_…`), never the key.
    ApiKeyId
);

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

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
pub fn time_ordered(prefix: &str, now: Timestamp, random: &dyn Random) -> String {
    let mut raw = [0u8; 16];
    raw[..6].copy_from_slice(&(now.as_millis() as u64).to_be_bytes()[2..]);
    random.fill(&mut raw[6..]);
    format!("{prefix}_{}", base32(&raw))
}

impl SubscriptionId {
    pub fn generate(now: Timestamp, random: &dyn Random) -> Self {
        SubscriptionId(time_ordered("wh", now, random))
    }
}

impl EventId {
    pub fn generate(now: Timestamp, random: &dyn Random) -> Self {
        EventId(time_ordered("evt", now, random))
    }

    /// The id of an event the service derives from `parts` (the same parts, the same id),
    /// so an announcement made twice is stored once.
    pub fn derived(parts: &[&str]) -> Self {
        let mut h = Sha256::new();
        for part in parts {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        EventId(format!("evt_{}", base32(&h.finalize()[..16])))
    }
}

impl ApiKeyId {
    pub fn generate(now: Timestamp, random: &dyn Random) -> Self {
        ApiKeyId(time_ordered("key", now, random))
    }
}

impl DeliveryId {
    /// The delivery id of an (event, subscription) pair: `msg_` and 26 base32 characters,
    /// of which the first 48 bits are the event's receipt millisecond (`received_at`, the
    /// stored event's) and the other 80 a hash of account, event and subscription.
    /// Deterministic, so a redelivered or re-posted event fans out to the same ids and
    /// conditional writes make fan-out idempotent. It is also the `webhook-id` header, the
    /// same on every attempt. The time is what a store finds the deliveries of one request
    /// by ([`DeliveryId::receipt_ms`]): a first-try success may be kept only in a record
    /// shared by that request's deliveries, with no item of its own.
    pub fn of(
        account: &AccountId,
        event: &EventId,
        received_at: Timestamp,
        subscription: &SubscriptionId,
    ) -> Self {
        let hash = Self::hash(account, event, subscription);
        let mut raw = [0u8; 16];
        raw[..6].copy_from_slice(&(received_at.as_millis().max(0) as u64).to_be_bytes()[2..]);
        raw[6..].copy_from_slice(&hash[..10]);
        DeliveryId(format!("msg_{}", base32(&raw)))
    }

    /// The id the pair had before ids began with their event's receipt time: all hash.
    /// Deliveries made before that version keep it for their retention; deliver's recheck
    /// of a re-posted event looks for them under it (see `deliver::still_to_send`).
    pub fn without_receipt_time(
        account: &AccountId,
        event: &EventId,
        subscription: &SubscriptionId,
    ) -> Self {
        DeliveryId(format!(
            "msg_{}",
            base32(&Self::hash(account, event, subscription)[..16])
        ))
    }

    fn hash(account: &AccountId, event: &EventId, subscription: &SubscriptionId) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [account.as_str(), event.as_str(), subscription.as_str()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    /// The receipt millisecond an id made by [`DeliveryId::of`] begins with. Any other id
    /// of the same form (one without its receipt time, made before) reads as some
    /// millisecond too, where a store finds nothing of it: `None` only for another form.
    pub fn receipt_ms(&self) -> Option<i64> {
        let digits = self.0.strip_prefix("msg_").filter(|d| d.len() == 26)?;
        let mut bits: u64 = 0;
        for c in digits.bytes().take(10) {
            let value = ALPHABET.iter().position(|a| *a == c)?;
            bits = (bits << 5) | value as u64;
        }
        // 10 characters are 50 bits: the first 48 are the time.
        Some((bits >> 2) as i64)
    }
}

/// An opaque token: `prefix` + `len` random bytes in base32.
pub fn token_string(prefix: &str, len: usize, random: &dyn Random) -> String {
    let mut bytes = vec![0u8; len];
    random.fill(&mut bytes);
    format!("{prefix}{}", base32(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::tests::Counter;

    #[test]
    fn time_ordered_ids_sort_by_time() {
        let random = Counter::default();
        let a = time_ordered("evt", Timestamp::from_millis(1_700_000_000_000), &random);
        let b = time_ordered("evt", Timestamp::from_millis(1_700_000_000_001), &random);
        assert!(a < b);
        assert_eq!(a.len(), 4 + 26);
        assert!(EventId::parse(a).is_ok());
    }

    fn ids(a: &str, e: &str, s: &str) -> (AccountId, EventId, SubscriptionId) {
        (
            AccountId::parse(a).unwrap(),
            EventId::parse(e).unwrap(),
            SubscriptionId::parse(s).unwrap(),
        )
    }

    #[test]
    fn delivery_ids_are_deterministic_and_unambiguous() {
        let at = Timestamp::from_millis(1_764_547_200_123);
        let (a, e, s) = ids("a", "e", "s");
        assert_eq!(
            DeliveryId::of(&a, &e, at, &s),
            DeliveryId::of(&a, &e, at, &s)
        );
        let (a1, e1, s1) = ids("ab", "c", "s");
        let (a2, e2, s2) = ids("a", "bc", "s");
        assert_ne!(
            DeliveryId::of(&a1, &e1, at, &s1),
            DeliveryId::of(&a2, &e2, at, &s2)
        );
        assert_ne!(
            DeliveryId::without_receipt_time(&a1, &e1, &s1),
            DeliveryId::without_receipt_time(&a2, &e2, &s2)
        );
    }

    #[test]
    fn a_delivery_id_says_its_events_receipt_time_and_keeps_the_old_length() {
        let (a, e, s) = ids("acct_1", "evt_1", "wh_1");
        for ms in [0, 1, 1_764_547_200_123, (1 << 48) - 1] {
            let id = DeliveryId::of(&a, &e, Timestamp::from_millis(ms), &s);
            assert_eq!(id.receipt_ms(), Some(ms), "{id}");
            assert_eq!(id.as_str().len(), 4 + 26);
            assert!(DeliveryId::parse(id.as_str()).is_ok());
        }
        let old = DeliveryId::without_receipt_time(&a, &e, &s);
        assert_eq!(old.as_str().len(), 4 + 26);
        // The hash part is the old id's first 80 bits: the same pair, whatever the time.
        let new = DeliveryId::of(&a, &e, Timestamp::from_millis(5), &s);
        assert_ne!(new, old);
        // Sorted by the event's receipt.
        let later = DeliveryId::of(&a, &e, Timestamp::from_millis(6), &s);
        assert!(new < later);
        assert_eq!(DeliveryId::parse("msg_1").unwrap().receipt_ms(), None);
        assert_eq!(DeliveryId::parse("other").unwrap().receipt_ms(), None);
    }

    #[test]
    fn the_one_id_rule() {
        for good in ["a", "acct_1", "A-b.c:d_9", &"x".repeat(MAX_ID_CHARS)] {
            assert!(AccountId::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a/b", "é", "a\n", &"x".repeat(MAX_ID_CHARS + 1)] {
            assert_eq!(AccountId::parse(bad), Err(InvalidId), "{bad:?}");
        }
    }

    #[test]
    fn ids_read_and_write_as_plain_strings_and_refuse_bad_ones() {
        let id: DeliveryId = serde_json::from_str("\"msg_1\"").unwrap();
        assert_eq!(id, "msg_1");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"msg_1\"");
        assert!(serde_json::from_str::<DeliveryId>("\"a b\"").is_err());
    }
}
