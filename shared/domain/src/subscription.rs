//! Subscriptions: a customer's endpoint and the events it wants.

use std::collections::BTreeMap;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::catalog;
use super::ids::{AccountId, SubscriptionId};
use super::schema::Violation;
use super::time::Timestamp;

pub const DEFAULT_TIMEOUT_SECONDS: u32 = 10;
pub const MAX_TIMEOUT_SECONDS: u32 = 30;
/// Above this the queue's redrive (the safety net) would fire before our own exhaustion.
pub const MAX_ATTEMPTS_LIMIT: u32 = 30;
/// Every step must fit one SQS visibility change.
pub const MAX_RETRY_STEP_SECONDS: u32 = 12 * 3600;
pub const MAX_URL_CHARS: usize = 2048;
pub const MAX_DESCRIPTION_CHARS: usize = 512;
pub const MAX_HEADERS: usize = 20;
pub const MAX_HEADER_NAME_BYTES: usize = 64;
pub const MAX_HEADER_VALUE_BYTES: usize = 1024;
/// Also the most credentials bytes (`auth` values).
pub const MAX_CREDENTIAL_BYTES: usize = 1024;
/// Filters per subscription: far more than any real selection needs (the catalog names under
/// twenty types), while keeping each event's fan-out matching (subscriptions × filters) small.
pub const MAX_EVENT_TYPES: usize = 100;
pub const MAX_EVENT_TYPE_CHARS: usize = 128;
/// Subscriptions one account may have, unless the deployment sets another number.
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_ACCOUNT: u64 = 100;
/// Secrets that sign at once: the current one and the two before it, while in their overlap.
pub const MAX_ACTIVE_SECRETS: usize = 3;

/// Credentials added to every delivery of a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EndpointAuth {
    ApiKey {
        header: String,
        value: String,
    },
    Basic {
        username: String,
        password: String,
    },
    Bearer {
        token: String,
    },
    /// OAuth 2.0 client credentials (RFC 6749 §4.4): a token fetched from `token_url`
    /// (through the address guard), cached until shortly before it expires, sent as
    /// `Authorization: Bearer`.
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        /// Sent as the `audience` parameter, which Auth0 and others require.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
        /// How the client authenticates at the token endpoint.
        #[serde(default)]
        client_auth: ClientAuthMethod,
    },
    /// A short-lived ES256 JWT per delivery, signed with the service's key (published at
    /// `/v1/.well-known/jwks.json`), sent as `Authorization: Bearer`.
    Jwt {
        /// The `aud` claim; the endpoint's URL when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    },
}

/// How an OAuth client presents its secret to the token endpoint (the names of RFC 7591's
/// `token_endpoint_auth_method`): HTTP Basic, which RFC 6749 says every server supports,
/// or in the form body, which some servers require instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

/// How deliveries are signed (Standard Webhooks): `hmac` with a shared `whsec_` secret
/// (`v1,`), or `ed25519` with a key pair whose private half never leaves the service and
/// whose public half (`whpk_`) the receiver verifies with (`v1a,`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SignatureScheme {
    #[default]
    Hmac,
    Ed25519,
}

impl SignatureScheme {
    /// A new secret of this scheme: a `whsec_` secret, or a `whsk_` private key.
    pub fn generate_secret(self, random: &dyn crate::random::Random) -> String {
        match self {
            SignatureScheme::Hmac => super::signing::generate_secret(random),
            SignatureScheme::Ed25519 => super::signing::generate_ed25519_secret(random),
        }
    }
}

/// What reads show in place of a credential, a signing secret or a custom header's value.
pub const MASKED: &str = "********";

impl EndpointAuth {
    /// The secret part of the credentials (masked on read, sealed at rest), with the JSON
    /// pointer it is sent at; `None` for a JWT, whose key is the service's.
    pub fn secret(&self) -> Option<(&'static str, &String)> {
        match self {
            EndpointAuth::ApiKey { value, .. } => Some(("/auth/value", value)),
            EndpointAuth::Basic { password, .. } => Some(("/auth/password", password)),
            EndpointAuth::Bearer { token } => Some(("/auth/token", token)),
            EndpointAuth::OAuth2ClientCredentials { client_secret, .. } => {
                Some(("/auth/client_secret", client_secret))
            }
            EndpointAuth::Jwt { .. } => None,
        }
    }

    /// `secret`, to change in place (sealing and opening it).
    pub fn secret_mut(&mut self) -> Option<&mut String> {
        match self {
            EndpointAuth::ApiKey { value, .. } => Some(value),
            EndpointAuth::Basic { password, .. } => Some(password),
            EndpointAuth::Bearer { token } => Some(token),
            EndpointAuth::OAuth2ClientCredentials { client_secret, .. } => Some(client_secret),
            EndpointAuth::Jwt { .. } => None,
        }
    }

