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
use domain::ids::{AccountId, ID_RULE};
use domain::schema::Violation;

/// The largest request body on any route but ingest.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The authenticated caller.
pub struct Caller(pub Principal);

impl Caller {
    /// The account a route names, if this caller may see it: 404 when it may not (an
    /// account key asking for another account learns nothing more), then 400 when the text
    /// is not an id at all.
    pub fn account(&self, raw: &str) -> Result<AccountId, ApiError> {
        if !self.0.can_access(raw) {
            return Err(ApiError::not_found("account"));
        }
        AccountId::parse(raw).map_err(|_| {
            ApiError::validation(vec![Violation {
                pointer: "/account_id".into(),
                message: ID_RULE.into(),
            }])
        })
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
        // Read on every request, never cached: a revoked or expired key is refused from the
        // moment its revocation answered or its expiry passed.
        let record = match services.api_keys.find_by_hash(&hash).await? {
            Some(record) if hashes_equal(&record.key_hash, &hash) => record,
            _ => return Err(ApiError::unauthorized()),
        };
        let now = services.clock.now();
        if !record.is_active(now) {
            return Err(ApiError::unauthorized());
        }
        // At most one write per key per minute, not one per request; a failed write costs
        // only the precision of `last_used_at`, never the request.
        if record.use_is_worth_recording(now) {
            if let Err(e) = services.api_keys.record_use(&hash, now).await {
                tracing::warn!(error = %e, key_id = %record.id, "could not record a key's use");
            }
        }
        Ok(Caller(Principal::Account(record.account_id)))
    }
}

/// The id a path names. Text that does not follow the id rule names nothing that can
/// exist, so it gets the same 404 as a missing `what`.
pub fn path_id<T: for<'a> TryFrom<&'a str>>(raw: &str, what: &str) -> Result<T, ApiError> {
    T::try_from(raw).map_err(|_| ApiError::not_found(what))
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
    read_limited(req.into_body(), limit, OVERSIZE_DRAIN_BYTES).await
}

/// How much of a body over its limit is still read, and dropped, before the 413 goes out.
/// A server that answers while the client is still writing, and closes, fails the client's
/// write (a broken pipe) before it reads the answer: a producer posting too large a batch
/// saw a connection error, not the 413 naming the limit. Read to its end, the body leaves
/// the client free to read the answer. A full batch of maximal events is about 26 MB; past
/// this much more, the connection is closed instead. The request timeout bounds it too.
const OVERSIZE_DRAIN_BYTES: usize = 32 * 1024 * 1024;

/// The body if it is at most `limit` bytes; a 413 naming the limit if not, once the body
/// has ended or `drain` bytes more have been read.
async fn read_limited(
    body: axum::body::Body,
    limit: usize,
    drain: usize,
) -> Result<Bytes, ApiError> {
    use futures::StreamExt;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body exceeds {limit} bytes"),
        )
    };
    let mut stream = body.into_data_stream();
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(_) if seen > limit => return Err(too_large()),
            Err(e) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    format!("the request body could not be read: {e}"),
                ))
            }
        };
        seen = seen.saturating_add(chunk.len());
        if seen <= limit {
            kept.extend_from_slice(&chunk);
        } else if seen - limit > drain {
            break;
        } else if !kept.is_empty() {
            kept = bytes::BytesMut::new();
        }
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(kept.freeze())
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

/// A JSON request body that may be left out: no body at all (an empty one, whatever its
/// `content-type`: `curl -d ''` sends a form type), or `null`, reads as `T::default()`; a
/// body is held to the rules of [`JsonBody`].
pub struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let declared_empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|len| len.as_bytes() == b"0");
        if declared_empty {
            return Ok(OptionalJsonBody(T::default()));
        }
        if req.headers().contains_key(header::CONTENT_TYPE) {
            // `null` stands for no body too.
            return JsonBody::<Option<T>>::from_request(req, state)
                .await
                .map(|JsonBody(body)| OptionalJsonBody(body.unwrap_or_default()));
        }
        // Without a content type, only an empty body is accepted (as no body at all).
        match axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES).await {
            Ok(bytes) if bytes.is_empty() => Ok(OptionalJsonBody(T::default())),
            _ => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as `content-type: application/json`",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{bearer_token, OptionalJsonBody};
    use axum::body::Body;
    use axum::extract::{FromRequest, Request};
    use axum::http::header::CONTENT_TYPE;

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body1 {
        a: Option<u32>,
    }

    async fn optional(content_type: Option<&str>, body: &'static str) -> Result<Body1, u16> {
        let mut req = Request::builder().method("POST").uri("/");
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        OptionalJsonBody::<Body1>::from_request(req.body(Body::from(body)).unwrap(), &())
            .await
            .map(|OptionalJsonBody(b)| b)
            .map_err(|e| e.status.as_u16())
    }

    #[tokio::test]
    async fn an_optional_body_may_be_left_out_or_null_but_not_malformed() {
        let json = Some("application/json");
        assert_eq!(optional(None, "").await, Ok(Body1::default()));
        assert_eq!(optional(json, "null").await, Ok(Body1::default()));
        assert_eq!(
            optional(json, r#"{"a": 3}"#).await,
            Ok(Body1 { a: Some(3) })
        );
        assert_eq!(optional(json, r#"{"b": 3}"#).await, Err(400));
        assert_eq!(optional(json, "").await, Err(400));
        assert_eq!(optional(None, r#"{"a": 3}"#).await, Err(415));
        assert_eq!(optional(Some("text/plain"), "a=3").await, Err(415));
    }

    #[tokio::test]
    async fn a_body_declared_empty_is_no_body_whatever_its_type() {
        // `curl -X POST -d ''` sends a form type and `content-length: 0`.
        for content_type in ["application/x-www-form-urlencoded", "application/json"] {
            let req = Request::builder()
                .method("POST")
                .uri("/")
                .header(CONTENT_TYPE, content_type)
                .header(axum::http::header::CONTENT_LENGTH, "0")
                .body(Body::empty())
                .unwrap();
            let body = OptionalJsonBody::<Body1>::from_request(req, &())
                .await
                .map(|OptionalJsonBody(b)| b)
                .map_err(|e| e.status.as_u16());
            assert_eq!(body, Ok(Body1::default()), "{content_type}");
        }
    }

    /// A body of `chunks` chunks of 10 bytes, counting how many were read.
    fn counted_body(
        chunks: usize,
    ) -> (
        axum::body::Body,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) {
        use futures::StreamExt;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let read = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = read.clone();
        let stream = futures::stream::iter(0..chunks).map(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"0123456789"))
        });
        (Body::from_stream(stream), read)
    }

    #[tokio::test]
    async fn a_body_over_its_limit_is_read_to_its_end_before_the_413() {
        use std::sync::atomic::Ordering;
        let (body, _) = counted_body(3);
        assert_eq!(super::read_limited(body, 30, 100).await.unwrap().len(), 30);

        // Over the limit: every byte is read (so the client is done writing), then 413.
        let (body, read) = counted_body(10);
        let err = super::read_limited(body, 30, 100).await.unwrap_err();
        assert_eq!(err.status.as_u16(), 413);
        assert!(err.message.contains("30 bytes"), "{}", err.message);
        assert_eq!(read.load(Ordering::SeqCst), 10);

        // Far over it: reading stops once `drain` more bytes have come.
        let (body, read) = counted_body(1000);
        let err = super::read_limited(body, 30, 100).await.unwrap_err();
        assert_eq!(err.status.as_u16(), 413);
        assert_eq!(read.load(Ordering::SeqCst), 14);
    }

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
