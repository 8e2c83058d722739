//! The event catalog: every event type the platform emits, with its JSON Schema and example.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::schema::{self, Violation};

/// One entry of the catalog: a type's name, what it means, and the shape of its `data`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = EventType))]
#[serde(deny_unknown_fields)]
pub struct EventTypeSpec {
    #[serde(rename = "type")]
    pub name: String,
    pub description: String,
    /// JSON Schema of the event's `data`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub schema: Value,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub example: Value,
}

const CATALOG_JSON: &str = include_str!("../catalog/event_types.json");

/// The catalog, parsed once per process.
pub fn catalog() -> &'static [EventTypeSpec] {
    static CATALOG: OnceLock<Vec<EventTypeSpec>> = OnceLock::new();
    CATALOG.get_or_init(|| {
        serde_json::from_str(CATALOG_JSON).expect("the embedded event catalog is valid JSON")
    })
}

/// The service's own events, about an account's endpoints and deliveries. Each names the
/// endpoint it is about in `data.webhook_id`, and is never delivered there: an endpoint
/// that is failing would not receive it, and one told of its own failure could fail again.
pub const OPERATIONAL: [&str; 4] = [
    "webhook.failing",
    "webhook.recovered",
    "webhook.disabled",
    "delivery.dead",
];

pub fn is_operational(name: &str) -> bool {
    OPERATIONAL.contains(&name)
}

pub fn find(name: &str) -> Option<&'static EventTypeSpec> {
    catalog().iter().find(|t| t.name == name)
}

/// The name of an event type (`call.ended`). Built from outside only by [`EventType::known`],
/// so a producer cannot send a type the catalog lacks. It reads back from storage and queues
/// without that check: a type retired from the catalog must still show in old deliveries.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventType(String);

impl EventType {
    pub fn known(name: &str) -> Option<Self> {
        find(name).map(|spec| EventType(spec.name.clone()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for EventType {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for EventType {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl PartialEq<str> for EventType {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for EventType {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<EventType> for String {
    fn from(t: EventType) -> String {
        t.0
    }
}

impl EventType {
    /// A type read back from the delivery log or a queue message, where only types that
    /// were once known are written.
    pub fn from_stored(name: String) -> Self {
        EventType(name)
    }
}

/// Validates an event's `data` against its type's schema.
pub fn validate_data(event_type: &EventTypeSpec, data: &Value) -> Vec<Violation> {
    schema::validate(&event_type.schema, data)
}

/// Whether a subscription filter is well formed and can match at least one catalog type:
/// an exact type, `family.*` (any prefix of dotted segments) or `*`.
pub fn is_valid_filter(filter: &str) -> bool {
    if filter == "*" {
        return true;
    }
    match filter.strip_suffix(".*") {
        Some(prefix) if !prefix.is_empty() && !prefix.contains('*') => catalog()
            .iter()
            .any(|t| super::subscription::filter_matches(filter, &t.name)),
        Some(_) => false,
        None => find(filter).is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_has_the_contract_types_and_the_operational_one() {
        let names: Vec<&str> = catalog().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "call.started",
                "call.ended",
                "call.failed",
                "call.queued",
                "call.transcript.ready",
                "call.recording.ready",
                "call.quality_scored",
                "call.cost_calculated",
                "agent.status_changed",
                "agent.config_updated",
                "agent.sync_status_changed",
                "agent.performance_alert",
                "knowledge_base.updated",
                "phone_number.updated",
                "user.action",
                "system.maintenance",
                "webhook.test",
                // The service's own (`OPERATIONAL`).
                "webhook.disabled",
                "webhook.failing",
                "webhook.recovered",
                "delivery.dead",
            ]
        );
        for name in OPERATIONAL {
            assert!(find(name).is_some(), "{name}");
            let schema = &find(name).unwrap().schema;
            assert!(
                schema["properties"]["webhook_id"].is_object(),
                "{name} names its endpoint"
            );
        }
    }

    #[test]
    fn every_schema_is_supported_and_accepts_its_example() {
        for t in catalog() {
            schema::check_supported(&t.schema, &t.name).unwrap();
            assert!(
                validate_data(t, &t.example).is_empty(),
                "{} example invalid: {:?}",
                t.name,
                validate_data(t, &t.example)
            );
        }
    }

    #[test]
    fn call_events_carry_the_common_call_fields() {
        for t in catalog().iter().filter(|t| t.name.starts_with("call.")) {
            let required = t.schema["required"].as_array().unwrap();
            for field in [
                "call_id",
                "agent_id",
                "status",
                "duration_seconds",
                "cost",
                "participants",
            ] {
                assert!(
                    required.iter().any(|r| r == field),
                    "{} lacks {field}",
                    t.name
                );
            }
        }
    }

    #[test]
    fn an_example_missing_a_required_field_is_rejected() {
        let t = find("call.ended").unwrap();
        let mut data = t.example.clone();
        data.as_object_mut().unwrap().remove("call_id");
        let errs = validate_data(t, &data);
        assert_eq!(errs[0].pointer, "/call_id");
    }

    #[test]
    fn filters_are_checked_against_the_catalog() {
        assert!(is_valid_filter("*"));
        assert!(is_valid_filter("call.*"));
        assert!(is_valid_filter("call.transcript.*"));
        assert!(is_valid_filter("agent.status_changed"));
        assert!(!is_valid_filter("calls.*"));
        assert!(!is_valid_filter("call.nope"));
        assert!(!is_valid_filter(".*"));
        assert!(!is_valid_filter("*.ended"));
    }
}
