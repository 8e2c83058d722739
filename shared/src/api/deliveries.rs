use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};

use super::error::ApiError;
use super::extract::Caller;
use super::views::{AttemptView, DeliveryView, RequestView};
use crate::Services;

pub fn router() -> Router<Services> {
    Router::new().route(
        "/v1/accounts/{account_id}/deliveries/{delivery_id}",
        get(show),
    )
}

/// The payload inspector: the delivery, the exact request (credentials masked) and every
/// attempt.
async fn show(
    State(services): State<Services>,
    caller: Caller,
    Path((account_id, delivery_id)): Path<(String, String)>,
) -> Result<Json<DeliveryView>, ApiError> {
    let account = caller.account(&account_id)?;
    let delivery = services
        .deliveries
        .get(account, &delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    let attempts = services.deliveries.attempts(account, &delivery_id).await?;
    let event = services.events.get(account, &delivery.event_id).await?;
    let last = attempts.last();
    let url = match last {
        Some(a) => Some(a.url.clone()),
        None => services
            .subscriptions
            .get(account, &delivery.subscription_id)
            .await?
            .map(|s| s.url),
    };
    let mut view = DeliveryView::summary(&delivery);
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
