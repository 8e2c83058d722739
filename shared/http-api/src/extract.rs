//! Request extractors that fail with our error body: bearer-key authentication and JSON
//! bodies that reject unknown fields.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use app::Services;
use domain::api_key::{hash_key, hashes_equal, Principal};

/// The largest request body on any route but ingest.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The authenticated caller.
pub struct Caller(pub Principal);

impl Caller {
    /// The account a route names, if this caller may see it; 404 otherwise.
    pub fn account<'a>(&self, account_id: &'a str) -> Result<&'a str, ApiError> {
        if self.0.can_access(account_id) {
            Ok(account_id)
        } else {
            Err(ApiError::not_found("account"))
        }
    }

    pub fn require_platform(&self) -> Result<(), ApiError> {
        match self.0 {
            Principal::Platform => Ok(()),
            Principal::Account(_) => Err(ApiError::forbidden_for_account_keys()),
        }
    }
}

impl FromRequestParts<Services> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Services) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or_else(ApiError::unauthorized)?;
        let hash = hash_key(key);
        if hashes_equal(&hash, &services.settings.platform_key_hash) {
            return Ok(Caller(Principal::Platform));
        }
        match services.api_keys.find_by_hash(&hash).await? {
            Some(record) if hashes_equal(&record.key_hash, &hash) => {
                Ok(Caller(Principal::Account(record.account_id)))
            }
            _ => Err(ApiError::unauthorized()),
        }
    }
}

/// The credentials of an `Authorization: Bearer <key>` value. The scheme is matched in any
/// case, as RFC 9110 says of every authentication scheme, so `bearer` and `BEARER` work.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, key) = value.trim_start().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

/// Reads a JSON body of at most `limit` bytes.
pub async fn read_json_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim();
            m.eq_ignore_ascii_case("application/json") || m.to_ascii_lowercase().ends_with("+json")
        });
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as `content-type: application/json`",
        ));
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body exceeds {limit} bytes"),
            )
        })
}

/// Parses JSON into `T`, naming unknown fields and type errors in the message.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let message = e.to_string();
        let code = if message.starts_with("unknown field") || message.starts_with("unknown variant")
        {
            "unknown_field"
        } else if e.is_syntax() || e.is_eof() {
            "invalid_json"
        } else {
            "invalid_body"
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    })
}

/// A JSON request body (management routes).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let bytes = read_json_body(req, MAX_BODY_BYTES).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        for value in [
            "Bearer k1",
            "bearer k1",
            "BEARER k1",
            "bEaReR   k1 ",
            " Bearer k1",
        ] {
            assert_eq!(bearer_token(value), Some("k1"), "{value:?}");
        }
        for value in [
            "Basic k1",
            "Bearerk1",
            "Bearers k1",
            "Bearer ",
            "Bearer",
            "",
            "k1",
        ] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }
}
