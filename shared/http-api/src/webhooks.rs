//! Subscriptions: `/v1/accounts/{account_id}/webhooks`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{path_id, Caller, JsonBody};
use super::pagination::{limit, Paginated};
use super::views::SubscriptionView;
use app::Services;
use domain::health;
use domain::ids::{AccountId, SubscriptionId};
use domain::schema::Violation;
use domain::subscription::{
    self as rules, EndpointAuth, SignatureScheme, SigningSecret, Subscription,
};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    pub url: String,
    /// Exact types, `family.*` or `*`; each at most 128 characters.
    #[schema(min_items = 1, max_items = 100)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub auth: Option<EndpointAuth>,
    /// At most 20; names at most 64 bytes, values at most 1024 bytes.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub retry_schedule: Option<Vec<u32>>,
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
    #[serde(default)]
    pub rate_limit_per_second: Option<u32>,
    /// A `whsec_` secret of your own (HMAC only); generated when absent.
    #[serde(default)]
    pub secret: Option<String>,
    /// `hmac` (default): `v1` signatures with the shared secret. `ed25519`: `v1a`
    /// signatures by a key pair the service generates; the answer shows its public key
    /// (`whpk_…`), the private key never leaves the service.
    #[serde(default)]
    pub signature: Option<SignatureScheme>,
}

/// A partial update; `null` clears an optional setting.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    pub url: Option<String>,
    #[schema(min_items = 1, max_items = 100)]
    pub event_types: Option<Vec<String>>,
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<EndpointAuth>)]
    pub auth: Option<Option<EndpointAuth>>,
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<u32>)]
    pub max_attempts: Option<Option<u32>>,
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<Vec<u32>>)]
    pub retry_schedule: Option<Option<Vec<u32>>>,
    pub timeout_seconds: Option<u32>,
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<u32>)]
    pub rate_limit_per_second: Option<Option<u32>>,
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
        rules::check_auth(auth, services.settings.url_policy, &mut v);
        rules::check_jwt_audience(&sub.url, auth, &mut v);
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
    check_destination(services, &sub.url).await?;
    // The token endpoint is reached from our network as the endpoint is: the same guard.
    if let Some(EndpointAuth::OAuth2ClientCredentials { token_url, .. }) = &sub.auth {
        check_destination(services, token_url).await?;
    }
    Ok(())
}

/// Refuses a URL whose host resolves only to addresses deliveries may not reach. A host
/// that does not resolve yet is accepted: deliveries check again on every attempt.
async fn check_destination(services: &Services, url: &str) -> Result<(), ApiError> {
    let Ok(parsed) = url::Url::parse(url) else {
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

/// Refuses a subscription past the account's cap (`Settings::max_subscriptions_per_account`),
/// which also bounds the work of fanning out each of the account's events.
///
/// 409 `limit_exceeded`: the request itself is valid and would succeed once the account has
/// room, so it conflicts with the account's current state, as 409 means elsewhere in this
/// API (`delivery_pending`). It is not a fault in the body (400, nothing to point at), and not
/// 429: waiting does not help, deleting a subscription does.
///
/// Paused and disabled subscriptions count: they are kept and can be resumed. The count is
/// read before the write, so creates racing each other can pass together and overshoot by
/// their number; the cap guards against runaway growth, it is not an exact quota.
async fn check_room(services: &Services, account: &AccountId) -> Result<(), ApiError> {
    let max = services.settings.max_subscriptions_per_account;
    let count = services.subscriptions.list_all(account).await?.len();
    if count >= max {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "limit_exceeded",
            format!(
                "the account has {count} webhooks, and may have at most {max}; delete one to \
                 create another"
            ),
        ));
    }
    Ok(())
}