    /// The credentials of an update, where a secret part sent back exactly as reads show it
    /// (`MASKED`) keeps the stored one: a read-modify-write round trip changes nothing, and
    /// never stores the mask as a password.
    pub fn unmasked(self, stored: Option<&EndpointAuth>) -> EndpointAuth {
        match (self, stored) {
            (
                EndpointAuth::ApiKey { header, value },
                Some(EndpointAuth::ApiKey {
                    header: old_header,
                    value: old,
                }),
            ) if value == MASKED && header.eq_ignore_ascii_case(old_header) => {
                EndpointAuth::ApiKey {
                    header,
                    value: old.clone(),
                }
            }
            (
                EndpointAuth::Basic { username, password },
                Some(EndpointAuth::Basic {
                    username: old_user,
                    password: old,
                }),
            ) if password == MASKED && username == *old_user => EndpointAuth::Basic {
                username,
                password: old.clone(),
            },
            (EndpointAuth::Bearer { token }, Some(EndpointAuth::Bearer { token: old }))
                if token == MASKED =>
            {
                EndpointAuth::Bearer { token: old.clone() }
            }
            // The stored secret stays only for the same client at the same token endpoint:
            // a masked secret sent with another endpoint must not follow it there.
            (
                EndpointAuth::OAuth2ClientCredentials {
                    token_url,
                    client_id,
                    client_secret,
                    scope,
                    audience,
                    client_auth,
                },
                Some(EndpointAuth::OAuth2ClientCredentials {
                    token_url: old_url,
                    client_id: old_id,
                    client_secret: old,
                    ..
                }),
            ) if client_secret == MASKED && token_url == *old_url && client_id == *old_id => {
                EndpointAuth::OAuth2ClientCredentials {
                    token_url,
                    client_id,
                    client_secret: old.clone(),
                    scope,
                    audience,
                    client_auth,
                }
            }
            (auth, _) => auth,
        }
    }
}

/// Custom headers of an update, where a value sent back as `MASKED` keeps the stored value
/// of the header of that name (in any case).
pub fn unmask_headers(
    headers: BTreeMap<String, String>,
    stored: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    headers
        .into_iter()
        .map(|(name, value)| {
            let kept = (value == MASKED)
                .then(|| {
                    stored
                        .iter()
                        .find(|(old, _)| old.eq_ignore_ascii_case(&name))
                        .map(|(_, v)| v.clone())
                })
                .flatten();
            (name, kept.unwrap_or(value))
        })
        .collect()
}

