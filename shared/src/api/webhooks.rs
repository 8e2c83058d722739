//! Subscriptions: `/v1/accounts/{account_id}/webhooks`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{Caller, JsonBody};
use super::pagination::PageQuery;
use super::views::SubscriptionView;
use crate::domain::ids;
use crate::domain::schema::Violation;
use crate::domain::signing::generate_secret;
use crate::domain::subscription::{self as rules, EndpointAuth, SigningSecret, Subscription};
use crate::Services;

pub fn router() -> Router<Services> {
    Router::new()
        .route("/v1/accounts/{account_id}/webhooks", get(list).post(create))
        .route(
            "/v1/accounts/{account_id}/webhooks/{webhook_id}",
            get(show).patch(update).delete(remove),
        )
}

pub fn check_account_id(account_id: &str) -> Result<(), ApiError> {
    let ok = !account_id.is_empty()
        && account_id.len() <= 128
        && account_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(vec![Violation {
            pointer: "/account_id".into(),
            message: "must be 1 to 128 characters of letters, digits, '_', '-', '.', ':'".into(),
        }]))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateWebhook {
    url: String,
    event_types: Vec<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    auth: Option<EndpointAuth>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    retry_schedule: Option<Vec<u32>>,
    #[serde(default)]
    timeout_seconds: Option<u32>,
    #[serde(default)]
    rate_limit_per_second: Option<u32>,
    #[serde(default)]
    secret: Option<String>,
}

/// A partial update; `null` clears an optional setting.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateWebhook {
    url: Option<String>,
    event_types: Option<Vec<String>>,
    #[serde(default, with = "nullable")]
    description: Option<Option<String>>,
    enabled: Option<bool>,
    #[serde(default, with = "nullable")]
    auth: Option<Option<EndpointAuth>>,
    headers: Option<BTreeMap<String, String>>,
    #[serde(default, with = "nullable")]
    max_attempts: Option<Option<u32>>,
    #[serde(default, with = "nullable")]
    retry_schedule: Option<Option<Vec<u32>>>,
    timeout_seconds: Option<u32>,
    #[serde(default, with = "nullable")]
    rate_limit_per_second: Option<Option<u32>>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
mod nullable {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// Every rule a stored subscription must satisfy, checked after create and after update.
async fn validate(services: &Services, sub: &Subscription) -> Result<(), ApiError> {
    let mut v = Vec::new();
    rules::check_url(&sub.url, services.settings.url_policy, &mut v);
    rules::check_event_types(&sub.event_types, &mut v);
    rules::check_headers(&sub.headers, &mut v);
    if let Some(auth) = &sub.auth {
        rules::check_auth(auth, &mut v);
    }
    rules::check_retry(sub.max_attempts, sub.retry_schedule.as_deref(), &mut v);
    if !(1..=rules::MAX_TIMEOUT_SECONDS).contains(&sub.timeout_seconds) {
        v.push(Violation {
            pointer: "/timeout_seconds".into(),
            message: "must be between 1 and 30".into(),
        });
    }
    if sub.rate_limit_per_second == Some(0) {
        v.push(Violation {
            pointer: "/rate_limit_per_second".into(),
            message: "must be at least 1".into(),
        });
    }
    if sub
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > rules::MAX_DESCRIPTION_CHARS)
    {
        v.push(Violation {
            pointer: "/description".into(),
            message: "must be at most 512 characters".into(),
        });
    }
    if !v.is_empty() {
        return Err(ApiError::validation(v));
    }
    check_destination(services, &sub.url).await
}

/// Refuses a URL whose host resolves only to addresses deliveries may not reach. A host
/// that does not resolve yet is accepted: deliveries check again on every attempt.
async fn check_destination(services: &Services, url: &str) -> Result<(), ApiError> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Ok(());
    };
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<IpAddr> = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => vec![ip.into()],
        Some(url::Host::Ipv6(ip)) => vec![ip.into()],
        Some(url::Host::Domain(d)) => match tokio::net::lookup_host((d, port)).await {
            Ok(found) => found.map(|a| a.ip()).collect(),
            Err(_) => return Ok(()),
        },
        None => return Ok(()),
    };
    let policy = &services.settings.destinations;
    if !addrs.is_empty() && !addrs.iter().any(|ip| policy.allows(*ip)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "destination_not_allowed",
            "the URL's host resolves to a private, loopback or reserved address",
        ));
    }
    Ok(())
}

