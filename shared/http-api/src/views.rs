//! What reads return: secrets and credentials masked.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use domain::delivery::{Attempt, Delivery, DeliveryStatus};
use domain::subscription::{ClientAuthMethod, EndpointAuth, SignatureScheme, Subscription};
use domain::time::Timestamp;

use domain::subscription::MASKED as MASK;

#[derive(Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthView {
    ApiKey {
        header: String,
        value: &'static str,
    },
    Basic {
        username: String,
        password: &'static str,
    },
    Bearer {
        token: &'static str,
    },
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: &'static str,
        scope: Option<String>,
        audience: Option<String>,
        client_auth: ClientAuthMethod,
    },
    Jwt {
        /// The `aud` claim; null: the endpoint's URL.
        audience: Option<String>,
    },
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionView {
    pub id: String,
    pub account_id: String,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// When the service disabled it (RFC 3339).
    pub disabled_at: Option<String>,
    /// When its endpoint started failing without a success since (RFC 3339); after the
    /// auto-disable period it is disabled.
    pub failing_since: Option<String>,
    pub auth: Option<AuthView>,
    pub headers: BTreeMap<String, String>,
    pub max_attempts: Option<u32>,
    pub retry_schedule: Option<Vec<u32>>,
    pub timeout_seconds: u32,
    pub rate_limit_per_second: Option<u32>,
    /// `hmac` or `ed25519`.
    pub signature: SignatureScheme,
    /// The HMAC secret: shown in full only when created (or rotated); masked on every
    /// read. Null for an `ed25519` subscription, whose private key is never shown.
    pub secret: Option<String>,
    /// An `ed25519` subscription's current public key (`whpk_…`), to verify `v1a`
    /// signatures with; null for `hmac`.
    pub public_key: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl SubscriptionView {
    pub fn masked(sub: &Subscription) -> Self {
        let auth = sub.auth.as_ref().map(|a| match a {
            EndpointAuth::ApiKey { header, .. } => AuthView::ApiKey {
                header: header.clone(),
                value: MASK,
            },
            EndpointAuth::Basic { username, .. } => AuthView::Basic {
                username: username.clone(),
                password: MASK,
            },
            EndpointAuth::Bearer { .. } => AuthView::Bearer { token: MASK },
            EndpointAuth::OAuth2ClientCredentials {
                token_url,
                client_id,
                scope,
                audience,
                client_auth,
                ..
            } => AuthView::OAuth2ClientCredentials {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                client_secret: MASK,
                scope: scope.clone(),
                audience: audience.clone(),
                client_auth: *client_auth,
            },
            EndpointAuth::Jwt { audience } => AuthView::Jwt {
                audience: audience.clone(),
            },
        });
        SubscriptionView {
            id: sub.id.to_string(),
            account_id: sub.account_id.to_string(),
            url: sub.url.clone(),
            description: sub.description.clone(),
            event_types: sub.event_types.clone(),
            enabled: sub.enabled,
            disabled_reason: sub.disabled_reason.clone(),
            disabled_at: sub.disabled_at.map(Timestamp::to_rfc3339),
            failing_since: sub.failing_since.map(Timestamp::to_rfc3339),
            auth,
            // Custom headers often carry tenant tokens: masked like credentials. A value
            // sent back masked in an update keeps the stored one.
            headers: sub
                .headers
                .keys()
                .map(|name| (name.clone(), MASK.to_string()))
                .collect(),
            max_attempts: sub.max_attempts,
            retry_schedule: sub.retry_schedule.clone(),
            timeout_seconds: sub.timeout_seconds,
            rate_limit_per_second: sub.rate_limit_per_second,
            signature: sub.signature,
            secret: (sub.signature == SignatureScheme::Hmac).then(|| format!("whsec_{MASK}")),
            public_key: sub.public_key(),
            created_at: sub.created_at.to_rfc3339(),
            updated_at: sub.updated_at.to_rfc3339(),
        }
    }

    pub fn with_secret(sub: &Subscription) -> Self {
        let masked = Self::masked(sub);
        SubscriptionView {
            secret: masked
                .secret
                .is_some()
                .then(|| sub.secrets.first().map(|s| s.secret.clone()))
                .flatten(),
            ..masked
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    pub attempt: u32,
    pub at: String,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    /// As received: names in lower case, at most 32, values cut to 256 characters, a
    /// `set-cookie` masked.
    pub response_headers: Vec<(String, String)>,
    pub response_body: Option<String>,
    pub error: Option<String>,
}

impl From<&Attempt> for AttemptView {
    fn from(a: &Attempt) -> Self {
        AttemptView {
            attempt: a.attempt,
            at: a.at.to_rfc3339(),
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            response_headers: a.response_headers.clone(),
            response_body: a.response_body.clone(),
            error: a.error.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RequestView {
    pub url: Option<String>,
    pub headers: BTreeMap<String, String>,
    #[schema(value_type = Option<Object>)]
    pub body: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub webhook_id: String,
    #[schema(value_type = String)]
    pub status: DeliveryStatus,
    pub attempt_count: u32,
    pub created_at: String,
    pub updated_at: String,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub last_latency_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptView>>,
}

impl DeliveryView {
    pub fn summary(d: &Delivery) -> Self {
        DeliveryView {
            id: d.id.to_string(),
            event_id: d.event_id.to_string(),
            event_type: d.event_type.to_string(),
            webhook_id: d.subscription_id.to_string(),
            status: d.status,
            attempt_count: d.attempt_count,
            created_at: d.created_at.to_rfc3339(),
            updated_at: d.updated_at.to_rfc3339(),
            next_attempt_at: d.next_attempt_at.map(Timestamp::to_rfc3339),
            last_error: d.last_error.clone(),
            last_latency_ms: d.last_latency_ms,
            request: None,
            attempts: None,
        }
    }
}