/// A signing secret; a rotated-out secret keeps signing until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningSecret {
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub account_id: AccountId,
    pub url: String,
    #[serde(default)]
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub enabled: bool,
    #[serde(default)]
    pub auth: Option<EndpointAuth>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub retry_schedule: Option<Vec<u32>>,
    pub timeout_seconds: u32,
    #[serde(default)]
    pub rate_limit_per_second: Option<u32>,
    /// The current secret first, then rotated-out ones still in their overlap.
    pub secrets: Vec<SigningSecret>,
    /// How its secrets sign: every secret in `secrets` is of this scheme.
    #[serde(default)]
    pub signature: SignatureScheme,
    /// Why the service disabled it (e.g. the endpoint answered 410 Gone).
    #[serde(default)]
    pub disabled_reason: Option<String>,
    /// When the service disabled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<Timestamp>,
    /// When the first of an unbroken run of failed attempts was made; `None` while the last
    /// attempt succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<Timestamp>,
    /// Failed attempts in a row, counted until the failure threshold is crossed (then it
    /// stops: no write per failed attempt of an endpoint already announced as failing).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_failures: u32,
    /// When `webhook.failing` was sent for the current run of failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_announced_at: Option<Timestamp>,
    /// Bumped by every write, so a write based on a stale read can be refused.
    #[serde(default)]
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Subscription {
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types
            .iter()
            .any(|f| filter_matches(f, event_type))
    }

    /// The public key receivers verify with (`whpk_…`), for an Ed25519 subscription.
    pub fn public_key(&self) -> Option<String> {
        super::signing::public_key(&self.secrets.first()?.secret)
    }

    /// Secrets that sign a delivery made at `now`.
    pub fn active_secrets(&self, now: Timestamp) -> impl Iterator<Item = &str> {
        self.secrets
            .iter()
            .filter(move |s| s.expires_at.is_none_or(|t| t > now))
            .map(|s| s.secret.as_str())
    }

    /// Makes `secret` the current one. The current one keeps signing for `overlap` and
    /// older ones keep their own expiry; expired ones are dropped, and of those still valid
    /// only the newest `MAX_ACTIVE_SECRETS` are kept.
    ///
    /// Going over the cap retires the oldest still-valid secret early rather than refusing
    /// the rotation: rotating is what one does when a secret has leaked, and must work at
    /// once, every time. The secret retired early is one that was replaced twice already
    /// inside its overlap, so the endpoint has had two newer ones to move to.
    pub fn rotate_secret(&mut self, secret: &str, now: Timestamp, overlap: Duration) {
        let mut secrets = vec![SigningSecret {
            secret: secret.to_string(),
            expires_at: None,
        }];
        for (i, old) in self.secrets.iter().enumerate() {
            let expires_at = match old.expires_at {
                None if i == 0 => Some(now + overlap),
                other => other,
            };
            if expires_at.is_some_and(|t| t > now) {
                secrets.push(SigningSecret {
                    secret: old.secret.clone(),
                    expires_at,
                });
            }
        }
        // Newest first, so the oldest go.
        secrets.truncate(MAX_ACTIVE_SECRETS);
        self.secrets = secrets;
        self.updated_at = now;
    }

    /// Stops every secret but the newest from signing, at once: after a rotation made
    /// because a secret leaked, its 24 h overlap need not be waited out. Says how many
    /// stopped.
    pub fn expire_previous_secrets(&mut self, now: Timestamp) -> usize {
        let before = self.secrets.len();
        self.secrets.truncate(1);
        self.updated_at = now;
        before - self.secrets.len()
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// `*` matches everything, `family.*` every type below that prefix, anything else exactly.
pub fn filter_matches(filter: &str, event_type: &str) -> bool {
    if filter == "*" {
        return true;
    }
    match filter.strip_suffix('*') {
        Some(prefix) => prefix.ends_with('.') && event_type.starts_with(prefix),
        None => filter == event_type,
    }
}

/// Which URLs a deployment accepts; the local runner may allow plain http.
#[derive(Debug, Clone, Copy, Default)]
pub struct UrlPolicy {
    pub allow_http: bool,
}

/// A JSON pointer segment: `~` and `/` escaped (RFC 6901).
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Control characters (C0, DEL and C1) in any text sent in a request's headers: they would
/// split or corrupt the header, or be refused by the HTTP client at every attempt.
fn has_control(s: &str, allow_tab: bool) -> bool {
    s.chars()
        .any(|c| c.is_control() && !(allow_tab && c == '\t'))
}

fn violation(pointer: &str, message: impl Into<String>) -> Violation {
    Violation {
        pointer: pointer.into(),
        message: message.into(),
    }
}

pub fn check_url(url: &str, policy: UrlPolicy, out: &mut Vec<Violation>) {
    check_url_at(url, policy, "/url", out)
}

/// `check_url` for a URL at `pointer` (an OAuth token endpoint is held to the same rules).
fn check_url_at(url: &str, policy: UrlPolicy, pointer: &str, out: &mut Vec<Violation>) {
    if url.len() > MAX_URL_CHARS {
        out.push(violation(pointer, "must be at most 2048 characters"));
        return;
    }
    match url::Url::parse(url) {
        Err(e) => out.push(violation(pointer, format!("is not a valid URL: {e}"))),
        Ok(u) => {
            let scheme_ok = u.scheme() == "https" || (policy.allow_http && u.scheme() == "http");
            if !scheme_ok {
                out.push(violation(
                    pointer,
                    if policy.allow_http {
                        "must use https or http"
                    } else {
                        "must use https"
                    },
                ));
            }
            if u.host_str().is_none_or(str::is_empty) {
                out.push(violation(pointer, "must name a host"));
            }
            if !u.username().is_empty() || u.password().is_some() {
                out.push(violation(
                    pointer,
                    "must not carry credentials; use `auth` instead",
                ));
            }
        }
    }
}

pub fn check_event_types(types: &[String], out: &mut Vec<Violation>) {
    if types.is_empty() {
        out.push(violation(
            "/event_types",
            "must name at least one event type",
        ));
    }
    if types.len() > MAX_EVENT_TYPES {
        // One violation, not one per entry: the answer stays small whatever was sent.
        out.push(violation(
            "/event_types",
            format!("must have at most {MAX_EVENT_TYPES} entries"),
        ));
        return;
    }
    for (i, t) in types.iter().enumerate() {
        if t.chars().count() > MAX_EVENT_TYPE_CHARS {
            // Not echoed: it is no catalog type, and would only bloat the answer.
            out.push(violation(
                &format!("/event_types/{i}"),
                format!("must be at most {MAX_EVENT_TYPE_CHARS} characters"),
            ));
        } else if !catalog::is_valid_filter(t) {
            out.push(violation(
                &format!("/event_types/{i}"),
                format!("`{t}` is not an event type, a `family.*` or `*`"),
            ));
        }
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "authorization",
    "transfer-encoding",
    "connection",
    // Hop-by-hop and framing headers: the HTTP client owns the connection and the body's
    // encoding, and a receiver or proxy would misread a request that set them.
    "proxy-authorization",
    "te",
    "upgrade",
    "expect",
    "content-encoding",
    "keep-alive",
    "trailer",
];

fn is_reserved(name: &str) -> bool {
    RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str())
}

pub fn check_headers(headers: &BTreeMap<String, String>, out: &mut Vec<Violation>) {
    if headers.len() > MAX_HEADERS {
        // One violation, not one per header: the answer stays small whatever was sent.
        out.push(violation(
            "/headers",
            format!("must have at most {MAX_HEADERS} headers"),
        ));
        return;
    }
    for (name, value) in headers {
        let p = format!("/headers/{}", escape(name));
        if !is_token(name) || is_reserved(name) {
            out.push(violation(
                &p,
                "must be a valid header name that the service does not set itself",
            ));
        } else if name.len() > MAX_HEADER_NAME_BYTES {
            out.push(violation(
                &p,
                format!("the name must be at most {MAX_HEADER_NAME_BYTES} bytes"),
            ));
        }
        // A tab is allowed inside a field value (RFC 9110); no other control character is.
        if value.len() > MAX_HEADER_VALUE_BYTES || has_control(value, true) {
            out.push(violation(
                &p,
                format!(
                    "the value must be at most {MAX_HEADER_VALUE_BYTES} bytes, \
                     with no control characters"
                ),
            ));
        }
    }
}

pub fn check_auth(auth: &EndpointAuth, policy: UrlPolicy, out: &mut Vec<Violation>) {
    // No control character at all, tab included: credentials never need one.
    let printable =
        |s: &str| !s.is_empty() && s.len() <= MAX_CREDENTIAL_BYTES && !has_control(s, false);
    // The mask is what reads show. Sent back, it keeps the stored secret only with the same
    // credentials around it (`EndpointAuth::unmasked`); left here, it would be stored as
    // the secret itself and every delivery would fail on it.
    if let Some((pointer, _)) = auth.secret().filter(|(_, v)| v.as_str() == MASKED) {
        out.push(violation(
            pointer,
            "is the mask reads show; send the secret itself (the stored one is kept only \
             when the rest of the credentials are unchanged)",
        ));
        return;
    }
    match auth {
        EndpointAuth::ApiKey { header, value } => {
            if !is_token(header) || is_reserved(header) || header.len() > MAX_HEADER_NAME_BYTES {
                out.push(violation(
                    "/auth/header",
                    "must be a valid header name of at most 64 bytes that the service does not \
                     set itself",
                ));
            }
            if !printable(value) {
                out.push(violation(
                    "/auth/value",
                    "must be 1 to 1024 bytes, with no control characters",
                ));
            }
        }
        EndpointAuth::Basic { username, password } => {
            if !printable(username) || username.contains(':') {
                out.push(violation(
                    "/auth/username",
                    "must be 1 to 1024 bytes, with no control characters and no ':'",
                ));
            }
            if !printable(password) {
                out.push(violation(
                    "/auth/password",
                    "must be 1 to 1024 bytes, with no control characters",
                ));
            }
        }
        EndpointAuth::Bearer { token } => {
            if !printable(token) {
                out.push(violation(
                    "/auth/token",
                    "must be 1 to 1024 bytes, with no control characters",
                ));
            }
        }
        EndpointAuth::OAuth2ClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
            audience,
            client_auth: _,
        } => {
            check_url_at(token_url, policy, "/auth/token_url", out);
            let fields = [
                ("/auth/client_id", Some(client_id)),
                ("/auth/client_secret", Some(client_secret)),
                ("/auth/scope", scope.as_ref()),
                ("/auth/audience", audience.as_ref()),
            ];
            for (pointer, value) in fields {
                if value.is_some_and(|v| !printable(v)) {
                    out.push(violation(
                        pointer,
                        "must be 1 to 1024 bytes, with no control characters",
                    ));
                }
            }
        }
        EndpointAuth::Jwt { audience } => {
            if audience.as_ref().is_some_and(|a| !printable(a)) {
                out.push(violation(
                    "/auth/audience",
                    "must be 1 to 1024 bytes, with no control characters",
                ));
            }
        }
    }
}