/// Creates a subscription. The answer holds its signing secret, shown only here. An account
/// has at most 100 subscriptions unless the deployment sets another cap; one more answers
/// 409 `limit_exceeded`.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/webhooks", tag = "webhooks",
    params(("account_id" = String, Path)), request_body = CreateWebhook,
    responses((status = 201, body = SubscriptionView), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody,
               description = "`limit_exceeded`: the account has as many webhooks as it may"),
              (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_webhook(
    State(services): State<Services>,
    caller: Caller,
    Path(account_id): Path<String>,
    JsonBody(req): JsonBody<CreateWebhook>,
) -> Result<(StatusCode, Json<SubscriptionView>), ApiError> {
    let account = caller.account(&account_id)?;
    let signature = req.signature.unwrap_or_default();
    if let Some(secret) = &req.secret {
        let mut v = Vec::new();
        match signature {
            SignatureScheme::Hmac => rules::check_secret(secret, &mut v),
            SignatureScheme::Ed25519 => v.push(Violation {
                pointer: "/secret".into(),
                message: "an ed25519 subscription's key pair is generated by the service; \
                          leave `secret` out"
                    .into(),
            }),
        }
        if !v.is_empty() {
            return Err(ApiError::validation(v));
        }
    }
    let now = services.clock.now();
    let sub = Subscription {
        id: SubscriptionId::generate(now, &*services.random),
        account_id: account.clone(),
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
            secret: req
                .secret
                .unwrap_or_else(|| signature.generate_secret(&*services.random)),
            expires_at: None,
        }],
        signature,
        disabled_reason: None,
        disabled_at: None,
        failing_since: None,
        consecutive_failures: 0,
        failing_announced_at: None,
        version: 0,
        created_at: now,
        updated_at: now,
    };
    validate(&services, &sub).await?;
    check_room(&services, &account).await?;
    services.subscriptions.put(&sub).await?;
    Ok((
        StatusCode::CREATED,
        Json(SubscriptionView::with_secret(&sub)),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// The account's subscriptions, oldest first; secrets and credentials masked.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/webhooks", tag = "webhooks",
    params(("account_id" = String, Path), ListQuery),
    responses((status = 200, body = Paginated<SubscriptionView>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_webhooks(
    State(services): State<Services>,
    caller: Caller,
    Path(account_id): Path<String>,
    Query(page): Query<ListQuery>,
) -> Result<Json<Paginated<SubscriptionView>>, ApiError> {
    let account = caller.account(&account_id)?;
    let limit = limit(page.limit)?;
    // One more than asked, to know whether another page follows.
    let mut subs = services
        .subscriptions
        .list(&account, page.cursor.as_deref(), limit + 1)
        .await?;
    let more = subs.len() > limit;
    subs.truncate(limit);
    Ok(Json(Paginated {
        data: subs.iter().map(SubscriptionView::masked).collect(),
        next_cursor: more
            .then(|| subs.last().map(|s| s.id.to_string()))
            .flatten(),
    }))
}

/// The subscription a path's `webhook_id` names.
pub(super) fn parse_webhook_id(raw: &str) -> Result<SubscriptionId, ApiError> {
    path_id(raw, "webhook")
}

pub(super) async fn load(
    services: &Services,
    account: &AccountId,
    id: &SubscriptionId,
) -> Result<Subscription, ApiError> {
    services
        .subscriptions
        .get(account, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))
}

/// One subscription; secrets and credentials masked.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("account_id" = String, Path), ("webhook_id" = String, Path)),
    responses((status = 200, body = SubscriptionView), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_webhook(
    State(services): State<Services>,
    caller: Caller,
    Path((account_id, webhook_id)): Path<(String, String)>,
) -> Result<Json<SubscriptionView>, ApiError> {
    let account = caller.account(&account_id)?;
    let webhook_id = parse_webhook_id(&webhook_id)?;
    let sub = load(&services, &account, &webhook_id).await?;
    Ok(Json(SubscriptionView::masked(&sub)))
}

/// Changes some settings; `enabled: false` pauses deliveries (events that arrive meanwhile
/// are recorded as skipped), `enabled: true` resumes them.
#[utoipa::path(patch, path = "/v1/accounts/{account_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("account_id" = String, Path), ("webhook_id" = String, Path)), request_body = UpdateWebhook,
    responses((status = 200, body = SubscriptionView), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_webhook(
    State(services): State<Services>,
    caller: Caller,
    Path((account_id, webhook_id)): Path<(String, String)>,
    JsonBody(req): JsonBody<UpdateWebhook>,
) -> Result<Json<SubscriptionView>, ApiError> {
    let account = caller.account(&account_id)?;
    let webhook_id = parse_webhook_id(&webhook_id)?;
    let mut conflicts = 0;
    loop {
        let mut sub = load(&services, &account, &webhook_id).await?;
        let expected = sub.version;
        apply_update(&mut sub, req.clone());
        sub.updated_at = services.clock.now();
        validate(&services, &sub).await?;
        if save(&services, &mut sub, expected, &mut conflicts).await? {
            return Ok(Json(SubscriptionView::masked(&sub)));
        }
    }
}

fn apply_update(sub: &mut Subscription, req: UpdateWebhook) {
    if let Some(url) = req.url {
        if url != sub.url {
            // The failures were another endpoint's.
            sub.failing_since = None;
            sub.consecutive_failures = 0;
            sub.failing_announced_at = None;
        }
        sub.url = url;
    }
    if let Some(types) = req.event_types {
        sub.event_types = types;
    }
    if let Some(d) = req.description {
        sub.description = d;
    }
    match req.enabled {
        Some(true) if !sub.enabled => health::reenable(sub),
        Some(enabled) => sub.enabled = enabled,
        None => {}
    }
    if let Some(auth) = req.auth {
        sub.auth = auth.map(|a| a.unmasked(sub.auth.as_ref()));
    }
    if let Some(headers) = req.headers {
        sub.headers = rules::unmask_headers(headers, &sub.headers);
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
}

/// Writes `sub` if nobody wrote it since it was read at `expected`; false means read it
/// again and redo the change. The delivery path writes a subscription when its endpoint's
/// health changes, so a customer's edit must not overwrite that, nor be overwritten.
pub(super) async fn save(
    services: &Services,
    sub: &mut Subscription,
    expected: u64,
    conflicts: &mut u32,
) -> Result<bool, ApiError> {
    sub.version = expected + 1;
    if services.subscriptions.put_if_version(sub, expected).await? {
        return Ok(true);
    }
    *conflicts += 1;
    if *conflicts >= 5 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "the webhook kept changing while this request was applied; try again",
        ));
    }
    Ok(false)
}

/// Deletes a subscription; queued deliveries to it are skipped.
#[utoipa::path(delete, path = "/v1/accounts/{account_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("account_id" = String, Path), ("webhook_id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_webhook(
    State(services): State<Services>,
    caller: Caller,
    Path((account_id, webhook_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let account = caller.account(&account_id)?;
    let webhook_id = parse_webhook_id(&webhook_id)?;
    if services.subscriptions.delete(&account, &webhook_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("webhook"))
    }
}
