//! The HTTP API: axum routes that the local runner serves and the `ingest` and `api`
//! Lambda functions run through `lambda_http`, so every environment answers alike. Routes
//! are registered from their OpenAPI annotations, so the document cannot drift from them.

mod catalog;
mod dead_letters;
mod deliveries;
pub mod error;
mod events;
pub mod extract;
mod keys;
mod meta;
mod openapi;
mod pagination;
mod views;
mod webhook_tools;
mod webhooks;

use axum::http::StatusCode;
use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::handlers::ingest;
use crate::Services;
use error::ApiError;

fn ingest_routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(ingest::ingest))
}

fn management_routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(catalog::list))
        .routes(routes!(keys::create))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::show, webhooks::update, webhooks::remove))
        .routes(routes!(webhook_tools::send_test))
        .routes(routes!(webhook_tools::rotate_secret))
        .routes(routes!(webhook_tools::list_deliveries))
        .routes(routes!(webhook_tools::stats))
        .routes(routes!(webhook_tools::recover))
        .routes(routes!(deliveries::show))
        .routes(routes!(deliveries::retry))
        .routes(routes!(dead_letters::list))
        .routes(routes!(dead_letters::redrive_dead))
        .routes(routes!(events::list))
        .routes(routes!(events::show))
}

/// The OpenAPI 3.1 document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = openapi::base()
        .merge(ingest_routes())
        .merge(management_routes())
        .merge(meta_routes())
        .split_for_parts();
    api
}

fn meta_routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::openapi_json))
}

/// Ingest and management together, as API Gateway routes them to the two functions.
pub fn router(services: Services) -> Router {
    let (routes, _) = ingest_routes()
        .merge(management_routes())
        .merge(meta_routes())
        .split_for_parts();
    finish(routes, services)
}

/// What the `ingest` function serves.
pub fn ingest_app(services: Services) -> Router {
    let (routes, _) = ingest_routes().split_for_parts();
    finish(routes, services)
}

/// What the `api` function serves.
pub fn management_app(services: Services) -> Router {
    let (routes, _) = management_routes().merge(meta_routes()).split_for_parts();
    finish(routes, services)
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
