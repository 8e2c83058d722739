//! Arbitrary `webhook-signature` headers, secrets and bodies: verification must never panic
//! and must accept only a header that carries the right signature; a header we sign must
//! always verify, alone or among arbitrary other entries.
#![no_main]

use domain::signing::{sign, verify};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let header = parts.next().unwrap_or("");
    let secret = parts.next().unwrap_or(SECRET);
    let body = parts.next().unwrap_or("").as_bytes();
    let ts = 1_614_265_330;

    // Whatever comes in, no panic.
    let _ = verify(secret, "msg_fuzz", ts, body, header, ts, 300);

    // Our own signature verifies, even hidden among garbage entries.
    let good = sign(SECRET, "msg_fuzz", ts, body).expect("the test secret is valid");
    let mixed = format!("{header} {good}");
    assert!(verify(SECRET, "msg_fuzz", ts, body, &mixed, ts, 300).is_ok());
    // A header without it does not, unless the garbage happens to contain it.
    if !header.split(' ').any(|h| h == good) {
        assert!(verify(SECRET, "msg_fuzz", ts, body, header, ts, 300).is_err());
    }
});
