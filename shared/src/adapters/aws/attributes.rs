//! Reading and writing DynamoDB attribute maps.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::{Error, Result};

pub type Item = HashMap<String, AttributeValue>;

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn get_s(item: &Item, name: &str) -> Result<String> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| Error::Storage(format!("item lacks string attribute {name}")))
}

pub fn opt_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T> {
    opt_n(item, name).ok_or_else(|| Error::Storage(format!("item lacks number attribute {name}")))
}

pub fn opt_n<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

pub fn get_bool(item: &Item, name: &str) -> bool {
    item.get(name)
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false)
}

/// Whether a TTL'd item has expired: DynamoDB deletes expired items only eventually (and
/// some emulators never), so reads must skip them.
pub fn expired(item: &Item, now_secs: i64) -> bool {
    opt_n::<i64>(item, "expires_at").is_some_and(|at| at <= now_secs)
}

/// Wall-clock seconds, for TTL attributes.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
