//! A subscription's tools: send a test event, rotate the secret, list its deliveries, and
//! recover what failed in a time window (its stats are in `stats`).

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody, OptionalJsonBody};
use super::pagination::{limit, Paginated};
use super::views::DeliveryView;
use super::webhooks::{load, parse_webhook_id, save};
use app::deliver::send_once;
use app::redrive::redrive;
use app::Services;
use domain::catalog::{self, EventType};
use domain::delivery::{Delivery, DeliveryStatus, Payload};
use domain::event::{data_violations, parse_rfc3339, Event};
use domain::ids::EventId;
use domain::schema::Violation;
use domain::subscription::SignatureScheme;
use domain::time::Timestamp;

/// How long a rotated-out secret keeps signing.
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// A test send waits at most this long for the endpoint.
pub const MAX_TEST_TIMEOUT_SECONDS: u32 = 25;
/// A diagnosis phase (DNS, connect, TLS, HTTP) waits at most this long (and the whole
/// diagnosis at most `http_client::TOTAL_DIAGNOSIS_BUDGET`, within API Gateway's 29 s).
pub const MAX_DIAGNOSE_PHASE_SECONDS: u32 = 6;
/// The most deliveries one recover call requeues.
pub const MAX_RECOVER: usize = 1000;

#[derive(Serialize, ToSchema)]
pub struct TestResult {
    pub success: bool,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub response_body: Option<String>,
    pub error: Option<String>,
    /// The logged delivery of the test event.
    pub delivery_id: String,
}

/// What to send as a test; everything is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// Any type of the catalog (`GET /v1/event-types`); `webhook.test` when left out.
    pub event_type: Option<String>,
    /// The event's `data`, held to the type's schema; the type's example when left out.
    pub data: Option<serde_json::Value>,
}

/// Sends a signed test event to the endpoint now, once, and logs it like any delivery: a
/// `webhook.test` by default, or any catalog type with its example or the given data (so a
/// receiver's handling of `call.ended` can be tried before a real call ends).
#[utoipa::path(post, path = "/v1/accounts/{account_id}/webhooks/{webhook_id}/test", tag = "webhooks",
    params(("account_id" = String, Path), ("webhook_id" = String, Path)),
    request_body = Option<TestRequest>,
    responses((status = 200, body = TestResult), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn test_webhook(
    State(services): State<Services>,
    headers: HeaderMap,
    caller: Caller,
    Path((account_id, webhook_id)): Path<(String, String)>,
    OptionalJsonBody(req): OptionalJsonBody<TestRequest>,
) -> Result<Json<TestResult>, ApiError> {
    let account = caller.account(&account_id)?;
    let webhook_id = parse_webhook_id(&webhook_id)?;
    let (event_type, data) = test_event(req)?;
    let mut sub = load(&services, &account, &webhook_id).await?;
    // The answer must fit in API Gateway's 29 s.
    sub.timeout_seconds = sub.timeout_seconds.min(MAX_TEST_TIMEOUT_SECONDS);
    let now = services.clock.now();
    let event = Event {
        id: EventId::generate(now, &*services.random),
        event_type,
        account_id: account.clone(),
        occurred_at: now.to_rfc3339(),
        received_at: now,
        data: data.unwrap_or_else(|| {
            serde_json::json!({
                "message": "This is a test event from the webhook service.",
                "webhook_id": sub.id,
            })
        }),
    };
    services
        .events
        .insert_batch(std::slice::from_ref(&event))
        .await?;
    // Sent even to a paused endpoint: testing it is how one decides to resume it. So its
    // delivery starts pending, where fan-out would record it skipped, and the outcome of
    // the send is what it shows.
    let mut delivery = Delivery::new(&event, &sub, now);
    delivery.status = DeliveryStatus::Pending;
    delivery.last_error = None;
    services
        .deliveries
        .create_batch(std::slice::from_ref(&delivery))
        .await?;
    let task = delivery.task(Payload::of(&event));
    let (mut update, result) = send_once(&as_published(&services, &headers), &sub, &task, 1).await;
    let success = result.status.is_some_and(|s| (200..300).contains(&s));
    update.status = if success {
        DeliveryStatus::Succeeded
    } else {
        DeliveryStatus::Failed
    };
    update.next_attempt_at = None;
    services.deliveries.record(&[update]).await?;
    Ok(Json(TestResult {
        success,
        status_code: result.status,
        latency_ms: result.latency.as_millis() as u64,
        response_body: result.body,
        error: result.error.map(|e| e.to_string()),
        delivery_id: delivery.id.into_string(),
    }))
}

/// Takes the endpoint's path apart phase by phase, with what a delivery would send (a
/// signed `webhook.test`): DNS answers, the address guard's decision on each address, TCP
/// connect, TLS (protocol, certificate, verification error), HTTP status and time to first
/// byte. A refused address is reported as refused, never connected to. Nothing is logged.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/webhooks/{webhook_id}/diagnose", tag = "webhooks",
    params(("account_id" = String, Path), ("webhook_id" = String, Path)),
    responses((status = 200, body = domain::diagnosis::Diagnosis), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn diagnose_webhook(
    State(services): State<Services>,
    headers: HeaderMap,
    caller: Caller,
    Path((account_id, webhook_id)): Path<(String, String)>,
) -> Result<Json<domain::diagnosis::Diagnosis>, ApiError> {
    let account = caller.account(&account_id)?;
    let webhook_id = parse_webhook_id(&webhook_id)?;
    let mut sub = load(&services, &account, &webhook_id).await?;
    // The answer must fit in API Gateway's 29 s: each phase has at most this long.
    sub.timeout_seconds = sub.timeout_seconds.min(MAX_DIAGNOSE_PHASE_SECONDS);
    Ok(Json(
        app::deliver::diagnose(&as_published(&services, &headers), &sub).await,
    ))
}

/// The services with the public URL this request came in by, when the deployment names
/// none: it is the `iss` of a JWT receiver's token. On AWS the api function cannot be told
/// the HTTP API's URL (the API refers to the function, so the function may not refer to
/// the API), while deliver is told it; API Gateway's `Host` is that same URL.
fn as_published(services: &Services, headers: &HeaderMap) -> Services {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        });
    match host {
        Some(host) if services.settings.console_url.is_empty() => {
            let mut services = services.clone();
            services.settings.console_url = format!("https://{host}");
            services
        }
        _ => services.clone(),
    }
}

