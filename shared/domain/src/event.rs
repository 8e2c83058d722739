//! Platform events: what a producer sends, what we store, and the body a customer receives.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::catalog::{self, EventType};
use super::ids::{AccountId, EventId, ID_RULE};
use super::schema::Violation;
use super::time::Timestamp;

/// The largest event we accept, measured as its JSON encoding.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// The most events one ingest request may carry.
pub const MAX_BATCH_EVENTS: usize = 100;
/// The deepest nesting of arrays and objects `data` may have (the object itself is 1).
/// Common JSON parsers stop at 128 levels, serde_json among them, and the payload wraps
/// `data` in one more: an event a receiver's parser would refuse is refused at ingest.
pub const MAX_DATA_DEPTH: usize = 64;

/// An event as a producer posts it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingEvent {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub event_type: String,
    pub account_id: String,
    #[serde(default)]
    pub occurred_at: Option<String>,
    pub data: Value,
}

/// An accepted event, as stored and as carried on the events queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub account_id: AccountId,
    /// RFC 3339, UTC, normalised once at ingest. Kept as that text, not a [`Timestamp`]:
    /// it is signed into the payload as written, to the producer's own precision (which may
    /// be finer than a millisecond).
    pub occurred_at: String,
    pub received_at: Timestamp,
    pub data: Value,
}

impl Event {
    /// The endpoint an operational event is about (its `data.webhook_id`), which fan-out
    /// never sends it to; `None` for every other event.
    pub fn about_webhook(&self) -> Option<&str> {
        if !super::catalog::is_operational(self.event_type.as_str()) {
            return None;
        }
        self.data.get("webhook_id")?.as_str()
    }

    /// The exact body every endpoint receives for this event.
    pub fn payload(&self) -> String {
        #[derive(Serialize)]
        struct Payload<'a> {
            id: &'a str,
            #[serde(rename = "type")]
            event_type: &'a str,
            account_id: &'a str,
            timestamp: &'a str,
            data: &'a Value,
        }
        serde_json::to_string(&Payload {
            id: &self.id,
            event_type: &self.event_type,
            account_id: &self.account_id,
            timestamp: &self.occurred_at,
            data: &self.data,
        })
        .expect("an event serialises")
    }
}

/// An RFC 3339 date-time, in UTC. `None` also for a time that exists only in its own
/// offset: `0000-01-01T00:00:00+00:01` is in year -1 in UTC, and `9999-12-31T23:59:59-00:01`
/// in year 10000, neither of which RFC 3339 can write.
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    let utc = OffsetDateTime::parse(s, &Rfc3339)
        .ok()?
        .checked_to_offset(time::UtcOffset::UTC)?;
    (0..=9999).contains(&utc.year()).then_some(utc)
}

/// What is wrong with `data` as the data of an event of type `spec`: it must be an object,
/// held to the type's schema. Pointers start at `/data`.
pub fn data_violations(spec: &catalog::EventTypeSpec, data: &Value) -> Vec<Violation> {
    if !data.is_object() {
        return vec![Violation {
            pointer: "/data".into(),
            message: "must be an object".into(),
        }];
    }
    if depth(data) > MAX_DATA_DEPTH {
        return vec![Violation {
            pointer: "/data".into(),
            message: format!("is nested deeper than {MAX_DATA_DEPTH} levels"),
        }];
    }
    catalog::validate_data(spec, data)
        .into_iter()
        .map(|v| Violation {
            pointer: format!("/data{}", v.pointer),
            message: v.message,
        })
        .collect()
}

/// How deeply arrays and objects nest in `v` (a scalar is 0), without recursing: the
/// value may be deeper than the stack would allow.
fn depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(v, 1)];
    while let Some((value, level)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(fields) => Box::new(fields.values()),
            _ => continue,
        };
        deepest = deepest.max(level);
        pending.extend(children.map(|c| (c, level + 1)));
    }
    deepest
}

