//! Dead letters: deliveries whose attempts ran out, for review and redrive.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody};
use super::pagination::{limit, Paginated};
use super::views::DeliveryView;
use app::redrive::redrive;
use app::Services;
use domain::delivery::DeliveryStatus;
use domain::ids::DeliveryId;

/// The most dead letters one redrive call sends again.
pub const MAX_REDRIVE: usize = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// The account's dead deliveries, most recently dead first.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/dead-letters", tag = "dead letters",
    params(("account_id" = String, Path), PageParams),
    responses((status = 200, body = Paginated<DeliveryView>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_dead_letters(
    State(services): State<Services>,
    caller: Caller,
    Path(account_id): Path<String>,
    Query(q): Query<PageParams>,
) -> Result<Json<Paginated<DeliveryView>>, ApiError> {
    let account = caller.account(&account_id)?;
    let page = services
        .deliveries
        .list_dead(&account, q.cursor.as_deref(), limit(q.limit)?)
        .await?;
    Ok(Json(Paginated {
        data: page.items.iter().map(DeliveryView::summary).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// Delivery ids to redrive; every dead letter of the account (up to 1000) when absent.
    #[serde(default)]
    pub ids: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct Redriven {
    pub redriven: usize,
}

/// Sends dead letters again, each with a fresh attempt budget and its `webhook-id`.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/dead-letters/redrive", tag = "dead letters",
    params(("account_id" = String, Path)),
    request_body = RedriveRequest,
    responses((status = 202, body = Redriven), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn redrive_dead_letters(
    State(services): State<Services>,
    caller: Caller,
    Path(account_id): Path<String>,
    JsonBody(req): JsonBody<RedriveRequest>,
) -> Result<(StatusCode, Json<Redriven>), ApiError> {
    let account = caller.account(&account_id)?;
    let mut dead = Vec::new();
    match req.ids {
        Some(ids) => {
            if ids.len() > MAX_REDRIVE {
                return Err(ApiError::validation(vec![domain::schema::Violation {
                    pointer: "/ids".into(),
                    message: format!("must list at most {MAX_REDRIVE} ids"),
                }]));
            }
            for id in ids {
                // Text that is not an id names no delivery.
                let found = match DeliveryId::parse(id.as_str()) {
                    Ok(parsed) => services.deliveries.get(&account, &parsed).await?,
                    Err(_) => None,
                };
                match found {
                    Some(d) if d.status == DeliveryStatus::Dead => dead.push(d),
                    _ => return Err(ApiError::not_found(&format!("dead letter {id}"))),
                }
            }
        }
        None => {
            let mut cursor = None;
            while dead.len() < MAX_REDRIVE {
                let page = services
                    .deliveries
                    .list_dead(&account, cursor.as_deref(), 100)
                    .await?;
                dead.extend(page.items);
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            dead.truncate(MAX_REDRIVE);
        }
    }
    let redriven = redrive(&services, &dead).await?;
    Ok((StatusCode::ACCEPTED, Json(Redriven { redriven })))
}