/// The test event's type and data (`None`: the `webhook.test` message), checked as ingest
/// checks an event.
fn test_event(req: TestRequest) -> Result<(EventType, Option<serde_json::Value>), ApiError> {
    let name = req.event_type.as_deref().unwrap_or("webhook.test");
    let (Some(spec), Some(event_type)) = (catalog::find(name), EventType::known(name)) else {
        return Err(ApiError::validation(vec![Violation {
            pointer: "/event_type".into(),
            message: "is not a known event type (see GET /v1/event-types)".into(),
        }]));
    };
    let data = match req.data {
        None if name == "webhook.test" => return Ok((event_type, None)),
        None => spec.example.clone(),
        Some(data) => data,
    };
    let violations = data_violations(spec, &data);
    if !violations.is_empty() {
        return Err(ApiError::validation(violations));
    }
    Ok((event_type, Some(data)))
}

#[derive(Serialize, ToSchema)]
pub struct RotatedSecret {
    /// The new HMAC secret, shown only here; null for an `ed25519` subscription. The
    /// previous secret or key keeps signing for 24 hours.
    pub secret: Option<String>,
    /// The new public key of an `ed25519` subscription (`whpk_…`); null for `hmac`.
    pub public_key: Option<String>,
}

/// Replaces the signing secret. For 24 h deliveries carry both signatures. At most three
/// secrets sign at once: rotating again inside the overlap retires the oldest still-valid
/// one early (a rotation is never refused, as it is the answer to a leaked secret).
#[utoipa::path(post, path = "/v1/accounts/{account_id}/webhooks/{webhook_id}/rotate-secret", tag = "webhooks",
    params(("account_id" = String, Path), ("webhook_id" = String, Path)),
    responses((status = 200, body = RotatedSecret), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rotate_secret(
    State(services): State<Services>,
    caller: Caller,
    Path((account_id, webhook_id)): Path<(String, String)>,
) -> Result<Json<RotatedSecret>, ApiError> {
    let account = caller.account(&account_id)?;
    let webhook_id = parse_webhook_id(&webhook_id)?;
    let mut conflicts = 0;
    loop {
        let mut sub = load(&services, &account, &webhook_id).await?;
        let expected = sub.version;
        let secret = sub.signature.generate_secret(&*services.random);
        sub.rotate_secret(&secret, services.clock.now(), ROTATION_OVERLAP);
        if save(&services, &mut sub, expected, &mut conflicts).await? {
            return Ok(Json(match sub.signature {
                SignatureScheme::Hmac => RotatedSecret {
                    secret: Some(secret),
                    public_key: None,
                },
                SignatureScheme::Ed25519 => RotatedSecret {
                    secret: None,
                    public_key: sub.public_key(),
                },
            }));
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ExpiredSecrets {
    /// How many earlier secrets stopped signing (0 when only the current one was left).
    pub expired: usize,
}

/// Stops every secret but the current one from signing, now: after a rotation made because
/// a secret leaked, the 24 h overlap need not be waited out. Deliveries from now on carry
/// the current secret's signature only.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/webhooks/{webhook_id}/expire-previous-secrets", tag = "webhooks",
    params(("account_id" = String, Path), ("webhook_id" = String, Path)),
    responses((status = 200, body = ExpiredSecrets), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn expire_previous_secrets(
    State(services): State<Services>,
    caller: Caller,
    Path((account_id, webhook_id)): Path<(String, String)>,
) -> Result<Json<ExpiredSecrets>, ApiError> {
    let account = caller.account(&account_id)?;
    let webhook_id = parse_webhook_id(&webhook_id)?;
    let mut conflicts = 0;
    loop {
        let mut sub = load(&services, &account, &webhook_id).await?;
        let expected = sub.version;
        let expired = sub.expire_previous_secrets(services.clock.now());
        if expired == 0 {
            return Ok(Json(ExpiredSecrets { expired }));
        }
        if save(&services, &mut sub, expected, &mut conflicts).await? {
            return Ok(Json(ExpiredSecrets { expired }));
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only deliveries in this status.
    #[param(inline, value_type = Option<String>, example = "failed")]
    pub status: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

pub fn parse_status(s: Option<&str>) -> Result<Option<DeliveryStatus>, ApiError> {
    s.map(|s| {
        DeliveryStatus::parse(s).ok_or_else(|| {
            ApiError::validation(vec![domain::schema::Violation {
                pointer: "/status".into(),
                message: "must be one of pending, succeeded, failed, dead, skipped".into(),
            }])
        })
    })
    .transpose()
}

/// The subscription's deliveries, newest first.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/webhooks/{webhook_id}/deliveries", tag = "deliveries",
    params(("account_id" = String, Path), ("webhook_id" = String, Path), DeliveryQuery),
    responses((status = 200, body = Paginated<DeliveryView>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_webhook_deliveries(
    State(services): State<Services>,
    caller: Caller,
    Path((account_id, webhook_id)): Path<(String, String)>,
    Query(q): Query<DeliveryQuery>,
) -> Result<Json<Paginated<DeliveryView>>, ApiError> {
    let account = caller.account(&account_id)?;
    let webhook_id = parse_webhook_id(&webhook_id)?;
    load(&services, &account, &webhook_id).await?;
    let status = parse_status(q.status.as_deref())?;
    let page = services
        .deliveries
        .list_for_subscription(
            &account,
            &webhook_id,
            status,
            q.cursor.as_deref(),
            limit(q.limit)?,
        )
        .await?;
    Ok(Json(Paginated {
        data: page.items.iter().map(DeliveryView::summary).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    /// RFC 3339; deliveries created at or after it.
    pub since: String,
    /// RFC 3339; deliveries created before it (default: now).
    #[serde(default)]
    pub until: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Requeued {
    pub requeued: usize,
}

/// Sends the subscription's failed and dead deliveries of a window again, each with a
/// fresh attempt budget.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/webhooks/{webhook_id}/recover", tag = "webhooks",
    params(("account_id" = String, Path), ("webhook_id" = String, Path)),
    request_body = RecoverRequest,
    responses((status = 202, body = Requeued), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn recover_webhook(
    State(services): State<Services>,
    caller: Caller,
    Path((account_id, webhook_id)): Path<(String, String)>,
    JsonBody(req): JsonBody<RecoverRequest>,
) -> Result<(StatusCode, Json<Requeued>), ApiError> {
    let account = caller.account(&account_id)?;
    let webhook_id = parse_webhook_id(&webhook_id)?;
    load(&services, &account, &webhook_id).await?;
    let bad_time = |pointer: &str| {
        ApiError::validation(vec![domain::schema::Violation {
            pointer: pointer.into(),
            message: "must be an RFC 3339 date-time".into(),
        }])
    };
    let timestamp = |t: time::OffsetDateTime| {
        Timestamp::from_millis((t.unix_timestamp_nanos() / 1_000_000) as i64)
    };
    let since = parse_rfc3339(&req.since)
        .map(timestamp)
        .ok_or_else(|| bad_time("/since"))?;
    let until = match &req.until {
        Some(u) => parse_rfc3339(u)
            .map(timestamp)
            .ok_or_else(|| bad_time("/until"))?,
        None => services.clock.now().plus_millis(1),
    };
    let mut found = Vec::new();
    for status in [DeliveryStatus::Failed, DeliveryStatus::Dead] {
        let mut cursor = None;
        loop {
            let page = services
                .deliveries
                .list_for_subscription(&account, &webhook_id, Some(status), cursor.as_deref(), 100)
                .await?;
            let mut older = false;
            for d in page.items {
                if d.created_at < since {
                    older = true;
                } else if d.created_at < until {
                    found.push(d);
                }
            }
            match page.next_cursor {
                Some(c) if !older && found.len() < MAX_RECOVER => cursor = Some(c),
                _ => break,
            }
        }
    }
    found.truncate(MAX_RECOVER);
    let requeued = redrive(&services, &found).await?;
    Ok((StatusCode::ACCEPTED, Json(Requeued { requeued })))
}
