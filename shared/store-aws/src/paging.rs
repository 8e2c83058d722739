//! Paging through DynamoDB queries: every listing follows `LastEvaluatedKey` the same way.

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;

use super::attributes::{decode_cursor, encode_cursor, expired, now_secs, Item};
use super::storage_error;
use app::Result;

/// Every live item the query matches, following pages to the end. Items past their TTL
/// (DynamoDB deletes them only eventually) are left out.
pub async fn all_items(query: impl Fn(Option<Item>) -> QueryFluentBuilder) -> Result<Vec<Item>> {
    let now = now_secs();
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = query(start.take()).send().await.map_err(storage_error)?;
        items.extend(out.items().iter().filter(|i| !expired(i, now)).cloned());
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return Ok(items),
        }
    }
}

/// Up to `limit` live items from where `cursor` left off, and the cursor of the next page
/// when there is one. One item more than asked is read to know whether there is.
pub async fn page_of_items(
    query: impl Fn(Option<Item>) -> QueryFluentBuilder,
    key_names: &[&str],
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<Item>, Option<String>)> {
    let now = now_secs();
    let mut start = cursor.map(|c| decode_cursor(c, key_names)).transpose()?;
    let mut items: Vec<Item> = Vec::new();
    loop {
        let out = query(start.take()).send().await.map_err(storage_error)?;
        for item in out.items() {
            if items.len() > limit {
                break;
            }
            if !expired(item, now) {
                items.push(item.clone());
            }
        }
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() && items.len() <= limit => start = Some(k.clone()),
            _ => break,
        }
    }
    let more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = more
        .then(|| items.last().map(|i| encode_cursor(i, key_names)))
        .flatten();
    Ok((items, next_cursor))
}
