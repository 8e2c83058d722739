//! API keys: shown once, stored only as a SHA-256 hash.

use sha2::{Digest, Sha256};

use super::ids::{self, AccountId, ApiKeyId};
use super::random::Random;
use super::time::Timestamp;

/// Who a request authenticates as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Ingests events and manages every account.
    Platform,
    /// Manages only its own account.
    Account(AccountId),
}

impl Principal {
    pub fn can_access(&self, account_id: &str) -> bool {
        match self {
            Principal::Platform => true,
            Principal::Account(own) => own.as_str() == account_id,
        }
    }
}

/// Keys an account may have in use (neither revoked nor expired); one more is refused.
pub const MAX_ACTIVE_KEYS_PER_ACCOUNT: usize = 50;
/// Keys kept per account, revoked and expired ones included, so that an account's listing
/// stays bounded: past it, the oldest keys no longer in use are forgotten to make room.
pub const MAX_KEPT_KEYS_PER_ACCOUNT: usize = 100;
/// `last_used_at` is exact to this much: a key is written at most once per interval, not
/// on every request it authenticates.
pub const LAST_USED_RESOLUTION_MS: i64 = 60_000;
/// Characters of a key shown in listings: `whk_` and 8 of its 52 random characters, enough
/// to tell keys apart and far too few to use one.
pub const DISPLAY_PREFIX_CHARS: usize = 12;

/// An account key as stored: its hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub account_id: AccountId,
    pub key_hash: String,
    /// The key's first characters ([`display_prefix`]); empty for keys created before
    /// prefixes were kept.
    pub prefix: String,
    pub created_at: Timestamp,
    /// When it last authenticated a request, to [`LAST_USED_RESOLUTION_MS`].
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// From then on it is refused.
    pub expires_at: Option<Timestamp>,
}

/// Where a key stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Expired,
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Expired => "expired",
            KeyStatus::Revoked => "revoked",
        }
    }
}

impl ApiKeyRecord {
    /// The record of a new key: only its hash and display prefix are kept.
    pub fn new(
        id: ApiKeyId,
        account_id: AccountId,
        key: &str,
        created_at: Timestamp,
        expires_at: Option<Timestamp>,
    ) -> Self {
        ApiKeyRecord {
            id,
            account_id,
            key_hash: hash_key(key),
            prefix: display_prefix(key),
            created_at,
            last_used_at: None,
            revoked_at: None,
            expires_at,
        }
    }

    /// Revocation wins over expiry: a revoked key says so even once past its expiry.
    pub fn status(&self, now: Timestamp) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|at| now >= at) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }

    /// Whether it may authenticate a request now.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.status(now) == KeyStatus::Active
    }

    /// Whether a use now is worth a write: the stored `last_used_at` is missing or at least
    /// [`LAST_USED_RESOLUTION_MS`] old.
    pub fn use_is_worth_recording(&self, now: Timestamp) -> bool {
        self.last_used_at.is_none_or(|at| {
            now.as_millis().saturating_sub(at.as_millis()) >= LAST_USED_RESOLUTION_MS
        })
    }
}

/// What listings show of a key: its first [`DISPLAY_PREFIX_CHARS`] characters.
pub fn display_prefix(key: &str) -> String {
    key.chars().take(DISPLAY_PREFIX_CHARS).collect()
}

/// Why an account may not have one more key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooManyKeys {
    pub active: usize,
}

/// Makes room for one more key among an account's `keys`: refuses when as many as
/// [`MAX_ACTIVE_KEYS_PER_ACCOUNT`] are active, else names the keys to forget (revoked and
/// expired ones, oldest first) so that at most [`MAX_KEPT_KEYS_PER_ACCOUNT`] are kept with
/// the new one.
pub fn make_room(keys: &[ApiKeyRecord], now: Timestamp) -> Result<Vec<&ApiKeyRecord>, TooManyKeys> {
    let active = keys.iter().filter(|k| k.is_active(now)).count();
    if active >= MAX_ACTIVE_KEYS_PER_ACCOUNT {
        return Err(TooManyKeys { active });
    }
    let excess = (keys.len() + 1).saturating_sub(MAX_KEPT_KEYS_PER_ACCOUNT);
    let mut unused: Vec<&ApiKeyRecord> = keys.iter().filter(|k| !k.is_active(now)).collect();
    unused.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    unused.truncate(excess);
    Ok(unused)
}

