//! Reading and writing DynamoDB attribute maps.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use app::{Error, Result};

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

/// A page cursor from the key of the last item returned: the key attributes, as JSON,
/// base64url-encoded. Opaque to clients.
pub fn encode_cursor(item: &Item, key_names: &[&str]) -> String {
    use base64::Engine;
    let mut map = serde_json::Map::new();
    for name in key_names {
        let value = match item.get(*name) {
            Some(AttributeValue::S(v)) => serde_json::json!({ "S": v }),
            Some(AttributeValue::N(v)) => serde_json::json!({ "N": v }),
            _ => continue,
        };
        map.insert(name.to_string(), value);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::Value::Object(map).to_string())
}

/// The `ExclusiveStartKey` a cursor stands for.
pub fn decode_cursor(cursor: &str, key_names: &[&str]) -> Result<Item> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| Error::InvalidCursor)?;
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|_| Error::InvalidCursor)?;
    let mut item = Item::new();
    for name in key_names {
        let v = map.get(*name).ok_or(Error::InvalidCursor)?;
        let value = match (
            v.get("S").and_then(|s| s.as_str()),
            v.get("N").and_then(|n| n.as_str()),
        ) {
            (Some(s), None) => AttributeValue::S(s.to_string()),
            (None, Some(n)) if n.parse::<f64>().is_ok() => AttributeValue::N(n.to_string()),
            _ => return Err(Error::InvalidCursor),
        };
        item.insert(name.to_string(), value);
    }
    if map.len() != key_names.len() {
        return Err(Error::InvalidCursor);
    }
    Ok(item)
}
