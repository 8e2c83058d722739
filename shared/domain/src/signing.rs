//! Standard Webhooks signatures of `{id}.{timestamp}.{body}`: `v1,` + base64 HMAC-SHA256
//! keyed by the base64-decoded part of a `whsec_` secret, or (asymmetric) `v1a,` + base64
//! Ed25519 signature by the key whose 32-byte seed a `whsk_` secret holds, verified with
//! its `whpk_` public key.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::random::Random;

const PREFIX: &str = "whsec_";
const ED25519_SECRET_PREFIX: &str = "whsk_";
const ED25519_PUBLIC_PREFIX: &str = "whpk_";

pub fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix(PREFIX)?).ok()
}

pub fn generate_secret(random: &dyn Random) -> String {
    let mut key = [0u8; 32];
    random.fill(&mut key);
    format!("{PREFIX}{}", STANDARD.encode(key))
}

/// A new Ed25519 signing key, as `whsk_<base64 of its 32-byte seed>`.
pub fn generate_ed25519_secret(random: &dyn Random) -> String {
    let mut seed = [0u8; 32];
    random.fill(&mut seed);
    format!("{ED25519_SECRET_PREFIX}{}", STANDARD.encode(seed))
}

fn ed25519_key(secret: &str) -> Option<ed25519_dalek::SigningKey> {
    let seed: [u8; 32] = STANDARD
        .decode(secret.strip_prefix(ED25519_SECRET_PREFIX)?)
        .ok()?
        .try_into()
        .ok()?;
    Some(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// The public key of a `whsk_` secret, as `whpk_<base64>`; `None` for any other secret.
pub fn public_key(secret: &str) -> Option<String> {
    let key = ed25519_key(secret)?;
    Some(format!(
        "{ED25519_PUBLIC_PREFIX}{}",
        STANDARD.encode(key.verifying_key().as_bytes())
    ))
}

/// Whether `secret` is one this module signs with (an HMAC or an Ed25519 secret).
pub fn is_signing_secret(secret: &str) -> bool {
    decode_secret(secret).is_some() || ed25519_key(secret).is_some()
}

/// The signed content, `{id}.{timestamp}.{body}`, in one piece (Ed25519 signs a slice).
fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let ts = timestamp.to_string();
    let mut content = Vec::with_capacity(msg_id.len() + ts.len() + body.len() + 2);
    content.extend_from_slice(msg_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(ts.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

fn mac(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// One signature: `v1,<base64>` with a `whsec_` secret, `v1a,<base64>` with a `whsk_` one.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    if let Some(key) = decode_secret(secret) {
        let tag = mac(&key, msg_id, timestamp, body).finalize().into_bytes();
        return Some(format!("v1,{}", STANDARD.encode(tag)));
    }
    use ed25519_dalek::Signer;
    let key = ed25519_key(secret)?;
    let signature = key.sign(&signed_content(msg_id, timestamp, body));
    Some(format!("v1a,{}", STANDARD.encode(signature.to_bytes())))
}

/// The `webhook-signature` header value: one signature per secret, space-separated.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a str>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .into_iter()
        .filter_map(|s| sign(s, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the secret is not a whsec_ secret")]
    BadSecret,
    #[error("the timestamp is outside the tolerance")]
    TimestampOutOfTolerance,
    #[error("no signature matches")]
    NoMatch,
}

/// Whether any signature of the header's space-separated list with this version prefix
/// (`v1,`, `v1a,`) decodes from base64 and passes `check`.
fn any_listed(header: &str, version: &str, check: impl Fn(&[u8]) -> bool) -> bool {
    header
        .split(' ')
        .filter_map(|sig| sig.strip_prefix(version))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .any(|bytes| check(&bytes))
}

/// Verifies a `webhook-signature` header as a receiver would: any listed `v1` signature
/// that matches (compared in constant time) within `tolerance_secs` of `now_secs`.
pub fn verify(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let key = decode_secret(secret).ok_or(VerifyError::BadSecret)?;
    if (now_secs - timestamp).abs() > tolerance_secs {
        return Err(VerifyError::TimestampOutOfTolerance);
    }
    let matches = any_listed(header, "v1,", |tag| {
        mac(&key, msg_id, timestamp, body).verify_slice(tag).is_ok()
    });
    matches.then_some(()).ok_or(VerifyError::NoMatch)
}

/// Verifies a `webhook-signature` header with a `whpk_` public key: any listed `v1a`
/// signature that verifies, within `tolerance_secs` of `now_secs`.
pub fn verify_ed25519(
    public_key: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let bytes: [u8; 32] = public_key
        .strip_prefix(ED25519_PUBLIC_PREFIX)
        .and_then(|b64| STANDARD.decode(b64).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or(VerifyError::BadSecret)?;
    let key =
        ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| VerifyError::BadSecret)?;
    if (now_secs - timestamp).abs() > tolerance_secs {
        return Err(VerifyError::TimestampOutOfTolerance);
    }
    let content = signed_content(msg_id, timestamp, body);
    let matches = any_listed(header, "v1a,", |bytes| {
        ed25519_dalek::Signature::from_slice(bytes)
            .is_ok_and(|signature| key.verify_strict(&content, &signature).is_ok())
    });
    matches.then_some(()).ok_or(VerifyError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_published_standard_webhooks_vector() {
        assert_eq!(sign(SECRET, ID, TS, BODY).unwrap(), EXPECTED);
        assert_eq!(verify(SECRET, ID, TS, BODY, EXPECTED, TS, 300), Ok(()));
    }

    #[test]
    fn several_secrets_give_several_signatures_and_each_verifies() {
        let other = generate_secret(&crate::random::tests::Counter::default());
        let header = signature_header([other.as_str(), SECRET], ID, TS, BODY);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], EXPECTED);
        assert_eq!(verify(SECRET, ID, TS, BODY, &header, TS, 300), Ok(()));
        assert_eq!(verify(&other, ID, TS, BODY, &header, TS, 300), Ok(()));
    }

    #[test]
    fn tampering_and_stale_timestamps_fail() {
        assert_eq!(
            verify(SECRET, ID, TS, b"{}", EXPECTED, TS, 300),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(SECRET, ID, TS, BODY, EXPECTED, TS + 301, 300),
            Err(VerifyError::TimestampOutOfTolerance)
        );
        assert_eq!(
            verify("nope", ID, TS, BODY, EXPECTED, TS, 300),
            Err(VerifyError::BadSecret)
        );
    }

    #[test]
    fn generated_secrets_decode_to_32_bytes() {
        assert_eq!(
            decode_secret(&generate_secret(&crate::random::tests::Counter::default()))
                .unwrap()
                .len(),
            32
        );
    }

    /// RFC 8032, section 7.1, TEST 2: the seed, public key and signature of a one-byte
    /// message, checked through the `whsk_`/`whpk_` forms.
    #[test]
    fn ed25519_keys_and_signatures_match_rfc_8032() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let seed = hex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb");
        let public = hex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c");
        let expected = hex(concat!(
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da",
            "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        ));
        let secret = format!("whsk_{}", STANDARD.encode(&seed));
        assert_eq!(
            public_key(&secret).unwrap(),
            format!("whpk_{}", STANDARD.encode(&public))
        );
        use ed25519_dalek::Signer;
        let key = ed25519_key(&secret).unwrap();
        assert_eq!(key.sign(&[0x72]).to_bytes().to_vec(), expected);
    }

    #[test]
    fn an_ed25519_secret_signs_v1a_and_its_public_key_verifies_it() {
        let secret = generate_ed25519_secret(&crate::random::tests::Counter::default());
        let public = public_key(&secret).unwrap();
        let header = sign(&secret, ID, TS, BODY).unwrap();
        assert!(header.starts_with("v1a,"), "{header}");
        assert_eq!(
            verify_ed25519(&public, ID, TS, BODY, &header, TS, 300),
            Ok(())
        );
        // Beside an HMAC signature of a secret in its overlap, in either order.
        let both = signature_header([SECRET, secret.as_str()], ID, TS, BODY);
        assert_eq!(
            verify_ed25519(&public, ID, TS, BODY, &both, TS, 300),
            Ok(())
        );
        assert_eq!(
            verify_ed25519(&public, ID, TS, b"{}", &header, TS, 300),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify_ed25519(&public, ID, TS, BODY, &header, TS + 301, 300),
            Err(VerifyError::TimestampOutOfTolerance)
        );
        // The HMAC verifier never takes an Ed25519 signature, nor the reverse.
        assert_eq!(
            verify(SECRET, ID, TS, BODY, &header, TS, 300),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(public_key(SECRET), None);
        assert!(is_signing_secret(&secret) && is_signing_secret(SECRET));
        assert!(!is_signing_secret("whsk_short"));
    }
}
