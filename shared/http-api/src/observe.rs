//! What every request goes through before its route: a `tracing` span naming the route
//! and the account, and a net for panics. A bug reached by some input answers a JSON 500
//! with a request id that is also in the log line, instead of dropping the connection
//! (which a client cannot tell from a network fault, and retries).

use std::panic::AssertUnwindSafe;

use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use tracing::Instrument;

use crate::error::ApiError;
use app::ports::OsRandom;

pub async fn observe(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let account_id = account_of(request.uri().path())
        .unwrap_or_default()
        .to_owned();
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route,
        account_id = %account_id,
    );
    match AssertUnwindSafe(next.run(request).instrument(span.clone()))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(panic) => {
            let request_id = domain::ids::token_string("req_", 12, &OsRandom);
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            span.in_scope(|| {
                tracing::error!(request_id = %request_id, panic = %message, "a request panicked")
            });
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("an internal error occurred (request {request_id})"),
            )
            .into_response()
        }
    }
}

/// The account a `/v1/accounts/{account_id}/…` path names, for the span.
fn account_of(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/accounts/")?.split('/').next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_route_answers_a_json_500_with_a_request_id() {
        let app = Router::new()
            .route(
                "/v1/accounts/{account_id}/boom",
                get(|| async {
                    if true {
                        panic!("a bug");
                    }
                    "unreachable"
                }),
            )
            .route("/fine", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(observe));
        let response = app
            .clone()
            .oneshot(
                Request::builder()
                    .uri("/v1/accounts/acct_1/boom")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "internal");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("request req_"),
            "{body}"
        );
        let fine = app
            .oneshot(Request::builder().uri("/fine").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(fine.status(), StatusCode::OK);
    }

    #[test]
    fn the_account_is_read_from_the_path() {
        assert_eq!(account_of("/v1/accounts/acct_1/webhooks"), Some("acct_1"));
        assert_eq!(account_of("/v1/events"), None);
    }
}
