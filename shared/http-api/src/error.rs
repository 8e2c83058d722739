//! The error body of every failed request: `{"error": {"code", "message", "details"?}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use domain::schema::Violation;

/// The body of every error, for the OpenAPI document.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable, snake_case.
    pub code: String,
    /// For humans.
    pub message: String,
    /// Where the request is wrong, as JSON pointers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<Violation>>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<Violation>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn validation(details: Vec<Violation>) -> Self {
        ApiError {
            details,
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "validation_failed",
                "the request is not valid; see details",
            )
        }
    }

    /// The same answer for "missing" and "not yours", so accounts cannot probe each other.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid `Authorization: Bearer <key>` header is required",
        )
    }

    pub fn forbidden_for_account_keys() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this route needs the platform key",
        )
    }
}

impl From<app::Error> for ApiError {
    fn from(err: app::Error) -> Self {
        use app::ErrorKind;
        match (err.kind(), err) {
            (_, app::Error::InvalidCursor) => ApiError::validation(vec![Violation {
                pointer: "/cursor".into(),
                message: "is not a cursor this listing gave out".into(),
            }]),
            (ErrorKind::NotFound, _) => ApiError::not_found("resource"),
            // Refused the same way every time: the message names the limit.
            (_, app::Error::TooLarge(what)) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", what)
            }
            (_, app::Error::Conflict(what)) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{what} already exists"),
            ),
            (ErrorKind::Transient, e) => {
                tracing::error!(error = %e, "request failed on a dependency");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "a dependency failed; nothing was changed, try again",
                )
            }
            (_, e) => {
                tracing::error!(error = %e, "request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "an internal error occurred",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if !self.details.is_empty() {
            error["details"] = serde_json::to_value(&self.details).expect("violations serialise");
        }
        (self.status, axum::Json(json!({ "error": error }))).into_response()
    }
}
