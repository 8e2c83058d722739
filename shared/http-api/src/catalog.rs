use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use domain::catalog::{self, EventTypeSpec};

#[derive(Serialize, ToSchema)]
pub struct EventTypes {
    pub data: &'static [EventTypeSpec],
}

/// Every event type with its description, JSON Schema and an example.
#[utoipa::path(get, path = "/v1/event-types", tag = "catalog",
    responses((status = 200, body = EventTypes), (status = 401, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_event_types(_caller: super::extract::Caller) -> Json<EventTypes> {
    Json(EventTypes {
        data: catalog::catalog(),
    })
}