/// Newest first: by creation time, then id (the order every store lists keys in).
pub fn newest_first(keys: &mut [ApiKeyRecord]) {
    keys.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
}

pub fn generate_account_key(random: &dyn Random) -> String {
    ids::token_string("whk_", 32, random)
}

pub fn generate_platform_key(random: &dyn Random) -> String {
    ids::token_string("whp_", 32, random)
}

pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two key hashes without leaking where they differ.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::tests::Counter;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn key(n: i64, revoked: bool, expires_at: Option<i64>) -> ApiKeyRecord {
        ApiKeyRecord {
            revoked_at: revoked.then_some(at(n + 1)),
            ..ApiKeyRecord::new(
                ApiKeyId::parse(format!("key_{n:04}")).unwrap(),
                AccountId::parse("acct").unwrap(),
                "whk_x",
                at(n),
                expires_at.map(at),
            )
        }
    }

    #[test]
    fn a_record_keeps_the_hash_and_a_prefix_too_short_to_use() {
        let secret = generate_account_key(&Counter::default());
        let r = ApiKeyRecord::new(
            ApiKeyId::parse("key_1").unwrap(),
            AccountId::parse("acct").unwrap(),
            &secret,
            at(5),
            None,
        );
        assert_eq!(r.key_hash, hash_key(&secret));
        assert_eq!(r.prefix.len(), DISPLAY_PREFIX_CHARS);
        assert!(secret.starts_with(&r.prefix) && secret.len() >= r.prefix.len() + 40);
        assert_eq!(r.status(at(5)), KeyStatus::Active);
    }

    #[test]
    fn a_key_is_refused_once_revoked_or_expired() {
        assert!(key(1, false, None).is_active(at(i64::MAX)));
        let expiring = key(1, false, Some(100));
        assert!(expiring.is_active(at(99)));
        assert_eq!(expiring.status(at(100)), KeyStatus::Expired);
        assert_eq!(key(1, true, Some(100)).status(at(200)), KeyStatus::Revoked);
        assert!(!key(1, true, None).is_active(at(2)));
    }

    #[test]
    fn a_use_is_written_at_most_once_per_resolution() {
        let mut k = key(1, false, None);
        assert!(k.use_is_worth_recording(at(10)));
        k.last_used_at = Some(at(10));
        assert!(!k.use_is_worth_recording(at(10 + LAST_USED_RESOLUTION_MS - 1)));
        assert!(k.use_is_worth_recording(at(10 + LAST_USED_RESOLUTION_MS)));
    }

    #[test]
    fn room_is_refused_at_the_active_cap_and_made_from_the_oldest_unused_keys() {
        let active: Vec<_> = (0..MAX_ACTIVE_KEYS_PER_ACCOUNT as i64)
            .map(|n| key(n, false, None))
            .collect();
        assert_eq!(
            make_room(&active, at(0)),
            Err(TooManyKeys {
                active: MAX_ACTIVE_KEYS_PER_ACCOUNT
            })
        );
        // Expired keys do not count against the cap.
        let mut keys: Vec<_> = (0..MAX_ACTIVE_KEYS_PER_ACCOUNT as i64 - 1)
            .map(|n| key(1000 + n, false, None))
            .collect();
        keys.push(key(999, false, Some(5)));
        assert_eq!(
            make_room(&keys, at(10)).unwrap(),
            Vec::<&ApiKeyRecord>::new()
        );
        // At the cap of kept keys, the oldest unused go first, active ones never.
        let unused = MAX_KEPT_KEYS_PER_ACCOUNT - keys.len();
        keys.extend((0..unused as i64).rev().map(|n| key(n, true, None)));
        let forgotten: Vec<_> = make_room(&keys, at(10))
            .unwrap()
            .iter()
            .map(|k| k.id.clone())
            .collect();
        assert_eq!(forgotten, ["key_0000"]);
    }

    #[test]
    fn newest_first_orders_by_time_then_id() {
        let mut keys = vec![
            key(1, false, None),
            key(3, false, None),
            key(2, false, None),
        ];
        keys[2].created_at = at(3);
        newest_first(&mut keys);
        let ids: Vec<_> = keys.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["key_0003", "key_0002", "key_0001"]);
    }
}
