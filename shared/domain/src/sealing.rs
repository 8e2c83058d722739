//! Secrets at rest. A subscription's signing secrets, endpoint credentials and custom
//! header values are sealed before they reach a store and opened when read back, so a copy
//! of the database file, a table export or a backup reveals none of them.
//!
//! XChaCha20-Poly1305 (an authenticated cipher: a changed byte fails to open instead of
//! opening to something else) with a random 192-bit nonce per value, so one key can seal
//! any number of values without a nonce counter to keep. Each value is bound to its
//! account, subscription and field as associated data: a sealed value copied into another
//! row or field does not open there.
//!
//! Stored form: `sealed:v1:` + base64(nonce ‖ ciphertext ‖ tag). A value without the prefix
//! was written before sealing existed; it reads as it is and is sealed at its next write.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::random::Random;
use super::subscription::{EndpointAuth, Subscription};

const PREFIX: &str = "sealed:v1:";
const NONCE_BYTES: usize = 24;
/// Bytes of a sealing key.
pub const KEY_BYTES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("a sealing key is 32 bytes, written in base64")]
    BadKey,
    /// The value was changed, belongs elsewhere, or was sealed with another key.
    #[error("a sealed value does not open with this key in this place")]
    DoesNotOpen,
}

/// Seals and opens values with one key. Its `Debug` never shows the key.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub fn new(key: &[u8; KEY_BYTES]) -> Sealer {
        Sealer {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// A key as configured: 32 bytes in standard base64.
    pub fn from_base64(text: &str) -> Result<Sealer, SealError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| SealError::BadKey)?;
        let key: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| SealError::BadKey)?;
        Ok(Sealer::new(&key))
    }

    /// A new key, in the form `from_base64` reads.
    pub fn generate_key(random: &dyn Random) -> String {
        let mut key = [0u8; KEY_BYTES];
        random.fill(&mut key);
        STANDARD.encode(key)
    }

    /// `value` sealed for the place `context` names.
    pub fn seal(&self, value: &str, context: &str, random: &dyn Random) -> String {
        if value.is_empty() {
            // Nothing to hide; an empty value stays recognisable as such.
            return String::new();
        }
        let mut nonce = [0u8; NONCE_BYTES];
        random.fill(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("sealing a value of bounded size cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{PREFIX}{}", STANDARD.encode(bytes))
    }

    /// The value `stored` holds: opened if sealed, as it is if written before sealing.
    pub fn open(&self, stored: &str, context: &str) -> Result<String, SealError> {
        let Some(encoded) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| SealError::DoesNotOpen)?;
        if bytes.len() < NONCE_BYTES {
            return Err(SealError::DoesNotOpen);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::DoesNotOpen)?;
        String::from_utf8(plain).map_err(|_| SealError::DoesNotOpen)
    }

    /// The subscription as stored: every secret part sealed.
    pub fn seal_subscription(&self, sub: &Subscription, random: &dyn Random) -> Subscription {
        let mut sealed = sub.clone();
        each_secret(&mut sealed, |value, context| {
            *value = self.seal(value, &context, random);
            Ok(())
        })
        .expect("sealing does not fail");
        sealed
    }

    /// The subscription as read: every secret part opened.
    pub fn open_subscription(&self, mut sub: Subscription) -> Result<Subscription, SealError> {
        each_secret(&mut sub, |value, context| {
            *value = self.open(value, &context)?;
            Ok(())
        })?;
        Ok(sub)
    }
}

/// Whether a stored value was sealed (else it was written before sealing and reads as it is).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// Whether any secret part of a stored subscription is sealed: one that holds none opens
/// without a key, so a store whose key is fetched on first need does not fetch it for it.
pub fn holds_sealed(sub: &Subscription) -> bool {
    // Read on every subscription a store returns: a borrowing walk over the same parts as
    // `each_secret`, without its copy and its context strings.
    let auth = sub.auth.as_ref().and_then(|a| a.secret()).map(|(_, v)| v);
    sub.secrets
        .iter()
        .map(|s| &s.secret)
        .chain(auth)
        .chain(sub.headers.values())
        .any(|v| is_sealed(v))
}

