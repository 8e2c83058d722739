//! Account keys: created by the platform key (shown once), listed and revoked by the platform
//! key or the account's own keys.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{path_id, Caller, OptionalJsonBody};
use app::Services;
use domain::api_key::{
    generate_account_key, make_room, ApiKeyRecord, Principal, MAX_ACTIVE_KEYS_PER_ACCOUNT,
};
use domain::event::parse_rfc3339;
use domain::ids::ApiKeyId;
use domain::schema::Violation;
use domain::time::Timestamp;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// RFC 3339, in the future: from then on the key is refused (401). Default: never.
    #[serde(default)]
    pub expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    pub id: String,
    /// The key itself, shown only here; only its hash is kept.
    pub key: String,
    /// Its first characters, as listings show it.
    pub prefix: String,
    pub account_id: String,
    pub created_at: String,
    pub expires_at: Option<String>,
}

/// A key as listings show it: never the key or its hash.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub account_id: String,
    /// The key's first characters, to tell keys apart (empty for keys made before prefixes
    /// were kept).
    pub prefix: String,
    /// `active`, `expired` or `revoked`.
    pub status: &'static str,
    pub created_at: String,
    /// When it last authenticated a request, to the minute; null if never.
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl ApiKeyView {
    fn of(key: &ApiKeyRecord, now: Timestamp) -> Self {
        ApiKeyView {
            id: key.id.to_string(),
            account_id: key.account_id.to_string(),
            prefix: key.prefix.clone(),
            status: key.status(now).as_str(),
            created_at: key.created_at.to_rfc3339(),
            last_used_at: key.last_used_at.map(Timestamp::to_rfc3339),
            expires_at: key.expires_at.map(Timestamp::to_rfc3339),
            revoked_at: key.revoked_at.map(Timestamp::to_rfc3339),
        }
    }
}

/// Every key of an account, newest first.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyList {
    pub data: Vec<ApiKeyView>,
}

/// The expiry asked for: an RFC 3339 time after `now`.
fn expiry(requested: Option<&str>, now: Timestamp) -> Result<Option<Timestamp>, ApiError> {
    let Some(text) = requested else {
        return Ok(None);
    };
    let bad = |message: &str| {
        ApiError::validation(vec![Violation {
            pointer: "/expires_at".into(),
            message: message.into(),
        }])
    };
    let at = parse_rfc3339(text)
        .map(|t| Timestamp::from_millis((t.unix_timestamp_nanos() / 1_000_000) as i64))
        .ok_or_else(|| bad("must be an RFC 3339 date-time"))?;
    if at <= now {
        return Err(bad("must be in the future"));
    }
    Ok(Some(at))
}

/// Who a key is: what the console asks at sign-in, so that it never has to guess an account.
#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    /// `platform` (ingests events, manages every account) or `account`.
    pub kind: &'static str,
    /// The account an account key manages; `null` for the platform key.
    pub account_id: Option<String>,
}

/// Who am I: the kind of the key presented and, for an account key, its account. Any valid
/// key may ask; a revoked, expired or unknown one gets 401.
#[utoipa::path(get, path = "/v1/whoami", tag = "accounts",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(match caller.0 {
        Principal::Platform => WhoAmI {
            kind: "platform",
            account_id: None,
        },
        Principal::Account(account) => WhoAmI {
            kind: "account",
            account_id: Some(account.to_string()),
        },
    })
}

#[derive(Serialize, ToSchema)]
pub struct EgressIps {
    /// The addresses deliveries and test sends leave from, for receivers' firewalls to
    /// allow; empty when this deployment has no fixed egress addresses.
    pub egress_ips: Vec<String>,
}

/// The addresses this deployment's requests to endpoints leave from (the stack's NAT
/// gateways with `StaticEgressIps`, or what the operator configured). Any valid key may ask.
#[utoipa::path(get, path = "/v1/egress-ips", tag = "accounts",
    responses((status = 200, body = EgressIps), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn egress_ips(State(services): State<Services>, _caller: Caller) -> Json<EgressIps> {
    Json(EgressIps {
        egress_ips: services
            .settings
            .egress_ips
            .iter()
            .map(ToString::to_string)
            .collect(),
    })
}

/// Creates an account key (platform key only). It manages only its own account. The body
/// is optional; `expires_at` sets when the key stops working. An account has at most 50 keys
/// in use (neither revoked nor expired); one more answers 409 `limit_exceeded`. Of the keys
/// no longer in use, the oldest are forgotten once the account has 100 keys in all.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/api-keys", tag = "accounts",
    params(("account_id" = String, Path)), request_body = Option<CreateApiKey>,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, body = ErrorBody,
               description = "`limit_exceeded`: the account has as many keys in use as it may"),
              (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_api_key(
    State(services): State<Services>,
    caller: Caller,
    Path(account_id): Path<String>,
    OptionalJsonBody(req): OptionalJsonBody<CreateApiKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    caller.require_platform()?;
    let account = caller.account(&account_id)?;
    let now = services.clock.now();
    let expires_at = expiry(req.expires_at.as_deref(), now)?;
    // Read before the write, as the subscription cap is: creates racing each other can
    // overshoot by their number; the cap bounds growth, it is not an exact quota.
    let existing = services.api_keys.list(&account).await?;
    let forget = make_room(&existing, now).map_err(|full| {
        ApiError::new(
            StatusCode::CONFLICT,
            "limit_exceeded",
            format!(
                "the account has {} keys in use, and may have at most {MAX_ACTIVE_KEYS_PER_ACCOUNT}; \
                 revoke one to create another",
                full.active
            ),
        )
    })?;
    for old in forget {
        services.api_keys.delete(&account, &old.id).await?;
    }
    let key = generate_account_key(&*services.random);
    let record = ApiKeyRecord::new(
        ApiKeyId::generate(now, &*services.random),
        account,
        &key,
        now,
        expires_at,
    );
    services.api_keys.create(&record).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            id: record.id.into_string(),
            key,
            prefix: record.prefix,
            account_id: record.account_id.into_string(),
            created_at: now.to_rfc3339(),
            expires_at: expires_at.map(Timestamp::to_rfc3339),
        }),
    ))
}

/// The account's keys, newest first, revoked and expired ones included: prefix, creation,
/// last use, expiry and revocation; never the key or its hash. The platform key, or one of
/// the account's own keys.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/api-keys", tag = "accounts",
    params(("account_id" = String, Path)),
    responses((status = 200, body = ApiKeyList), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_api_keys(
    State(services): State<Services>,
    caller: Caller,
    Path(account_id): Path<String>,
) -> Result<Json<ApiKeyList>, ApiError> {
    let account = caller.account(&account_id)?;
    let now = services.clock.now();
    let keys = services.api_keys.list(&account).await?;
    Ok(Json(ApiKeyList {
        data: keys.iter().map(|k| ApiKeyView::of(k, now)).collect(),
    }))
}

/// Revokes a key: from the answer on, it gets 401. Revoking a revoked key changes nothing.
/// The platform key, or one of the account's own keys (the key itself included).
#[utoipa::path(delete, path = "/v1/accounts/{account_id}/api-keys/{key_id}", tag = "accounts",
    params(("account_id" = String, Path), ("key_id" = String, Path)),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_api_key(
    State(services): State<Services>,
    caller: Caller,
    Path((account_id, key_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let account = caller.account(&account_id)?;
    let key_id: ApiKeyId = path_id(&key_id, "api key")?;
    let now = services.clock.now();
    match services.api_keys.revoke(&account, &key_id, now).await? {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::not_found("api key")),
    }
}