/// A JWT's audience must name the endpoint's own origin (`https://host[:port]`, any path):
/// a token is handed to whatever the subscription's URL points at, so an audience of
/// another origin would mint tokens for someone else's receiver.
pub fn check_jwt_audience(url: &str, auth: &EndpointAuth, out: &mut Vec<Violation>) {
    let EndpointAuth::Jwt {
        audience: Some(audience),
    } = auth
    else {
        return;
    };
    let origin = |u: &str| url::Url::parse(u).ok().map(|u| u.origin());
    let same = match (origin(url), origin(audience)) {
        (Some(endpoint), Some(aud)) => endpoint.is_tuple() && endpoint == aud,
        _ => false,
    };
    if !same {
        out.push(violation(
            "/auth/audience",
            "must be a URL of the endpoint's own origin (scheme, host and port of `url`)",
        ));
    }
}

pub fn check_retry(max_attempts: Option<u32>, schedule: Option<&[u32]>, out: &mut Vec<Violation>) {
    if let Some(n) = max_attempts {
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&n) {
            out.push(violation("/max_attempts", "must be between 1 and 30"));
        }
    }
    if let Some(steps) = schedule {
        if steps.is_empty() || steps.len() as u32 >= MAX_ATTEMPTS_LIMIT {
            out.push(violation("/retry_schedule", "must have 1 to 29 steps"));
        }
        for (i, s) in steps.iter().enumerate() {
            if !(1..=MAX_RETRY_STEP_SECONDS).contains(s) {
                out.push(violation(
                    &format!("/retry_schedule/{i}"),
                    "must be between 1 and 43200 seconds",
                ));
            }
        }
    }
    // A delivery's retries must end before its queue message expires (14 days), or the
    // last attempts would be dropped unseen: the whole schedule, every step at its longest
    // jitter, must fit in the horizon.
    let horizon = super::retry::RetryPolicy::new(max_attempts, schedule).horizon();
    let budget_valid = max_attempts.is_none_or(|n| (1..=MAX_ATTEMPTS_LIMIT).contains(&n));
    if budget_valid && horizon > super::retry::MAX_RETRY_HORIZON {
        let pointer = if schedule.is_some() {
            "/retry_schedule"
        } else {
            "/max_attempts"
        };
        out.push(violation(
            pointer,
            format!(
                "the attempts would span up to {} hours with jitter; at most {} hours fit in \
                 the 14 days a queued delivery is kept",
                horizon.as_secs() / 3600,
                super::retry::MAX_RETRY_HORIZON.as_secs() / 3600
            ),
        ));
    }
}

