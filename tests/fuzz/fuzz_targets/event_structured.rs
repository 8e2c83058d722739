//! Structured events (`arbitrary`): envelopes built field by field, with a catalog type's own
//! example as the `data` to mutate and dates taken apart into their fields, so the fuzzer
//! spends its time in the envelope rules, the calendar and each type's schema rather than
//! in JSON syntax. Nothing may panic; whatever is accepted has valid ids, a known type, an
//! RFC 3339 `occurred_at` and a payload that is the event's JSON.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

use domain::catalog;
use domain::event::{accept, parse_rfc3339, IncomingEvent};
use domain::ids::{is_valid_id, EventId};
use domain::time::Timestamp;

#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    List(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn value(self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => json!(b),
            Json::Int(n) => json!(n),
            Json::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            Json::Text(s) => json!(s),
            Json::List(items) => Value::Array(items.into_iter().map(Json::value).collect()),
            Json::Object(fields) => {
                Value::Object(fields.into_iter().map(|(k, v)| (k, v.value())).collect())
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Type {
    /// The n-th catalog type (modulo its length).
    Known(u8),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum When {
    Absent,
    Text(String),
    Parts {
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
        fraction: Option<u32>,
        offset_minutes: i16,
    },
}

impl When {
    fn value(self) -> Option<Value> {
        match self {
            When::Absent => None,
            When::Text(s) => Some(json!(s)),
            When::Parts {
                year,
                month,
                day,
                hour,
                minute,
                second,
                fraction,
                offset_minutes,
            } => {
                let fraction = fraction.map_or(String::new(), |f| format!(".{f}"));
                let offset = match offset_minutes {
                    0 => "Z".to_string(),
                    m => format!(
                        "{}{:02}:{:02}",
                        if m < 0 { '-' } else { '+' },
                        (m.unsigned_abs() / 60) % 100,
                        m.unsigned_abs() % 60
                    ),
                };
                Some(json!(format!(
                    "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}{offset}"
                )))
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Envelope {
    id: Option<String>,
    event_type: Type,
    account_id: String,
    occurred_at: When,
    /// Fields set over the type's example (or, for an unknown type, over nothing).
    changes: Vec<(String, Json)>,
    /// Drop the example's field of this index.
    remove: Option<u8>,
}

fuzz_target!(|envelope: Envelope| {
    let types = catalog::catalog();
    let (type_name, mut data) = match envelope.event_type {
        Type::Known(n) => {
            let spec = &types[n as usize % types.len()];
            (spec.name.clone(), spec.example.clone())
        }
        Type::Other(name) => (name, json!({})),
    };
    if let Value::Object(fields) = &mut data {
        if let Some(i) = envelope.remove {
            if let Some(key) = fields.keys().nth(i as usize % fields.len().max(1)).cloned() {
                fields.remove(&key);
            }
        }
        for (key, value) in envelope.changes {
            fields.insert(key, value.value());
        }
    }
    let mut body = Map::new();
    if let Some(id) = envelope.id {
        body.insert("id".into(), json!(id));
    }
    body.insert("type".into(), json!(type_name));
    body.insert("account_id".into(), json!(envelope.account_id));
    if let Some(at) = envelope.occurred_at.value() {
        body.insert("occurred_at".into(), at);
    }
    body.insert("data".into(), data);
    let Ok(incoming) = serde_json::from_value::<IncomingEvent>(Value::Object(body)) else {
        return;
    };
    let now = Timestamp::from_millis(1_795_000_000_000);
    let Ok(event) = accept(incoming, now, || EventId::from_static("evt_fuzz")) else {
        return;
    };
    assert!(is_valid_id(&event.id) && is_valid_id(&event.account_id));
    assert!(catalog::find(&event.event_type).is_some());
    assert!(
        parse_rfc3339(&event.occurred_at).is_some(),
        "{}",
        event.occurred_at
    );
    let payload: Value = serde_json::from_str(&event.payload()).expect("the payload is JSON");
    assert_eq!(payload["id"], event.id.as_str());
    assert_eq!(payload["data"], event.data);
});