async fn create(
    State(services): State<Services>,
    caller: Caller,
    Path(account_id): Path<String>,
    JsonBody(req): JsonBody<CreateWebhook>,
) -> Result<(StatusCode, Json<SubscriptionView>), ApiError> {
    let account = caller.account(&account_id)?;
    check_account_id(account)?;
    if let Some(secret) = &req.secret {
        let mut v = Vec::new();
        rules::check_secret(secret, &mut v);
        if !v.is_empty() {
            return Err(ApiError::validation(v));
        }
    }
    let now = services.clock.now_ms();
    let sub = Subscription {
        id: ids::time_ordered("wh", now),
        account_id: account.to_string(),
        url: req.url,
        description: req.description,
        event_types: req.event_types,
        enabled: req.enabled.unwrap_or(true),
        auth: req.auth,
        headers: req.headers,
        max_attempts: req.max_attempts,
        retry_schedule: req.retry_schedule,
        timeout_seconds: req
            .timeout_seconds
            .unwrap_or(rules::DEFAULT_TIMEOUT_SECONDS),
        rate_limit_per_second: req.rate_limit_per_second,
        secrets: vec![SigningSecret {
            secret: req.secret.unwrap_or_else(generate_secret),
            expires_at: None,
        }],
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    };
    validate(&services, &sub).await?;
    services.subscriptions.put(&sub).await?;
    Ok((
        StatusCode::CREATED,
        Json(SubscriptionView::with_secret(&sub)),
    ))
}

async fn list(
    State(services): State<Services>,
    caller: Caller,
    Path(account_id): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let account = caller.account(&account_id)?;
    let limit = page.limit()?;
    let subs = services
        .subscriptions
        .list(account, page.cursor.as_deref(), limit)
        .await?;
    let next_cursor = (subs.len() == limit).then(|| subs.last().map(|s| s.id.clone()));
    let data: Vec<SubscriptionView> = subs.iter().map(SubscriptionView::masked).collect();
    Ok(Json(
        json!({ "data": data, "next_cursor": next_cursor.flatten() }),
    ))
}

async fn load(services: &Services, account: &str, id: &str) -> Result<Subscription, ApiError> {
    services
        .subscriptions
        .get(account, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))
}

async fn show(
    State(services): State<Services>,
    caller: Caller,
    Path((account_id, webhook_id)): Path<(String, String)>,
) -> Result<Json<SubscriptionView>, ApiError> {
    let account = caller.account(&account_id)?;
    let sub = load(&services, account, &webhook_id).await?;
    Ok(Json(SubscriptionView::masked(&sub)))
}

async fn update(
    State(services): State<Services>,
    caller: Caller,
    Path((account_id, webhook_id)): Path<(String, String)>,
    JsonBody(req): JsonBody<UpdateWebhook>,
) -> Result<Json<SubscriptionView>, ApiError> {
    let account = caller.account(&account_id)?;
    let mut sub = load(&services, account, &webhook_id).await?;
    if let Some(url) = req.url {
        sub.url = url;
    }
    if let Some(types) = req.event_types {
        sub.event_types = types;
    }
    if let Some(d) = req.description {
        sub.description = d;
    }
    if let Some(enabled) = req.enabled {
        sub.enabled = enabled;
        if enabled {
            sub.disabled_reason = None;
        }
    }
    if let Some(auth) = req.auth {
        sub.auth = auth;
    }
    if let Some(headers) = req.headers {
        sub.headers = headers;
    }
    if let Some(n) = req.max_attempts {
        sub.max_attempts = n;
    }
    if let Some(s) = req.retry_schedule {
        sub.retry_schedule = s;
    }
    if let Some(t) = req.timeout_seconds {
        sub.timeout_seconds = t;
    }
    if let Some(r) = req.rate_limit_per_second {
        sub.rate_limit_per_second = r;
    }
    sub.updated_at = services.clock.now_ms();
    validate(&services, &sub).await?;
    services.subscriptions.put(&sub).await?;
    Ok(Json(SubscriptionView::masked(&sub)))
}

async fn remove(
    State(services): State<Services>,
    caller: Caller,
    Path((account_id, webhook_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let account = caller.account(&account_id)?;
    if services.subscriptions.delete(account, &webhook_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("webhook"))
    }
}
