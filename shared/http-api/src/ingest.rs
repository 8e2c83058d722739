//! Ingest: `POST /v1/events`. Validates, deduplicates on the event id, stores the event and
//! puts it on the events queue, then answers 202.

use std::collections::HashMap;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::extract::{parse_json, read_json_body, Caller};
use app::ingest::store_and_fan_out;
use app::Services;
use domain::event::{self, IncomingEvent, MAX_BATCH_EVENTS, MAX_EVENT_BYTES};
use domain::ids::EventId;
use domain::schema::Violation;

/// A full batch of maximal events, with room for the wrapper.
pub const MAX_INGEST_BODY_BYTES: usize = 6 * 1024 * 1024;

/// The OpenAPI document's view of `app::ingest::Accepted`.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Accepted {
    id: String,
    /// An event with this id was accepted before; nothing new is delivered.
    duplicate: bool,
}

/// An event as the platform posts it (the OpenAPI document's view of `IncomingEvent`).
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct EventInput {
    /// Idempotency key, up to 128 characters; generated when absent.
    id: Option<String>,
    /// One of `GET /v1/event-types`.
    #[serde(rename = "type")]
    event_type: String,
    account_id: String,
    /// RFC 3339; the time of receipt when absent.
    occurred_at: Option<String>,
    /// Valid against the type's JSON Schema.
    #[schema(value_type = Object)]
    data: serde_json::Value,
}

/// Up to 100 events at once.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct EventBatch {
    events: Vec<EventInput>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum IngestRequest {
    One(EventInput),
    Batch(EventBatch),
}

#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct BatchAccepted {
    results: Vec<Accepted>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum IngestResponse {
    One(Accepted),
    Batch(BatchAccepted),
}

/// Accepts one event, or a batch of up to 100 (platform key only). Answers 202 once the
/// events are stored and queued; a repeated id answers `duplicate: true`.
#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = IngestRequest,
    responses((status = 202, body = IngestResponse),
              (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody),
              (status = 413, body = crate::error::ErrorBody),
              (status = 415, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn ingest(
    State(services): State<Services>,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    caller.require_platform()?;
    let body = read_json_body(request, MAX_INGEST_BODY_BYTES).await?;
    let (raw_events, is_batch) = split_batch(&body)?;

    let now = services.clock.now();
    let mut events = Vec::with_capacity(raw_events.len());
    let mut violations = Vec::new();
    for (i, raw) in raw_events.iter().enumerate() {
        let prefix = if is_batch {
            format!("/events/{i}")
        } else {
            String::new()
        };
        if raw.get().len() > MAX_EVENT_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "event_too_large",
                format!("event {prefix} exceeds {MAX_EVENT_BYTES} bytes"),
            ));
        }
        let incoming: IncomingEvent = parse_json(raw.get().as_bytes()).map_err(|mut e| {
            if is_batch {
                e.message = format!("{prefix}: {}", e.message);
            }
            e
        })?;
        match event::accept(incoming, now, || EventId::generate(now, &*services.random)) {
            // Measured again as delivered: numbers are written out in full (`1e15` becomes
            // `1000000000000000.0`), so a body under the limit as posted can be several
            // times over it. Every event accepted then fits in a queue message and a
            // stored item, and no endpoint receives a body over the limit.
            Ok(e) if e.payload().len() > MAX_EVENT_BYTES => {
                let which = if is_batch {
                    format!("event {prefix}")
                } else {
                    "the event".to_string()
                };
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "event_too_large",
                    format!(
                        "{which} is {} bytes as delivered (its numbers written out in full), \
                         over the limit of {MAX_EVENT_BYTES} bytes",
                        e.payload().len()
                    ),
                ));
            }
            Ok(e) => events.push(e),
            Err(errs) => violations.extend(errs.into_iter().map(|v| Violation {
                pointer: format!("{prefix}{}", v.pointer),
                message: v.message,
            })),
        }
    }
    if !violations.is_empty() {
        return Err(ApiError::validation(violations));
    }

    let results = store_and_fan_out(&services, &events).await?;
    let body = if is_batch {
        serde_json::json!({ "results": results })
    } else {
        serde_json::to_value(&results[0]).expect("serialises")
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// One event, or `{"events": [...]}` with 1 to 100.
fn split_batch(body: &[u8]) -> Result<(Vec<Box<RawValue>>, bool), ApiError> {
    let fields: HashMap<String, Box<RawValue>> = parse_json(body)?;
    if fields.len() == 1 && fields.contains_key("events") {
        let events: Vec<Box<RawValue>> = parse_json(fields["events"].get().as_bytes())?;
        if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
            return Err(ApiError::validation(vec![Violation {
                pointer: "/events".into(),
                message: format!("must hold 1 to {MAX_BATCH_EVENTS} events"),
            }]));
        }
        return Ok((events, true));
    }
    let raw: Box<RawValue> = parse_json(body)?;
    Ok((vec![raw], false))
}
