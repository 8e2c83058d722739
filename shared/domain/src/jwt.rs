//! JWT per delivery (`"auth": {"type": "jwt"}`): a short-lived ES256 token that the receiver
//! verifies with the service's public keys, published as a JWKS. No shared secret: the
//! receiver holds nothing that could forge a delivery.
//!
//! The service's keys form a ring, rotated by the rules below so that a receiver that caches
//! the JWKS never meets an unknown key: a new key is published a day before it signs, and
//! a retired key stays published a day after its successor took over (far longer than any
//! token it signed lives).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde::{Deserialize, Serialize};

use super::random::Random;
use super::time::Timestamp;

/// How long a token is valid (`exp - iat`).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// How long a key signs before the next one takes over.
pub const ROTATE_EVERY: Duration = Duration::from_secs(30 * 86_400);
/// How long before it signs a new key is in the JWKS.
pub const PUBLISH_AHEAD: Duration = Duration::from_secs(86_400);
/// How long a retired key stays in the JWKS once its successor signs.
pub const KEEP_AFTER: Duration = Duration::from_secs(86_400);

/// One key of the ring. `private_key` is the P-256 scalar (base64url); sealed at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtKey {
    pub kid: String,
    pub private_key: String,
    /// The public point's coordinates (base64url), as the JWKS shows them.
    pub x: String,
    pub y: String,
    pub created_at: Timestamp,
    /// When it starts signing.
    pub signs_from: Timestamp,
}

/// The service's signing keys, oldest first. `version` is bumped by every write, so a
/// rotation decided on a stale read is refused and decided again.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyRing {
    pub keys: Vec<JwtKey>,
    pub version: u64,
}

impl JwtKey {
    /// A new key, from 32 bytes of `random` (drawn again in the vanishing case that they
    /// are no valid scalar).
    pub fn generate(random: &dyn Random, now: Timestamp, signs_from: Timestamp) -> JwtKey {
        let key = loop {
            let mut bytes = [0u8; 32];
            random.fill(&mut bytes);
            if let Ok(key) = SigningKey::from_slice(&bytes) {
                break key;
            }
        };
        let point = key.verifying_key().to_sec1_point(false);
        let uncompressed = point.as_bytes();
        let (x, y) = uncompressed[1..].split_at(32);
        let mut kid = [0u8; 12];
        random.fill(&mut kid);
        JwtKey {
            kid: URL_SAFE_NO_PAD.encode(kid),
            private_key: URL_SAFE_NO_PAD.encode(key.to_bytes()),
            x: URL_SAFE_NO_PAD.encode(x),
            y: URL_SAFE_NO_PAD.encode(y),
            created_at: now,
            signs_from,
        }
    }

    fn signing_key(&self) -> Option<SigningKey> {
        let bytes = URL_SAFE_NO_PAD.decode(&self.private_key).ok()?;
        SigningKey::from_slice(&bytes).ok()
    }

    /// The public half as a JWK (RFC 7517/7518).
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": self.x, "y": self.y,
            "kid": self.kid, "use": "sig", "alg": "ES256",
        })
    }
}

impl KeyRing {
    /// Whether key `i` is still published at `now`: until its successor has signed for
    /// `KEEP_AFTER`.
    fn published(&self, i: usize, now: Timestamp) -> bool {
        self.keys
            .get(i + 1)
            .is_none_or(|next| now < next.signs_from + KEEP_AFTER)
    }

    /// The key that signs at `now`: the newest whose time has come.
    pub fn signing(&self, now: Timestamp) -> Option<&JwtKey> {
        self.keys.iter().rev().find(|k| k.signs_from <= now)
    }

    /// The JWKS document: every published key.
    pub fn jwks(&self, now: Timestamp) -> serde_json::Value {
        let keys: Vec<_> = (0..self.keys.len())
            .filter(|&i| self.published(i, now))
            .map(|i| self.keys[i].jwk())
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Whether `rotated` would change the ring at `now`: checked on every signing, so it
    /// reads the ring without copying it.
    pub fn rotation_due(&self, now: Timestamp) -> bool {
        let next_due = self
            .keys
            .last()
            .is_none_or(|newest| newest.signs_from + ROTATE_EVERY <= now + PUBLISH_AHEAD);
        next_due || (0..self.keys.len()).any(|i| !self.published(i, now))
    }

    /// The ring as it should be at `now`, when that differs from this one: a first key
    /// (signing at once: nobody can have cached an empty set), the next key a day ahead of
    /// its turn, retired keys dropped.
    pub fn rotated(&self, now: Timestamp, random: &dyn Random) -> Option<KeyRing> {
        if !self.rotation_due(now) {
            return None;
        }
        let mut next = self.clone();
        match next.keys.last() {
            None => next.keys.push(JwtKey::generate(random, now, now)),
            Some(newest) if newest.signs_from + ROTATE_EVERY <= now + PUBLISH_AHEAD => {
                let turn = (newest.signs_from + ROTATE_EVERY).max(now + PUBLISH_AHEAD);
                next.keys.push(JwtKey::generate(random, now, turn));
            }
            Some(_) => {}
        }
        let kept: Vec<JwtKey> = (0..next.keys.len())
            .filter(|&i| next.published(i, now))
            .map(|i| next.keys[i].clone())
            .collect();
        next.keys = kept;
        (next.keys != self.keys).then(|| KeyRing {
            keys: next.keys,
            version: self.version + 1,
        })
    }
}

/// What a delivery's token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The service (its public URL).
    pub iss: String,
    /// The subscription id.
    pub sub: String,
    /// The subscription's audience, or its endpoint's URL.
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    /// Unique to this token (RFC 7519): a receiver can refuse one it has seen, while every
    /// retry of a delivery carries a token of its own.
    pub jti: String,
    /// The delivery's `webhook-id`, the same on every retry: what a receiver deduplicates by.
    pub webhook_id: String,
}

