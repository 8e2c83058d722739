//! Reading and writing DynamoDB attribute maps.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use app::{Error, Result};
use domain::ids::InvalidId;
use domain::time::Timestamp;

pub type Item = HashMap<String, AttributeValue>;

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// The integer types a number attribute is written from. Not any `ToString`: a
/// [`Timestamp`] displays as RFC 3339, which is no number; it goes through [`ms`].
pub trait Number: ToString {}

impl Number for i32 {}
impl Number for i64 {}
impl Number for u16 {}
impl Number for u32 {}
impl Number for u64 {}

pub fn n(v: impl Number) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A time, stored as milliseconds since the epoch.
pub fn ms(t: Timestamp) -> AttributeValue {
    n(t.as_millis())
}

pub fn get_s(item: &Item, name: &str) -> Result<String> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| Error::storage(format!("item lacks string attribute {name}")))
}

pub fn opt_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T> {
    opt_n(item, name).ok_or_else(|| Error::storage(format!("item lacks number attribute {name}")))
}

pub fn opt_n<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

/// An id (`AccountId`, `EventId`, …) stored as a string; one that breaks the id rule is a
/// corrupt item.
pub fn get_id<T: TryFrom<String, Error = InvalidId>>(item: &Item, name: &str) -> Result<T> {
    T::try_from(get_s(item, name)?)
        .map_err(|e| Error::storage(format!("item has a malformed id in {name}: {e}")))
}

/// A time stored as milliseconds since the epoch.
pub fn get_ms(item: &Item, name: &str) -> Result<Timestamp> {
    get_n(item, name).map(Timestamp::from_millis)
}

pub fn opt_ms(item: &Item, name: &str) -> Option<Timestamp> {
    opt_n(item, name).map(Timestamp::from_millis)
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

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ids::AccountId;

    #[test]
    fn a_malformed_id_is_a_storage_error_not_a_panic() {
        let item = Item::from([("account_id".to_string(), s("a b"))]);
        let err = get_id::<AccountId>(&item, "account_id").unwrap_err();
        assert!(
            matches!(&err, Error::Storage { message, .. } if message.contains("account_id")),
            "{err}"
        );
        let item = Item::from([("account_id".to_string(), s("acct_1"))]);
        assert_eq!(get_id::<AccountId>(&item, "account_id").unwrap(), "acct_1");
    }

    #[test]
    fn times_are_stored_as_milliseconds() {
        let t = Timestamp::from_millis(1_700_000_000_123);
        assert_eq!(ms(t), AttributeValue::N("1700000000123".into()));
        let item = Item::from([("at".to_string(), ms(t))]);
        assert_eq!(get_ms(&item, "at").unwrap(), t);
        assert_eq!(opt_ms(&item, "missing"), None);
    }
}
