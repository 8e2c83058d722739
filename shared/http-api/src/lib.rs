//! The HTTP API: axum routes that the local runner serves and the `ingest` and `api`
//! Lambda functions run through `lambda_http`, so every environment answers alike. Routes
//! are registered from their OpenAPI annotations, so the document cannot drift from them.

mod alerts;
mod catalog;
pub mod console;
mod dead_letters;
mod deliveries;
pub mod error;
mod events;
pub mod extract;
mod ingest;
mod keys;
mod meta;
mod observe;
mod openapi;
mod pagination;
mod stats;
mod views;
mod webhook_tools;
mod webhooks;

use axum::http::StatusCode;
use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use app::Services;
use error::ApiError;

fn ingest_routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(ingest::ingest))
}

fn management_routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(catalog::list_event_types))
        .routes(routes!(keys::list_api_keys, keys::create_api_key))
        .routes(routes!(keys::revoke_api_key))
        .routes(routes!(keys::whoami))
        .routes(routes!(keys::egress_ips))
        .routes(routes!(webhooks::list_webhooks, webhooks::create_webhook))
        .routes(routes!(
            webhooks::get_webhook,
            webhooks::update_webhook,
            webhooks::delete_webhook
        ))
        .routes(routes!(webhook_tools::test_webhook))
        .routes(routes!(webhook_tools::diagnose_webhook))
        .routes(routes!(webhook_tools::rotate_secret))
        .routes(routes!(webhook_tools::expire_previous_secrets))
        .routes(routes!(webhook_tools::list_webhook_deliveries))
        .routes(routes!(stats::webhook_stats))
        .routes(routes!(stats::account_stats))
        .routes(routes!(alerts::get_alerts, alerts::put_alerts))
        .routes(routes!(webhook_tools::recover_webhook))
        .routes(routes!(deliveries::get_delivery))
        .routes(routes!(deliveries::retry_delivery))
        .routes(routes!(dead_letters::list_dead_letters))
        .routes(routes!(dead_letters::redrive_dead_letters))
        .routes(routes!(events::list_events))
        .routes(routes!(events::get_event))
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
        .routes(routes!(meta::jwks))
}

/// Ingest and management together, as API Gateway routes them to the two functions.
pub fn router(services: Services) -> Router {
    let (routes, _) = ingest_routes()
        .merge(management_routes())
        .merge(meta_routes())
        .split_for_parts();
    finish(routes.merge(console::routes()), services)
}

/// What the `ingest` function serves.
pub fn ingest_app(services: Services) -> Router {
    let (routes, _) = ingest_routes().split_for_parts();
    finish(routes, services)
}

/// What the `api` function serves.
pub fn management_app(services: Services) -> Router {
    let (routes, _) = management_routes().merge(meta_routes()).split_for_parts();
    finish(routes.merge(console::routes()), services)
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
        .layer(axum::middleware::from_fn(observe::observe))
        .with_state(services)
}