/// Calls `f` on every secret part of `sub` with the place it belongs to.
fn each_secret(
    sub: &mut Subscription,
    mut f: impl FnMut(&mut String, String) -> Result<(), SealError>,
) -> Result<(), SealError> {
    let place = format!("{}/{}", sub.account_id, sub.id);
    for s in &mut sub.secrets {
        f(&mut s.secret, format!("{place}/secret"))?;
    }
    if let Some(secret) = sub.auth.as_mut().and_then(EndpointAuth::secret_mut) {
        f(secret, format!("{place}/auth"))?;
    }
    for (name, value) in &mut sub.headers {
        f(
            value,
            format!("{place}/header/{}", name.to_ascii_lowercase()),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::tests::Counter;
    use crate::subscription::SigningSecret;

    fn sealer() -> Sealer {
        Sealer::new(&[7u8; KEY_BYTES])
    }

    fn sub() -> Subscription {
        let mut s: Subscription = serde_json::from_value(serde_json::json!({
            "id": "wh_1", "account_id": "acct", "url": "https://x", "event_types": ["*"],
            "enabled": true, "timeout_seconds": 10, "created_at": 0, "updated_at": 0,
            "secrets": [], "headers": {"X-Tenant-Token": "tenant-token-1"},
            "auth": {"type": "bearer", "token": "bearer-token-1"}
        }))
        .unwrap();
        s.secrets = vec![SigningSecret {
            secret: "whsec_c2lnbmluZy1zZWNyZXQ=".into(),
            expires_at: None,
        }];
        s
    }

    #[test]
    fn a_sealed_subscription_shows_no_secret_and_opens_to_the_same() {
        let random = Counter::default();
        let stored = sealer().seal_subscription(&sub(), &random);
        let text = serde_json::to_string(&stored).unwrap();
        for secret in ["c2lnbmluZy1zZWNyZXQ", "bearer-token-1", "tenant-token-1"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("sealed:v1:"));
        assert_eq!(sealer().open_subscription(stored).unwrap(), sub());
    }

    #[test]
    fn a_value_opens_only_with_its_key_in_its_place_and_unchanged() {
        let random = Counter::default();
        let sealed = sealer().seal("p@ss", "acct/wh_1/auth", &random);
        assert_eq!(sealer().open(&sealed, "acct/wh_1/auth").unwrap(), "p@ss");
        // Another place (a copy into another account's row), another key, a changed byte.
        assert_eq!(
            sealer().open(&sealed, "other/wh_1/auth"),
            Err(SealError::DoesNotOpen)
        );
        let other_key = Sealer::new(&[8u8; KEY_BYTES]);
        assert_eq!(
            other_key.open(&sealed, "acct/wh_1/auth"),
            Err(SealError::DoesNotOpen)
        );
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(
            sealer().open(&tampered, "acct/wh_1/auth"),
            Err(SealError::DoesNotOpen)
        );
        // The same value sealed twice differs (a fresh nonce each time).
        assert_ne!(
            sealer().seal("p@ss", "c", &random),
            sealer().seal("p@ss", "c", &random)
        );
    }

    #[test]
    fn values_written_before_sealing_read_as_they_are() {
        assert_eq!(sealer().open("plain", "c").unwrap(), "plain");
        assert_eq!(sealer().open_subscription(sub()).unwrap(), sub());
    }

    #[test]
    fn a_subscription_holds_sealed_values_when_any_secret_part_is_sealed() {
        let random = Counter::default();
        assert!(!holds_sealed(&sub()));
        assert!(holds_sealed(&sealer().seal_subscription(&sub(), &random)));
        // Each part alone counts: the secret, the credential, a header value.
        let sealed = || sealer().seal("v", "c", &random);
        let mut only_secret = sub();
        only_secret.secrets[0].secret = sealed();
        let mut only_auth = sub();
        only_auth.auth = Some(EndpointAuth::Bearer { token: sealed() });
        let mut only_header = sub();
        only_header.headers.insert("X-Other".into(), sealed());
        for s in [only_secret, only_auth, only_header] {
            assert!(holds_sealed(&s), "{s:?}");
        }
    }

    #[test]
    fn keys_are_32_bytes_of_base64() {
        let key = Sealer::generate_key(&Counter::default());
        assert!(Sealer::from_base64(&key).is_ok());
        assert_eq!(
            Sealer::from_base64("c2hvcnQ=").unwrap_err(),
            SealError::BadKey
        );
        assert_eq!(
            Sealer::from_base64("not base64!").unwrap_err(),
            SealError::BadKey
        );
        assert_eq!(format!("{:?}", sealer()), "Sealer(..)");
    }
}
