//! Subscriptions: a customer's endpoint and the events it wants.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::catalog;
use super::schema::Violation;

pub const DEFAULT_TIMEOUT_SECONDS: u32 = 10;
pub const MAX_TIMEOUT_SECONDS: u32 = 30;
/// Above this the queue's redrive (the safety net) would fire before our own exhaustion.
pub const MAX_ATTEMPTS_LIMIT: u32 = 30;
/// Every step must fit one SQS visibility change.
pub const MAX_RETRY_STEP_SECONDS: u32 = 12 * 3600;
pub const MAX_URL_CHARS: usize = 2048;
pub const MAX_DESCRIPTION_CHARS: usize = 512;
pub const MAX_HEADERS: usize = 20;

/// Credentials added to every delivery of a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EndpointAuth {
    ApiKey { header: String, value: String },
    Basic { username: String, password: String },
    Bearer { token: String },
}

/// A signing secret; a rotated-out secret keeps signing until `expires_at` (ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningSecret {
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub account_id: String,
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
    /// Why the service disabled it (e.g. the endpoint answered 410 Gone).
    #[serde(default)]
    pub disabled_reason: Option<String>,
    /// When the service disabled it (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<i64>,
    /// When the first of an unbroken run of failed attempts was made (ms); `None` while the
    /// last attempt succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<i64>,
    /// Bumped by every write, so a write based on a stale read can be refused.
    #[serde(default)]
    pub version: u64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Subscription {
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types
            .iter()
            .any(|f| filter_matches(f, event_type))
    }

    /// Secrets that sign a delivery made at `now_ms`.
    pub fn active_secrets(&self, now_ms: i64) -> impl Iterator<Item = &str> {
        self.secrets
            .iter()
            .filter(move |s| s.expires_at.is_none_or(|t| t > now_ms))
            .map(|s| s.secret.as_str())
    }
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

fn violation(pointer: &str, message: impl Into<String>) -> Violation {
    Violation {
        pointer: pointer.into(),
        message: message.into(),
    }
}

pub fn check_url(url: &str, policy: UrlPolicy, out: &mut Vec<Violation>) {
    if url.len() > MAX_URL_CHARS {
        out.push(violation("/url", "must be at most 2048 characters"));
        return;
    }
    match url::Url::parse(url) {
        Err(e) => out.push(violation("/url", format!("is not a valid URL: {e}"))),
        Ok(u) => {
            let scheme_ok = u.scheme() == "https" || (policy.allow_http && u.scheme() == "http");
            if !scheme_ok {
                out.push(violation(
                    "/url",
                    if policy.allow_http {
                        "must use https or http"
                    } else {
                        "must use https"
                    },
                ));
            }
            if u.host_str().is_none_or(str::is_empty) {
                out.push(violation("/url", "must name a host"));
            }
            if !u.username().is_empty() || u.password().is_some() {
                out.push(violation(
                    "/url",
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
    for (i, t) in types.iter().enumerate() {
        if !catalog::is_valid_filter(t) {
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
];

pub fn check_headers(headers: &BTreeMap<String, String>, out: &mut Vec<Violation>) {
    if headers.len() > MAX_HEADERS {
        out.push(violation("/headers", "must have at most 20 headers"));
    }
    for (name, value) in headers {
        let p = format!("/headers/{name}");
        if !is_token(name) || RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            out.push(violation(
                &p,
                "must be a valid header name that the service does not set itself",
            ));
        }
        if value.len() > 1024 || value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
            out.push(violation(&p, "must be at most 1024 printable characters"));
        }
    }
}

pub fn check_auth(auth: &EndpointAuth, out: &mut Vec<Violation>) {
    let printable = |s: &str| !s.is_empty() && s.len() <= 1024 && !s.bytes().any(|b| b < 0x20);
    match auth {
        EndpointAuth::ApiKey { header, value } => {
            if !is_token(header) || RESERVED_HEADERS.contains(&header.to_ascii_lowercase().as_str())
            {
                out.push(violation("/auth/header", "must be a valid header name"));
            }
            if !printable(value) {
                out.push(violation(
                    "/auth/value",
                    "must be 1 to 1024 printable characters",
                ));
            }
        }
        EndpointAuth::Basic { username, password } => {
            if !printable(username) || username.contains(':') {
                out.push(violation(
                    "/auth/username",
                    "must be printable and contain no ':'",
                ));
            }
            if !printable(password) {
                out.push(violation(
                    "/auth/password",
                    "must be 1 to 1024 printable characters",
                ));
            }
        }
        EndpointAuth::Bearer { token } => {
            if !printable(token) {
                out.push(violation(
                    "/auth/token",
                    "must be 1 to 1024 printable characters",
                ));
            }
        }
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

    #[test]
    fn rotated_secrets_sign_until_they_expire() {
        let mut s = Subscription {
            id: "s".into(),
            account_id: "a".into(),
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
                    expires_at: Some(100),
                },
            ],
            disabled_reason: None,
            disabled_at: None,
            failing_since: None,
            version: 0,
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(s.active_secrets(99).collect::<Vec<_>>(), ["new", "old"]);
        assert_eq!(s.active_secrets(100).collect::<Vec<_>>(), ["new"]);
        s.event_types = vec!["agent.*".into()];
        assert!(s.wants("agent.status_changed") && !s.wants("call.ended"));
    }
}
