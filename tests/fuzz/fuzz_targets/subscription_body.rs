//! Structured management bodies (`arbitrary`): a subscription's URL, filters, headers,
//! credentials, retry settings and secret, checked as the create and update routes check
//! them. No rule may panic; every violation points into the body; a masked value sent back
//! keeps what is stored; and whatever is sealed at rest opens to itself.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

use domain::random::Random;
use domain::sealing::Sealer;
use domain::subscription::{
    check_auth, check_event_types, check_headers, check_retry, check_secret, check_url,
    unmask_headers, ClientAuthMethod, EndpointAuth, UrlPolicy, MASKED,
};

#[derive(Arbitrary, Debug)]
enum Auth {
    ApiKey { header: String, value: String },
    Basic { username: String, password: String },
    Bearer { token: String },
    OAuth2 {
        token_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
        audience: Option<String>,
        post: bool,
    },
    Jwt { audience: Option<String> },
}

impl Auth {
    fn domain(self) -> EndpointAuth {
        match self {
            Auth::ApiKey { header, value } => EndpointAuth::ApiKey { header, value },
            Auth::Basic { username, password } => EndpointAuth::Basic { username, password },
            Auth::Bearer { token } => EndpointAuth::Bearer { token },
            Auth::OAuth2 {
                token_url,
                client_id,
                client_secret,
                scope,
                audience,
                post,
            } => EndpointAuth::OAuth2ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
                audience,
                client_auth: if post {
                    ClientAuthMethod::ClientSecretPost
                } else {
                    ClientAuthMethod::ClientSecretBasic
                },
            },
            Auth::Jwt { audience } => EndpointAuth::Jwt { audience },
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Body {
    url: String,
    allow_http: bool,
    event_types: Vec<String>,
    headers: BTreeMap<String, String>,
    auth: Option<Auth>,
    /// A stored credential the update's may refer to by sending `********`.
    stored_auth: Option<Auth>,
    max_attempts: Option<u32>,
    retry_schedule: Option<Vec<u32>>,
    secret: String,
    /// Which headers are sent back masked.
    masked: Vec<bool>,
}

/// Bytes derived from the fuzzer's own input, so a run is reproducible.
struct Fixed(std::sync::atomic::AtomicU8);

impl Random for Fixed {
    fn fill(&self, buf: &mut [u8]) {
        use std::sync::atomic::Ordering;
        for b in buf {
            *b = self.0.fetch_add(37, Ordering::Relaxed);
        }
    }
}

fuzz_target!(|body: Body| {
    let mut out = Vec::new();
    check_url(
        &body.url,
        UrlPolicy {
            allow_http: body.allow_http,
        },
        &mut out,
    );
    check_event_types(&body.event_types, &mut out);
    check_headers(&body.headers, &mut out);
    if let Some(auth) = body.auth {
        let auth = auth.domain();
        check_auth(
            &auth,
            UrlPolicy {
                allow_http: body.allow_http,
            },
            &mut out,
        );
        // The token request of any credentials is well formed: a form body, no header
        // that could split.
        if let Some(request) = domain::oauth::token_request(&auth) {
            assert!(request.body.starts_with("grant_type=client_credentials"));
            for (_, value) in &request.headers {
                assert!(value.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
            }
        }
        let stored = body.stored_auth.map(Auth::domain);
        let kept = auth.clone().unmasked(stored.as_ref());
        // A value other than the mask is taken as sent.
        let masked_anything = auth.secret().is_some_and(|(_, v)| v == MASKED);
        if !masked_anything {
            assert_eq!(kept, auth);
        }
    }
    check_retry(body.max_attempts, body.retry_schedule.as_deref(), &mut out);
    check_secret(&body.secret, &mut out);
    for v in &out {
        assert!(v.pointer.starts_with('/'), "{v:?}");
        assert!(!v.message.is_empty());
    }

    // Headers sent back masked keep the stored values; others are taken as sent.
    let sent: BTreeMap<String, String> = body
        .headers
        .iter()
        .zip(body.masked.iter().chain(std::iter::repeat(&false)))
        .map(|((k, v), masked)| {
            (
                k.clone(),
                if *masked {
                    MASKED.to_string()
                } else {
                    v.clone()
                },
            )
        })
        .collect();
    let kept = unmask_headers(sent.clone(), &body.headers);
    for (name, value) in &kept {
        if sent[name] != MASKED {
            assert_eq!(value, &sent[name]);
        } else {
            // The stored value of a header of that name, in any case.
            assert!(body
                .headers
                .iter()
                .any(|(old, v)| old.eq_ignore_ascii_case(name) && v == value));
        }
    }

    // Sealing at rest: every value opens to itself, in its own place only.
    let random = Fixed(std::sync::atomic::AtomicU8::new(body.url.len() as u8));
    let sealer = Sealer::new(&[3u8; 32]);
    for value in [&body.url, &body.secret] {
        let sealed = sealer.seal(value, "acct/wh/secret", &random);
        assert_eq!(
            sealer.open(&sealed, "acct/wh/secret").as_deref(),
            Ok(value.as_str())
        );
        if !value.is_empty() {
            assert!(sealer.open(&sealed, "acct/wh/auth").is_err());
        }
    }
});
