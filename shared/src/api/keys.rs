use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::Caller;
use crate::domain::api_key::{generate_account_key, hash_key, ApiKeyRecord};
use crate::domain::event::format_rfc3339_ms;
use crate::domain::ids;
use crate::Services;

pub fn router() -> Router<Services> {
    Router::new().route("/v1/accounts/{account_id}/api-keys", post(create))
}

/// Creates an account key. The key is shown only in this answer; we keep its hash.
async fn create(
    State(services): State<Services>,
    caller: Caller,
    Path(account_id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_platform()?;
    super::webhooks::check_account_id(&account_id)?;
    let key = generate_account_key();
    let now = services.clock.now_ms();
    let record = ApiKeyRecord {
        id: ids::time_ordered("key", now),
        account_id: account_id.clone(),
        key_hash: hash_key(&key),
        created_at: now,
    };
    services.api_keys.create(&record).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": record.id,
            "key": key,
            "account_id": account_id,
            "created_at": format_rfc3339_ms(now),
        })),
    ))
}
