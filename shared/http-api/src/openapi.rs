//! The document's frame: title, security scheme, tags. Paths come from the routes.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use app::Services;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Webhooks",
        description = "Signed, retried, isolated webhook delivery for the voice-agent platform. \
            Every route but /healthz, /openapi.json and /v1/.well-known/jwks.json needs \
            `Authorization: Bearer <key>`: \
            the platform key, or an account key for that account's routes.",
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "events", description = "Ingest and event history"),
        (name = "webhooks", description = "Subscriptions and their tools"),
        (name = "deliveries", description = "Deliveries and their attempts"),
        (name = "dead letters", description = "Deliveries whose attempts ran out"),
        (name = "accounts", description = "Account keys"),
        (name = "stats", description = "Outcomes over time and failures by cause"),
        (name = "alerts", description = "Alert e-mail: addresses, events and the failure threshold"),
        (name = "catalog", description = "Event types"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn base() -> OpenApiRouter<Services> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
}
