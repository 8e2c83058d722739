use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use domain::schema::Violation;

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

/// A page size from a `limit` parameter: 1 to 100, default 20.
pub fn limit(requested: Option<usize>) -> Result<usize, ApiError> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::validation(vec![Violation {
            pointer: "/limit".into(),
            message: format!("must be between 1 and {MAX_LIMIT}"),
        }])),
    }
}

/// One page of a listing; pass `next_cursor` as `cursor` for the next.
#[derive(Serialize, ToSchema)]
pub struct Paginated<T: ToSchema> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}
