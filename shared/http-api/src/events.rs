//! Event history: `/v1/accounts/{account_id}/events`.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{path_id, Caller};
use super::pagination::{limit, Paginated};
use super::views::DeliveryView;
use app::Services;
use domain::event::Event;
use domain::ids::EventId;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only events of this type.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub account_id: String,
    pub occurred_at: String,
    pub received_at: String,
    pub data: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<Vec<DeliveryView>>,
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> Self {
        EventView {
            id: e.id.to_string(),
            event_type: e.event_type.to_string(),
            account_id: e.account_id.to_string(),
            occurred_at: e.occurred_at.clone(),
            received_at: e.received_at.to_rfc3339(),
            data: e.data.clone(),
            deliveries: None,
        }
    }
}

/// The account's events, newest first.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/events", tag = "events",
    params(("account_id" = String, Path), EventQuery),
    responses((status = 200, body = Paginated<EventView>), (status = 400, body = super::error::ErrorBody),
              (status = 401, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_events(
    State(services): State<Services>,
    caller: Caller,
    Path(account_id): Path<String>,
    Query(q): Query<EventQuery>,
) -> Result<Json<Paginated<EventView>>, ApiError> {
    let account = caller.account(&account_id)?;
    let page = services
        .events
        .list(
            &account,
            q.event_type.as_deref(),
            q.cursor.as_deref(),
            limit(q.limit)?,
        )
        .await?;
    Ok(Json(Paginated {
        data: page.items.iter().map(EventView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One event with its deliveries.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/events/{event_id}", tag = "events",
    params(("account_id" = String, Path), ("event_id" = String, Path)),
    responses((status = 200, body = EventView), (status = 401, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_event(
    State(services): State<Services>,
    caller: Caller,
    Path((account_id, event_id)): Path<(String, String)>,
) -> Result<Json<EventView>, ApiError> {
    let account = caller.account(&account_id)?;
    let event_id: EventId = path_id(&event_id, "event")?;
    let event = services
        .events
        .get(&account, &event_id)
        .await?
        .ok_or_else(|| ApiError::not_found("event"))?;
    let deliveries = services
        .deliveries
        .list_for_event(&account, &event_id)
        .await?;
    let mut view = EventView::from(&event);
    view.deliveries = Some(deliveries.iter().map(DeliveryView::summary).collect());
    Ok(Json(view))
}
