//! Paging through DynamoDB queries: every listing follows `LastEvaluatedKey` the same way.

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::KeysAndAttributes;

use super::attributes::{decode_cursor, encode_cursor, expired, now_secs, Item};
use super::{storage_error, UNPROCESSED_BACKOFF};
use app::{Error, Result};

/// DynamoDB's limit on keys per `BatchGetItem`.
const MAX_BATCH_GET: usize = 100;

/// The items of `table` at `keys` that exist, in any order, read consistently: in calls of
/// at most [`MAX_BATCH_GET`] keys, asking again for what DynamoDB left unprocessed (with
/// backoff, then an error). Expiry is the caller's to check.
pub async fn batch_get_items(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: Vec<Item>,
) -> Result<Vec<Item>> {
    let mut found = Vec::new();
    for chunk in keys.chunks(MAX_BATCH_GET) {
        let mut pending = chunk.to_vec();
        let mut delays = UNPROCESSED_BACKOFF;
        while !pending.is_empty() {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(storage_error)?;
            let out = client
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await
                .map_err(storage_error)?;
            found.extend(
                out.responses()
                    .and_then(|r| r.get(table))
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
            if let Some(rest) = out.unprocessed_keys().and_then(|u| u.get(table)) {
                pending = rest.keys().to_vec();
                if !pending.is_empty() {
                    let Some(delay) = delays.next() else {
                        return Err(Error::storage(format!(
                            "{} reads stayed unprocessed",
                            pending.len()
                        )));
                    };
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
    Ok(found)
}

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
