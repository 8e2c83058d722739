use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::Caller;
use app::Services;
use domain::api_key::{generate_account_key, hash_key, ApiKeyRecord};
use domain::event::format_rfc3339_ms;
use domain::ids;

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    pub id: String,
    /// The key itself, shown only here; only its hash is kept.
    pub key: String,
    pub account_id: String,
    pub created_at: String,
}

/// Creates an account key (platform key only). It manages only its own account.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/api-keys", tag = "accounts",
    params(("account_id" = String, Path)),
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_api_key(
    State(services): State<Services>,
    caller: Caller,
    Path(account_id): Path<String>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
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
        Json(CreatedKey {
            id: record.id,
            key,
            account_id,
            created_at: format_rfc3339_ms(now),
        }),
    ))
}
