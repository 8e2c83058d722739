use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::domain::catalog;
use crate::Services;

pub fn router() -> Router<Services> {
    Router::new().route("/v1/event-types", get(list))
}

async fn list() -> Json<Value> {
    Json(json!({ "data": catalog::catalog() }))
}