impl Claims {
    /// The claims of one request: `jti` drawn from `random`.
    pub fn new(
        iss: &str,
        sub: &str,
        aud: &str,
        webhook_id: &str,
        now: Timestamp,
        random: &dyn Random,
    ) -> Claims {
        let iat = now.as_secs();
        let mut jti = [0u8; 16];
        random.fill(&mut jti);
        Claims {
            iss: iss.to_string(),
            sub: sub.to_string(),
            aud: aud.to_string(),
            iat,
            exp: iat + TOKEN_LIFETIME.as_secs() as i64,
            jti: URL_SAFE_NO_PAD.encode(jti),
            webhook_id: webhook_id.to_string(),
        }
    }
}

/// The signed token (`header.claims.signature`, RFC 7515 compact form), or `None` when the
/// key's stored scalar is not a key (a damaged ring).
pub fn token(key: &JwtKey, claims: &Claims) -> Option<String> {
    let signer = key.signing_key()?;
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": key.kid});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise")),
    );
    // ES256 (RFC 7518 §3.4): the fixed-size r‖s form, not DER.
    let signature: Signature = signer.sign(signing_input.as_bytes());
    Some(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::tests::Counter;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::VerifyingKey;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(days: u64) -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000) + DAY * days as u32
    }

    #[test]
    fn a_token_verifies_with_the_published_key_and_says_what_it_must() {
        let random = Counter::default();
        let ring = KeyRing::default().rotated(at(0), &random).unwrap();
        let key = ring.signing(at(0)).unwrap();
        let claims_of = || {
            Claims::new(
                "https://hooks.example.com",
                "wh_1",
                "https://crm",
                "msg_1",
                at(0),
                &random,
            )
        };
        let claims = claims_of();
        assert_eq!(claims.exp - claims.iat, 300);
        let again = claims_of();
        assert_ne!(
            claims.jti, again.jti,
            "a retry's token has a jti of its own"
        );
        assert_eq!(claims.webhook_id, again.webhook_id);
        let jwt = token(key, &claims).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], key.kid.as_str());
        let read: Claims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(read, claims);
        // Verified from the JWKS's coordinates alone.
        let jwks = ring.jwks(at(0));
        let jwk = &jwks["keys"][0];
        let mut point = vec![4u8];
        point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
        let public = VerifyingKey::from_sec1_bytes(&point).unwrap();
        let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        assert!(public.verify(input.as_bytes(), &signature).is_ok());
        assert!(public.verify(b"another input", &signature).is_err());
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert!(jwk.get("d").is_none(), "the private key is published");
    }

    #[test]
    fn keys_rotate_published_a_day_ahead_and_kept_a_day_after() {
        let random = Counter::default();
        assert!(KeyRing::default().rotation_due(at(0)));
        let first = KeyRing::default().rotated(at(0), &random).unwrap();
        assert_eq!((first.keys.len(), first.version), (1, 1));
        assert!(!first.rotation_due(at(28)) && first.rotation_due(at(29)));
        // Nothing to do for 29 days.
        assert_eq!(first.rotated(at(28), &random), None);
        // A day before its turn the next key is published, but does not sign yet.
        let second = first.rotated(at(29), &random).unwrap();
        assert_eq!(second.keys.len(), 2);
        assert_eq!(second.keys[1].signs_from, at(30));
        assert_eq!(second.signing(at(29)).unwrap().kid, first.keys[0].kid);
        assert_eq!(second.jwks(at(29))["keys"].as_array().unwrap().len(), 2);
        assert_eq!(second.rotated(at(29) + DAY / 2, &random), None);
        // Its turn: it signs; the old key is still published for a day.
        assert_eq!(second.signing(at(30)).unwrap().kid, second.keys[1].kid);
        assert_eq!(second.rotated(at(30), &random), None);
        let third = second.rotated(at(31), &random).unwrap();
        assert_eq!(third.keys, second.keys[1..]);
        assert_eq!(third.version, 3);
        // A ring nobody touched for long: the next key still gets its day of notice.
        let late = first.rotated(at(90), &random).unwrap();
        assert_eq!(late.keys.last().unwrap().signs_from, at(91));
        assert_eq!(late.signing(at(90)).unwrap().kid, first.keys[0].kid);
    }

    #[test]
    fn a_damaged_key_signs_nothing() {
        let random = Counter::default();
        let mut key = JwtKey::generate(&random, at(0), at(0));
        key.private_key = "AAAA".into();
        let claims = Claims::new("i", "s", "a", "j", at(0), &random);
        assert_eq!(token(&key, &claims), None);
    }
}
