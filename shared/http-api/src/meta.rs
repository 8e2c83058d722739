//! Routes about the service itself; no key needed.

use std::sync::OnceLock;

use app::Services;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` when the stores cannot be reached.
    pub status: &'static str,
}

/// Health: answers 200 only when the stores answer a read. A process whose database writer
/// has stopped, or whose tables are unreachable, fails here rather than looking alive while
/// every write fails.
#[utoipa::path(get, path = "/healthz", tag = "meta", responses(
    (status = 200, body = Health),
    (status = 503, body = Health, description = "The stores cannot be reached"),
))]
pub async fn healthz(State(services): State<Services>) -> (StatusCode, Json<Health>) {
    // A lookup of a hash no key can have: one cheap read through the same path as every
    // request's authentication.
    match services.api_keys.find_by_hash(PROBE_HASH).await {
        Ok(_) => (StatusCode::OK, Json(Health { status: "ok" })),
        Err(e) => {
            tracing::error!(error = %e, "health check failed: the stores cannot be reached");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "unavailable",
                }),
            )
        }
    }
}

const PROBE_HASH: &str = "healthz-probe";

/// The public keys that sign the JWT of subscriptions with `"auth": {"type": "jwt"}` (a
/// JWKS, RFC 7517): a receiver verifies each delivery's token with the key its `kid` names.
/// A new key appears here a day before it signs; cache the set for minutes, not days, and
/// fetch it again on an unknown `kid`.
#[utoipa::path(get, path = "/v1/.well-known/jwks.json", tag = "meta", responses(
    (status = 200, description = "The JWKS: `{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", \"x\", \"y\", \"kid\", \"use\": \"sig\", \"alg\": \"ES256\"}]}`", content_type = "application/json"),
    (status = 503, body = crate::error::ErrorBody, description = "The key store cannot be reached"),
))]
pub async fn jwks(State(services): State<Services>) -> Result<impl IntoResponse, ApiError> {
    let document = app::jwt::jwks(&services).await?;
    Ok((
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(document),
    ))
}

/// This document: OpenAPI 3.1 of every route.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> impl IntoResponse {
    static DOC: OnceLock<String> = OnceLock::new();
    let doc = DOC.get_or_init(|| super::openapi().to_json().expect("the document serialises"));
    ([(header::CONTENT_TYPE, "application/json")], doc.as_str())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use app::ports::{ApiKeyStore, NoOutboundHttp, SystemClock};
    use app::{Error, Result, Services, Settings};
    use domain::api_key::ApiKeyRecord;
    use domain::ids::{AccountId, ApiKeyId};
    use domain::time::Timestamp;

    /// The embedded store after its writer thread stopped: every call fails.
    struct Stopped;

    #[async_trait]
    impl ApiKeyStore for Stopped {
        async fn create(&self, _: &ApiKeyRecord) -> Result<()> {
            Err(Error::storage("the database thread has stopped"))
        }
        async fn find_by_hash(&self, _: &str) -> Result<Option<ApiKeyRecord>> {
            Err(Error::storage("the database thread has stopped"))
        }
        async fn list(&self, _: &AccountId) -> Result<Vec<ApiKeyRecord>> {
            Err(Error::storage("the database thread has stopped"))
        }
        async fn revoke(
            &self,
            _: &AccountId,
            _: &ApiKeyId,
            _: Timestamp,
        ) -> Result<Option<ApiKeyRecord>> {
            Err(Error::storage("the database thread has stopped"))
        }
        async fn record_use(&self, _: &str, _: Timestamp) -> Result<bool> {
            Err(Error::storage("the database thread has stopped"))
        }
        async fn delete(&self, _: &AccountId, _: &ApiKeyId) -> Result<bool> {
            Err(Error::storage("the database thread has stopped"))
        }
    }

    async fn health(stopped: bool) -> u16 {
        let clock = Arc::new(SystemClock);
        let mut stores = store_memory::stores(clock.clone());
        if stopped {
            stores.api_keys = Arc::new(Stopped);
        }
        let vars = app::config::Vars::new(|name: &str| {
            (name == "PLATFORM_KEY_HASH").then(|| "x".to_string())
        });
        let settings = Settings::from_vars(&vars).unwrap();
        let services = Services::new(stores, Arc::new(NoOutboundHttp), clock, settings);
        crate::router(services)
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    #[tokio::test]
    async fn health_fails_when_the_stores_cannot_be_reached() {
        assert_eq!(health(false).await, 200);
        assert_eq!(health(true).await, 503);
    }
}
