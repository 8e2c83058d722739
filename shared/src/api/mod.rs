//! The HTTP API: one axum router that the local runner serves and the `ingest` and `api`
//! Lambda functions run through `lambda_http`, so every environment answers alike.

mod catalog;
mod deliveries;
pub mod error;
pub mod extract;
mod keys;
mod pagination;
mod views;
mod webhooks;

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::handlers::ingest;
use crate::Services;
use error::ApiError;

/// The management API (everything but ingest).
pub fn management_router() -> Router<Services> {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .merge(catalog::router())
        .merge(keys::router())
        .merge(webhooks::router())
        .merge(deliveries::router())
}

/// Ingest and management together, as API Gateway routes them to the two functions.
pub fn router(services: Services) -> Router {
    finish(ingest::router().merge(management_router()), services)
}

/// What the `ingest` function serves.
pub fn ingest_app(services: Services) -> Router {
    finish(ingest::router(), services)
}

/// What the `api` function serves.
pub fn management_app(services: Services) -> Router {
    finish(management_router(), services)
}

/// Our JSON errors for unknown routes and methods, and the state.
fn finish(routes: Router<Services>, services: Services) -> Router {
    routes
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "no such route")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .with_state(services)
}
