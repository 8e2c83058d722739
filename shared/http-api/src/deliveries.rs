use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{path_id, Caller};
use super::views::{AttemptView, DeliveryView, RequestView};
use app::redrive::{can_redrive, redrive};
use app::Services;
use domain::delivery::DeliveryStatus;
use domain::ids::DeliveryId;

/// The payload inspector: the delivery, the exact request (credentials masked) and every
/// attempt.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/deliveries/{delivery_id}", tag = "deliveries",
    params(("account_id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 200, body = DeliveryView), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_delivery(
    State(services): State<Services>,
    caller: Caller,
    Path((account_id, delivery_id)): Path<(String, String)>,
) -> Result<Json<DeliveryView>, ApiError> {
    let account = caller.account(&account_id)?;
    let delivery_id: DeliveryId = path_id(&delivery_id, "delivery")?;
    let delivery = services
        .deliveries
        .get(&account, &delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    let attempts = services.deliveries.attempts(&account, &delivery_id).await?;
    let event = services.events.get(&account, &delivery.event_id).await?;
    let last = attempts.last();
    let url = match last {
        Some(a) => Some(a.url.clone()),
        None => services
            .subscriptions
            .get(&account, &delivery.subscription_id)
            .await?
            .map(|s| s.url),
    };
    let mut view = DeliveryView::summary(&delivery);
    // Attempts are written before the outcome that counts them, and read here after it: a
    // send that is logged but not yet counted is shown, and counted, with the rest.
    view.attempt_count = view.attempt_count.max(attempts.len() as u32);
    view.request = Some(RequestView {
        url,
        headers: last
            .map(|a| a.request_headers.iter().cloned().collect())
            .unwrap_or_default(),
        body: event.map(|e| serde_json::from_str(&e.payload()).expect("a payload is JSON")),
    });
    view.attempts = Some(attempts.iter().map(AttemptView::from).collect());
    Ok(Json(view))
}

#[derive(Serialize, ToSchema)]
pub struct Retried {
    pub id: String,
    #[schema(value_type = String)]
    pub status: DeliveryStatus,
}

/// Sends a delivery again now, with a fresh attempt budget and the same `webhook-id`.
/// A delivery still pending (queued or waiting for a retry) answers 409.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/deliveries/{delivery_id}/retry", tag = "deliveries",
    params(("account_id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 202, body = Retried), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn retry_delivery(
    State(services): State<Services>,
    caller: Caller,
    Path((account_id, delivery_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Retried>), ApiError> {
    let account = caller.account(&account_id)?;
    let delivery_id: DeliveryId = path_id(&delivery_id, "delivery")?;
    let delivery = services
        .deliveries
        .get(&account, &delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    if !can_redrive(delivery.status) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "delivery_pending",
            "the delivery is still queued or waiting for a retry",
        ));
    }
    if redrive(&services, std::slice::from_ref(&delivery)).await? == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "event_expired",
            "the event has passed its retention; there is nothing left to send",
        ));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Retried {
            id: delivery.id.into_string(),
            status: DeliveryStatus::Pending,
        }),
    ))
}
