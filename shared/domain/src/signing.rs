//! Standard Webhooks signatures: `v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`,
//! keyed by the base64-decoded part of a `whsec_` secret.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::random::Random;

const PREFIX: &str = "whsec_";

pub fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix(PREFIX)?).ok()
}

pub fn generate_secret(random: &dyn Random) -> String {
    let mut key = [0u8; 32];
    random.fill(&mut key);
    format!("{PREFIX}{}", STANDARD.encode(key))
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

/// One `v1,<base64>` signature.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = decode_secret(secret)?;
    let tag = mac(&key, msg_id, timestamp, body).finalize().into_bytes();
    Some(format!("v1,{}", STANDARD.encode(tag)))
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
    let matches = header.split(' ').any(|sig| {
        sig.strip_prefix("v1,")
            .and_then(|b64| STANDARD.decode(b64).ok())
            .is_some_and(|tag| {
                mac(&key, msg_id, timestamp, body)
                    .verify_slice(&tag)
                    .is_ok()
            })
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
}