pub fn check_secret(secret: &str, out: &mut Vec<Violation>) {
    if super::signing::decode_secret(secret).is_none_or(|k| !(24..=64).contains(&k.len())) {
        out.push(violation(
            "/secret",
            "must be `whsec_` followed by base64 of 24 to 64 bytes",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn a_masked_value_sent_back_keeps_the_stored_one() {
        let stored = BTreeMap::from([("X-Tenant".to_string(), "t-123".to_string())]);
        let sent = BTreeMap::from([
            ("x-tenant".to_string(), MASKED.to_string()),
            ("X-New".to_string(), "v".to_string()),
            ("X-Other".to_string(), MASKED.to_string()),
        ]);
        let kept = unmask_headers(sent, &stored);
        assert_eq!(kept["x-tenant"], "t-123");
        assert_eq!(kept["X-New"], "v");
        // Nothing stored under that name: the value is taken as sent.
        assert_eq!(kept["X-Other"], MASKED);

        let basic = |u: &str, p: &str| EndpointAuth::Basic {
            username: u.into(),
            password: p.into(),
        };
        let old = basic("ann", "s3cret");
        assert_eq!(basic("ann", MASKED).unmasked(Some(&old)), old);
        // Another user is another credential: the mask is not a password to keep.
        assert_eq!(
            basic("bob", MASKED).unmasked(Some(&old)),
            basic("bob", MASKED)
        );
        let token = EndpointAuth::Bearer { token: "t".into() };
        assert_eq!(
            EndpointAuth::Bearer {
                token: MASKED.into()
            }
            .unmasked(Some(&token)),
            token
        );
        assert_eq!(
            basic("ann", "new").unmasked(Some(&old)),
            basic("ann", "new")
        );
    }

    #[test]
    fn a_schedule_longer_than_the_queues_keep_a_message_is_refused() {
        let check = |max: Option<u32>, schedule: Option<&[u32]>| {
            let mut out = Vec::new();
            check_retry(max, schedule, &mut out);
            out.into_iter().map(|v| v.pointer).collect::<Vec<_>>()
        };
        // 29 retries of 12 h: 14.5 days, 17.4 with jitter.
        assert_eq!(check(Some(30), Some(&[43_200])), ["/retry_schedule"]);
        // 25 retries of 10 h: 10.4 days, 12.5 with jitter: fits.
        assert!(check(Some(26), Some(&[36_000])).is_empty());
        // The default schedule with the largest budget still fits.
        assert!(check(Some(MAX_ATTEMPTS_LIMIT), None).is_empty());
        assert!(check(None, None).is_empty());
    }

    #[test]
    fn filters_match_exactly_by_family_or_all() {
        assert!(filter_matches("*", "call.ended"));
        assert!(filter_matches("call.*", "call.ended"));
        assert!(filter_matches("call.*", "call.transcript.ready"));
        assert!(filter_matches("call.transcript.*", "call.transcript.ready"));
        assert!(!filter_matches("call.*", "callback.ended"));
        assert!(!filter_matches("call.*", "agent.status_changed"));
        assert!(filter_matches("call.ended", "call.ended"));
        assert!(!filter_matches("call.ended", "call.ended.v2"));
    }

    #[test]
    fn urls_must_be_https_unless_allowed() {
        let mut out = vec![];
        check_url("https://example.com/hook", UrlPolicy::default(), &mut out);
        assert!(out.is_empty());
        check_url("http://example.com/hook", UrlPolicy::default(), &mut out);
        assert_eq!(out.len(), 1);
        out.clear();
        check_url(
            "http://example.com/hook",
            UrlPolicy { allow_http: true },
            &mut out,
        );
        check_url(
            "ftp://example.com",
            UrlPolicy { allow_http: true },
            &mut out,
        );
        check_url(
            "https://user:pw@example.com",
            UrlPolicy::default(),
            &mut out,
        );
        check_url("not a url", UrlPolicy::default(), &mut out);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn reserved_and_malformed_headers_are_refused() {
        let mut out = vec![];
        let headers: BTreeMap<String, String> = [
            ("X-Tenant".to_string(), "a".to_string()),
            ("Webhook-Signature".to_string(), "x".to_string()),
            ("bad header".to_string(), "x".to_string()),
            ("X-Ok".to_string(), "line\nbreak".to_string()),
        ]
        .into();
        check_headers(&headers, &mut out);
        assert_eq!(out.len(), 3);
    }

    fn pointers(out: &[Violation]) -> Vec<&str> {
        out.iter().map(|v| v.pointer.as_str()).collect()
    }

    #[test]
    fn event_types_are_bounded_in_number_and_length() {
        let mut out = vec![];
        check_event_types(&vec!["*".to_string(); 100], &mut out);
        assert!(out.is_empty(), "{out:?}");
        check_event_types(&vec!["*".to_string(); 101], &mut out);
        assert_eq!(pointers(&out), ["/event_types"]);
        assert!(out[0].message.contains("100"), "{out:?}");
        out.clear();
        let long = format!("call.{}", "x".repeat(124));
        assert_eq!(long.chars().count(), 129);
        check_event_types(&["call.ended".to_string(), long], &mut out);
        assert_eq!(pointers(&out), ["/event_types/1"]);
        assert!(out[0].message.contains("128"), "{out:?}");
        assert!(!out[0].message.contains("xxxx"), "echoes the long value");
    }

    #[test]
    fn header_names_and_values_are_bounded() {
        let at_most = format!("X-{}", "a".repeat(62));
        let too_long = format!("X-{}", "a".repeat(63));
        let headers: BTreeMap<String, String> = [
            (at_most.clone(), "v".repeat(1024)),
            (too_long.clone(), "v".to_string()),
            ("X-Value".to_string(), "v".repeat(1025)),
            ("X-Tab".to_string(), "a\tb".to_string()),
        ]
        .into();
        let mut out = vec![];
        check_headers(&headers, &mut out);
        // In the map's order: `X-V` sorts before `X-a`.
        assert_eq!(
            pointers(&out),
            ["/headers/X-Value", format!("/headers/{too_long}").as_str()]
        );
        assert!(out[0].message.contains("1024"), "{out:?}");
        assert!(out[1].message.contains("64"), "{out:?}");
    }

    #[test]
    fn too_many_headers_is_one_violation() {
        let headers: BTreeMap<String, String> = (0..=MAX_HEADERS)
            .map(|i| (format!("bad header {i}"), "v".to_string()))
            .collect();
        let mut out = vec![];
        check_headers(&headers, &mut out);
        assert_eq!(pointers(&out), ["/headers"]);
    }

    #[test]
    fn header_pointers_escape_the_name() {
        let headers: BTreeMap<String, String> = [("a/b~c".to_string(), "v".to_string())].into();
        let mut out = vec![];
        check_headers(&headers, &mut out);
        assert_eq!(pointers(&out), ["/headers/a~1b~0c"]);
    }

    #[test]
    fn hop_by_hop_and_framing_headers_are_reserved_in_any_case() {
        for name in [
            "Proxy-Authorization",
            "TE",
            "Upgrade",
            "expect",
            "Content-Encoding",
            "KEEP-ALIVE",
            "Trailer",
        ] {
            let headers: BTreeMap<String, String> = [(name.to_string(), "v".to_string())].into();
            let mut out = vec![];
            check_headers(&headers, &mut out);
            assert_eq!(pointers(&out), [format!("/headers/{name}").as_str()]);
            check_auth(
                &EndpointAuth::ApiKey {
                    header: name.to_string(),
                    value: "k".into(),
                },
                UrlPolicy::default(),
                &mut out,
            );
            assert_eq!(out.len(), 2, "{name} accepted as the api_key header");
            assert_eq!(out[1].pointer, "/auth/header");
        }
    }

    #[test]
    fn control_characters_are_refused_in_credentials_and_header_values() {
        for bad in ["tok\u{7f}en", "tok\u{85}en", "tok\ten", "tok\0", "tok\r\n"] {
            let mut out = vec![];
            let policy = UrlPolicy::default();
            check_auth(
                &EndpointAuth::Bearer { token: bad.into() },
                policy,
                &mut out,
            );
            check_auth(
                &EndpointAuth::Basic {
                    username: bad.into(),
                    password: bad.into(),
                },
                policy,
                &mut out,
            );
            check_auth(
                &EndpointAuth::ApiKey {
                    header: "X-Key".into(),
                    value: bad.into(),
                },
                policy,
                &mut out,
            );
            assert_eq!(
                pointers(&out),
                [
                    "/auth/token",
                    "/auth/username",
                    "/auth/password",
                    "/auth/value"
                ],
                "{bad:?}"
            );
        }
        for bad in ["a\u{7f}", "a\u{85}b", "a\rb"] {
            let headers: BTreeMap<String, String> = [("X-A".to_string(), bad.to_string())].into();
            let mut out = vec![];
            check_headers(&headers, &mut out);
            assert_eq!(pointers(&out), ["/headers/X-A"], "{bad:?}");
        }
        let mut out = vec![];
        check_auth(
            &EndpointAuth::Basic {
                username: "crm".into(),
                password: "p@ss wörd".into(),
            },
            UrlPolicy::default(),
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
    }

    fn oauth(token_url: &str, client_id: &str, client_secret: &str) -> EndpointAuth {
        EndpointAuth::OAuth2ClientCredentials {
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scope: Some("webhooks:write".into()),
            audience: None,
            client_auth: ClientAuthMethod::ClientSecretBasic,
        }
    }

    #[test]
    fn oauth_and_jwt_credentials_are_checked_field_by_field() {
        let mut out = vec![];
        check_auth(
            &oauth("https://idp.example.com/token", "crm", "s3cret"),
            UrlPolicy::default(),
            &mut out,
        );
        check_auth(
            &EndpointAuth::Jwt {
                audience: Some("https://crm.example.com".into()),
            },
            UrlPolicy::default(),
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        // The token endpoint obeys the endpoint URL's rules: https, a host, no userinfo.
        check_auth(
            &oauth("http://idp.example.com/token", "", "a\u{7f}"),
            UrlPolicy::default(),
            &mut out,
        );
        check_auth(
            &oauth("https://u:p@idp.example.com/token", "crm", "s"),
            UrlPolicy::default(),
            &mut out,
        );
        check_auth(
            &EndpointAuth::Jwt {
                audience: Some(String::new()),
            },
            UrlPolicy::default(),
            &mut out,
        );
        assert_eq!(
            pointers(&out),
            [
                "/auth/token_url",
                "/auth/client_id",
                "/auth/client_secret",
                "/auth/token_url",
                "/auth/audience"
            ]
        );
        // http where the runner allows it, as for endpoints.
        out.clear();
        check_auth(
            &oauth("http://127.0.0.1:9/token", "crm", "s"),
            UrlPolicy { allow_http: true },
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn the_mask_is_never_taken_as_a_secret() {
        let mut out = vec![];
        for auth in [
            oauth("https://idp.example.com/token", "crm", MASKED),
            EndpointAuth::Basic {
                username: "bob".into(),
                password: MASKED.into(),
            },
            EndpointAuth::Bearer {
                token: MASKED.into(),
            },
            EndpointAuth::ApiKey {
                header: "X-Key".into(),
                value: MASKED.into(),
            },
        ] {
            check_auth(&auth, UrlPolicy::default(), &mut out);
        }
        assert_eq!(
            pointers(&out),
            [
                "/auth/client_secret",
                "/auth/password",
                "/auth/token",
                "/auth/value"
            ]
        );
    }

    #[test]
    fn a_jwt_audience_names_the_endpoints_own_origin() {
        let check = |url: &str, audience: Option<&str>| {
            let mut out = vec![];
            check_jwt_audience(
                url,
                &EndpointAuth::Jwt {
                    audience: audience.map(String::from),
                },
                &mut out,
            );
            out.is_empty()
        };
        assert!(check("https://crm.example.com/hooks", None));
        assert!(check(
            "https://crm.example.com/hooks",
            Some("https://crm.example.com/")
        ));
        assert!(check(
            "https://crm.example.com:443/hooks",
            Some("https://crm.example.com/api/webhooks")
        ));
        // Another receiver's origin, another port or scheme, or no URL at all.
        for other in [
            "https://victim.example.net/hooks",
            "https://crm.example.com:8443/",
            "http://crm.example.com/",
            "crm-prod",
        ] {
            assert!(
                !check("https://crm.example.com/hooks", Some(other)),
                "{other}"
            );
        }
    }

    #[test]
    fn a_masked_client_secret_is_kept_only_for_the_same_client_and_token_endpoint() {
        let stored = oauth("https://idp.example.com/token", "crm", "s3cret");
        assert_eq!(
            oauth("https://idp.example.com/token", "crm", MASKED).unmasked(Some(&stored)),
            stored
        );
        for other in [
            oauth("https://evil.example.net/token", "crm", MASKED),
            oauth("https://idp.example.com/token", "other", MASKED),
        ] {
            assert_eq!(other.clone().unmasked(Some(&stored)), other);
        }
    }

    #[test]
    fn auth_reads_as_the_contract_spells_it() {
        let auth: EndpointAuth = serde_json::from_value(serde_json::json!({
            "type": "oauth2_client_credentials", "token_url": "https://idp/t",
            "client_id": "c", "client_secret": "s"
        }))
        .unwrap();
        assert_eq!(
            auth,
            EndpointAuth::OAuth2ClientCredentials {
                token_url: "https://idp/t".into(),
                client_id: "c".into(),
                client_secret: "s".into(),
                scope: None,
                audience: None,
                client_auth: ClientAuthMethod::ClientSecretBasic,
            }
        );
        let jwt: EndpointAuth = serde_json::from_value(serde_json::json!({"type": "jwt"})).unwrap();
        assert_eq!(jwt, EndpointAuth::Jwt { audience: None });
        assert!(serde_json::from_value::<EndpointAuth>(
            serde_json::json!({"type": "jwt", "secret": "x"})
        )
        .is_err());
    }

    #[test]
    fn rotation_keeps_the_newest_three_unexpired_secrets() {
        let mut s = Subscription {
            id: SubscriptionId::parse("s").unwrap(),
            account_id: AccountId::parse("a").unwrap(),
            url: "https://x".into(),
            description: None,
            event_types: vec!["*".into()],
            enabled: true,
            auth: None,
            headers: BTreeMap::new(),
            max_attempts: None,
            retry_schedule: None,
            timeout_seconds: 10,
            rate_limit_per_second: None,
            secrets: vec![SigningSecret {
                secret: "s0".into(),
                expires_at: None,
            }],
            disabled_reason: None,
            disabled_at: None,
            failing_since: None,
            consecutive_failures: 0,
            failing_announced_at: None,
            signature: SignatureScheme::Hmac,
            version: 0,
            created_at: Timestamp::EPOCH,
            updated_at: Timestamp::EPOCH,
        };
        let overlap = Duration::from_millis(1000);
        s.rotate_secret("s1", at(10), overlap);
        assert_eq!(s.active_secrets(at(10)).collect::<Vec<_>>(), ["s1", "s0"]);
        assert_eq!(s.secrets[1].expires_at, Some(at(1010)));
        s.rotate_secret("s2", at(20), overlap);
        s.rotate_secret("s3", at(30), overlap);
        s.rotate_secret("s4", at(40), overlap);
        // The cap retires the oldest still-valid ones; each keeps its own expiry.
        assert_eq!(
            s.active_secrets(at(40)).collect::<Vec<_>>(),
            ["s4", "s3", "s2"]
        );
        assert_eq!(s.secrets.len(), MAX_ACTIVE_SECRETS);
        assert_eq!(s.secrets[1].expires_at, Some(at(1040)));
        assert_eq!(s.secrets[2].expires_at, Some(at(1030)));
        assert_eq!(s.updated_at, at(40));
        // Expired ones are dropped at the next rotation, cap or not.
        s.rotate_secret("s5", at(1035), overlap);
        assert_eq!(
            s.secrets
                .iter()
                .map(|x| x.secret.as_str())
                .collect::<Vec<_>>(),
            ["s5", "s4", "s3"]
        );
        s.rotate_secret("s6", at(2036), overlap);
        assert_eq!(
            s.secrets
                .iter()
                .map(|x| x.secret.as_str())
                .collect::<Vec<_>>(),
            ["s6", "s5"]
        );
    }

    #[test]
    fn rotated_secrets_sign_until_they_expire() {
        let mut s = Subscription {
            id: SubscriptionId::parse("s").unwrap(),
            account_id: AccountId::parse("a").unwrap(),
            url: "https://x".into(),
            description: None,
            event_types: vec!["*".into()],
            enabled: true,
            auth: None,
            headers: BTreeMap::new(),
            max_attempts: None,
            retry_schedule: None,
            timeout_seconds: 10,
            rate_limit_per_second: None,
            secrets: vec![
                SigningSecret {
                    secret: "new".into(),
                    expires_at: None,
                },
                SigningSecret {
                    secret: "old".into(),
                    expires_at: Some(at(100)),
                },
            ],
            disabled_reason: None,
            disabled_at: None,
            failing_since: None,
            consecutive_failures: 0,
            failing_announced_at: None,
            signature: SignatureScheme::Hmac,
            version: 0,
            created_at: Timestamp::EPOCH,
            updated_at: Timestamp::EPOCH,
        };
        assert_eq!(s.active_secrets(at(99)).collect::<Vec<_>>(), ["new", "old"]);
        assert_eq!(s.active_secrets(at(100)).collect::<Vec<_>>(), ["new"]);
        s.event_types = vec!["agent.*".into()];
        assert!(s.wants("agent.status_changed") && !s.wants("call.ended"));
    }
}