/// Checks an incoming event and turns it into an `Event`. `now` stamps `received_at` and
/// `new_id` names the event when the producer gave no id.
pub fn accept(
    incoming: IncomingEvent,
    now: Timestamp,
    new_id: impl FnOnce() -> EventId,
) -> Result<Event, Vec<Violation>> {
    let mut errors = Vec::new();
    let mut bad = |pointer: &str, message: &str| {
        errors.push(Violation {
            pointer: pointer.into(),
            message: message.into(),
        })
    };
    let id = match incoming.id.map(EventId::parse) {
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            bad("/id", ID_RULE);
            None
        }
        None => None,
    };
    let account_id = AccountId::parse(incoming.account_id)
        .inspect_err(|_| bad("/account_id", ID_RULE))
        .ok();
    let occurred_at = match &incoming.occurred_at {
        Some(s) => match parse_rfc3339(s).and_then(|t| t.format(&Rfc3339).ok()) {
            Some(t) => t,
            None => {
                bad("/occurred_at", "must be an RFC 3339 date-time");
                String::new()
            }
        },
        None => now.to_rfc3339(),
    };
    let event_type = EventType::known(&incoming.event_type);
    match catalog::find(&incoming.event_type) {
        None => bad(
            "/type",
            "is not a known event type (see GET /v1/event-types)",
        ),
        Some(t) => errors.extend(data_violations(t, &incoming.data)),
    }
    match (account_id, event_type) {
        (Some(account_id), Some(event_type)) if errors.is_empty() => Ok(Event {
            id: id.unwrap_or_else(new_id),
            event_type,
            account_id,
            occurred_at,
            received_at: now,
            data: incoming.data,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn incoming(v: Value) -> IncomingEvent {
        serde_json::from_value(v).unwrap()
    }

    /// `{"a": {"a": … {}}}`, `levels` objects deep.
    fn nested(levels: usize) -> Value {
        let mut v = json!({});
        for _ in 1..levels {
            v = json!({ "a": v });
        }
        v
    }

    #[test]
    fn data_nested_deeper_than_receivers_parse_is_refused_with_a_pointer() {
        let spec = catalog::find("webhook.test").unwrap();
        let deep = |levels| data_violations(spec, &nested(levels));
        assert!(!deep(MAX_DATA_DEPTH)
            .iter()
            .any(|v| v.message.contains("nested")));
        let refused = deep(MAX_DATA_DEPTH + 1);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].pointer, "/data");
        assert!(
            refused[0].message.contains("nested deeper than 64"),
            "{refused:?}"
        );
        // Deeper than serde_json parses (a `Value` built in code can be).
        assert_eq!(depth(&nested(1_000)), 1_000);
        assert_eq!(depth(&json!([[1], {"a": [[]]}])), 4);
        assert_eq!(depth(&json!(1)), 0);
    }

    #[test]
    fn accepts_a_valid_event_and_builds_the_payload() {
        let data = catalog::find("webhook.test").unwrap().example.clone();
        let e = accept(
            incoming(
                json!({"type": "webhook.test", "account_id": "acct_1", "data": data,
                "occurred_at": "2026-11-26T13:00:00+01:00"}),
            ),
            Timestamp::EPOCH,
            || EventId::parse("evt_x").unwrap(),
        )
        .unwrap();
        assert_eq!(e.id, "evt_x");
        assert_eq!(e.occurred_at, "2026-11-26T12:00:00Z");
        let body: Value = serde_json::from_str(&e.payload()).unwrap();
        assert_eq!(body["timestamp"], "2026-11-26T12:00:00Z");
        assert_eq!(body["type"], "webhook.test");
        assert_eq!(body["account_id"], "acct_1");
        assert_eq!(body["data"], data);
    }

    #[test]
    fn reports_envelope_and_data_errors_by_pointer() {
        let errs = accept(
            incoming(json!({"id": "", "type": "call.ended", "account_id": "a b",
                "occurred_at": "noon", "data": {"call_id": 5}})),
            Timestamp::EPOCH,
            || unreachable!(),
        )
        .unwrap_err();
        let pointers: Vec<&str> = errs.iter().map(|e| e.pointer.as_str()).collect();
        assert!(pointers.contains(&"/id"));
        assert!(pointers.contains(&"/account_id"));
        assert!(pointers.contains(&"/occurred_at"));
        assert!(pointers.contains(&"/data/call_id"));
        assert!(pointers.contains(&"/data/agent_id"));
    }

    #[test]
    fn a_time_outside_the_calendar_in_utc_is_refused_not_a_panic() {
        for occurred_at in [
            "0000-01-01T00:00:00+00:01",
            "9999-12-31T23:59:59-00:01",
            "0000-01-01T00:00:00+23:59",
        ] {
            let errs = accept(
                incoming(json!({"type": "webhook.test", "account_id": "a",
                    "occurred_at": occurred_at,
                    "data": catalog::find("webhook.test").unwrap().example.clone()})),
                Timestamp::EPOCH,
                || EventId::parse("evt_1").unwrap(),
            )
            .unwrap_err();
            assert_eq!(errs.len(), 1, "{occurred_at}: {errs:?}");
            assert_eq!(errs[0].pointer, "/occurred_at");
        }
        // The edges themselves are fine.
        for ok in ["0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z"] {
            assert!(parse_rfc3339(ok).is_some(), "{ok}");
        }
    }

    /// Found by the structured fuzz target: the default float parser could change the last
    /// digit of an extreme number between the producer's body and the delivered one.
    #[test]
    fn numbers_reach_the_payload_as_sent() {
        let body = r#"{"type": "webhook.test", "account_id": "a", "data": {"message": "m", "webhook_id": "wh_1", "x": 3.9089212424283044e-305, "y": 0.1, "z": 1e300}}"#;
        let incoming: IncomingEvent = serde_json::from_str(body).unwrap();
        let e = accept(incoming, Timestamp::EPOCH, || {
            EventId::parse("evt_n").unwrap()
        })
        .unwrap();
        let payload = e.payload();
        // The same numbers: `1e300` is written `1e+300`, the same double.
        for number in ["3.9089212424283044e-305", "0.1", "1e+300"] {
            assert!(payload.contains(number), "{number} not in {payload}");
        }
    }

    #[test]
    fn unknown_fields_and_types_are_rejected() {
        assert!(serde_json::from_value::<IncomingEvent>(
            json!({"type": "x", "account_id": "a", "data": {}, "extra": 1})
        )
        .is_err());
        let errs = accept(
            incoming(json!({"type": "call.exploded", "account_id": "a", "data": {}})),
            Timestamp::EPOCH,
            || EventId::parse("e").unwrap(),
        )
        .unwrap_err();
        assert_eq!(errs[0].pointer, "/type");
    }
}
