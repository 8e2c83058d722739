//! Deliveries: one per (event, subscription) pair, with the log of its attempts.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use super::catalog::EventType;
use super::event::Event;
use super::ids::{AccountId, DeliveryId, EventId, SubscriptionId};
use super::subscription::Subscription;
use super::time::Timestamp;

/// Response bodies are kept to this many bytes in the attempt log.
pub const MAX_LOGGED_RESPONSE_BYTES: usize = 4 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Queued for its first attempt or waiting for a retry.
    Pending,
    Succeeded,
    /// Ended without success and without spending its budget (410 Gone, refused destination).
    Failed,
    /// Its attempts ran out; it sits in the dead-letter queue.
    Dead,
    /// Not sent: the subscription was paused or deleted when its turn came.
    Skipped,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Succeeded,
            DeliveryStatus::Failed,
            DeliveryStatus::Dead,
            DeliveryStatus::Skipped,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

impl DeliveryUpdate {
    /// Whether this outcome may only be applied to a delivery that is still pending. An
    /// attempt's outcome other than success must not replace a status the delivery reached
    /// meanwhile: a queue may hand one message to two receivers, and a copy answered 500
    /// after the other's 200 must not turn `succeeded` back into `pending` (nor `dead`).
    /// Success always applies: the endpoint has the delivery, whatever an other copy saw.
    /// Outcomes without an attempt (a redrive, a skip, a dead letter's log) apply as they are.
    pub fn applies_only_while_pending(&self) -> bool {
        self.attempt.is_some() && self.status != DeliveryStatus::Succeeded
    }

    /// Whether, as its delivery's first outcome, this is kept short: a success at the first
    /// try (`first_try`) keeps its time, URL, request headers, status and latency on the delivery
    /// itself (see `Attempt::first_success`), with no attempt of its own in the log and
    /// without its response's body and headers.
    pub fn kept_short_if_first(&self) -> bool {
        self.first_try
            && self.status == DeliveryStatus::Succeeded
            && self
                .attempt
                .as_ref()
                .is_some_and(|a| a.status_code.is_some())
    }

    /// The delivery this outcome creates when it is its first: a delivery is logged from
    /// its first outcome on, not when fan-out makes it.
    pub fn first_of_its_delivery(&self) -> Delivery {
        Delivery {
            id: self.delivery_id.clone(),
            account_id: self.account_id.clone(),
            subscription_id: self.subscription_id.clone(),
            event_id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            status: self.status,
            attempt_count: self.attempt.is_some() as u32,
            created_at: self.created_at,
            updated_at: self.at,
            next_attempt_at: self.next_attempt_at,
            last_error: self.error.clone(),
            last_latency_ms: self.attempt.as_ref().map(|a| a.latency_ms),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: DeliveryId,
    pub account_id: AccountId,
    pub subscription_id: SubscriptionId,
    pub event_id: EventId,
    pub event_type: EventType,
    pub status: DeliveryStatus,
    /// Attempts made over the delivery's whole life (a redrive does not reset it).
    pub attempt_count: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub next_attempt_at: Option<Timestamp>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// The latency of its last attempt, for stats.
    #[serde(default)]
    pub last_latency_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based, over the delivery's whole life.
    pub attempt: u32,
    /// When the request was sent.
    pub at: Timestamp,
    pub url: String,
    /// The request headers as sent, with secrets masked.
    pub request_headers: Vec<(String, String)>,
    pub status_code: Option<u16>,
    /// The response's headers, as many as `MAX_LOGGED_RESPONSE_HEADERS` (see
    /// `logged_response_headers`); none without a response.
    #[serde(default)]
    pub response_headers: Vec<(String, String)>,
    pub latency_ms: u64,
    pub response_body: Option<String>,
    pub error: Option<String>,
}

impl Attempt {
    /// The first attempt of a delivery that succeeded at once, as its compact log keeps it:
    /// time, URL, the request's headers as logged (secrets masked), status and latency. Its
    /// request's body is the event's; its response's body and headers are not kept.
    pub fn first_success(
        at: Timestamp,
        url: String,
        request_headers: Vec<(String, String)>,
        status_code: u16,
        latency_ms: u64,
    ) -> Attempt {
        Attempt {
            attempt: 1,
            at,
            url,
            request_headers,
            status_code: Some(status_code),
            response_headers: Vec::new(),
            latency_ms,
            response_body: None,
            error: None,
        }
    }
}

/// Response headers kept per attempt, and the longest value kept of each.
pub const MAX_LOGGED_RESPONSE_HEADERS: usize = 32;
pub const MAX_LOGGED_HEADER_VALUE_CHARS: usize = 256;

/// The response headers an attempt keeps: the first `MAX_LOGGED_RESPONSE_HEADERS`, names in
/// lower case, each value cut to `MAX_LOGGED_HEADER_VALUE_CHARS` characters, and a cookie
/// the endpoint sets masked (it may be a session of the customer's, and the log is read by
/// everyone with a key of the account).
pub fn logged_response_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<(String, String)> {
    headers
        .into_iter()
        .take(MAX_LOGGED_RESPONSE_HEADERS)
        .map(|(name, value)| {
            let name = name.to_ascii_lowercase();
            let value = if name == "set-cookie" {
                "********".to_string()
            } else {
                value.chars().take(MAX_LOGGED_HEADER_VALUE_CHARS).collect()
            };
            (name, value)
        })
        .collect()
}

/// The outcome of handling one delivery message, written to the log in one batch per
/// queue batch and before the message is acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryUpdate {
    pub delivery_id: DeliveryId,
    pub account_id: AccountId,
    /// Whose stats the outcome counts in.
    pub subscription_id: SubscriptionId,
    /// The delivery's event and when fan-out made it: a delivery's row is written at its
    /// first outcome (see `DeliveryLog::record`), so the outcome carries what creates it.
    pub event_id: EventId,
    pub event_type: EventType,
    pub created_at: Timestamp,
    /// The outcome of the delivery's first attempt, as far as its message knows (its first
    /// receive, nothing received before): the delivery is most likely not logged yet. A
    /// store may use it to choose which write to try first; what is written follows from
    /// the log, except that only a first try is kept short (`kept_short_if_first`).
    pub first_try: bool,
    pub status: DeliveryStatus,
    pub attempt: Option<Attempt>,
    pub next_attempt_at: Option<Timestamp>,
    pub error: Option<String>,
    /// Why the attempt failed, when it did without an HTTP status (a status speaks for
    /// itself: see `FailureCause::of`).
    pub cause: Option<FailureCause>,
    pub at: Timestamp,
    /// From the task (`DeliveryTask::listed_on_event`): the delivery is found from its
    /// event's record, so a store need not index it by event.
    pub listed_on_event: bool,
}

/// Why an attempt failed, as error analysis groups failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureCause {
    /// The endpoint answered with this status (anything but 2xx).
    Http(u16),
    /// No complete response within the subscription's timeout.
    Timeout,
    /// Nothing listens at the address (TCP reset on connect).
    ConnectionRefused,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// The host name does not resolve.
    Dns,
    /// The address guard refused every address of the host.
    BlockedAddress,
    /// Any other network failure: a connection reset, a broken response.
    Connection,
    /// No OAuth access token: the token endpoint failed, refused or was unreachable, so the
    /// endpoint itself was not called.
    OAuthToken,
}

impl FailureCause {
    /// The cause of an attempt that did not succeed: its HTTP status when it has one, else
    /// what the sender saw (`sent`), else a network failure.
    pub fn of(attempt: &Attempt, sent: Option<FailureCause>) -> FailureCause {
        match attempt.status_code {
            Some(code) => FailureCause::Http(code),
            None => sent.unwrap_or(FailureCause::Connection),
        }
    }

    /// The stable name the API and the stores use: `http_500`, `timeout`, ….
    pub fn key(self) -> String {
        match self {
            FailureCause::Http(code) => format!("http_{code}"),
            other => other.fixed_key().to_string(),
        }
    }

    fn fixed_key(self) -> &'static str {
        match self {
            FailureCause::Http(_) => "http",
            FailureCause::Timeout => "timeout",
            FailureCause::ConnectionRefused => "connection_refused",
            FailureCause::Tls => "tls",
            FailureCause::Dns => "dns",
            FailureCause::BlockedAddress => "blocked_address",
            FailureCause::Connection => "connection",
            FailureCause::OAuthToken => "oauth_token",
        }
    }

    pub fn parse(key: &str) -> Option<FailureCause> {
        if let Some(code) = key.strip_prefix("http_") {
            // Three digits exactly, so a key has one spelling.
            return (code.len() == 3)
                .then(|| code.parse().ok())
                .flatten()
                .filter(|c| (100..=999).contains(c))
                .map(FailureCause::Http);
        }
        [
            FailureCause::Timeout,
            FailureCause::ConnectionRefused,
            FailureCause::Tls,
            FailureCause::Dns,
            FailureCause::BlockedAddress,
            FailureCause::Connection,
            FailureCause::OAuthToken,
        ]
        .into_iter()
        .find(|c| c.fixed_key() == key)
    }
}

/// The message on the deliveries queue. It carries the exact body to send, so an attempt
/// needs no read of the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryTask {
    pub delivery_id: DeliveryId,
    pub account_id: AccountId,
    pub subscription_id: SubscriptionId,
    pub event_id: EventId,
    pub event_type: EventType,
    pub payload: Payload,
    /// Receives of earlier copies of this message that count against the attempt budget:
    /// a delivery deferred for fairness goes back as a new message, whose receive count
    /// starts again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub prior_receives: u32,
    /// Times in a row this delivery was parked behind its failing endpoint's probe; its next
    /// parking is longer (see `retry::parking_delay`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub parkings: u32,
    /// When fan-out made the delivery (its `created_at`); absent in tasks written before
    /// rows were created at the first outcome, whose rows already exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// The delivery is logged already (a redrive, the sweep sending an overdue one again):
    /// its outcomes update its row, even the first try's, which a store may otherwise keep
    /// elsewhere (see `DeliveryUpdate::first_try`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logged: bool,
    /// The delivery may already be logged: fan-out ran its event before (a redelivered
    /// events message, or an event posted again). Deliver then reads its row first and sends
    /// nothing for a delivery that is finished or retrying under another message.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recheck: bool,
    /// The stored event names this delivery's subscription among those it was fanned out to
    /// (`EventStore::insert_batch_listing`), so its deliveries are found from the event: a
    /// store may then leave this one out of its index by event. Set only where that is
    /// certain (ingest fanning out an event it has just stored); never wrong to leave false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub listed_on_event: bool,
    /// Not to be attempted before this time: a retry split off from a pack (see
    /// `app::task_message`) travels as a new message whose delay a queue may cap (SQS at
    /// 15 minutes); received early, it goes back for the rest of its wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
}

impl Delivery {
    /// The delivery of `event` to `sub`, as fan-out (or a test send) creates it: pending,
    /// or skipped at once when the subscription is paused.
    pub fn new(event: &Event, sub: &Subscription, now: Timestamp) -> Delivery {
        Delivery {
            id: DeliveryId::of(&event.account_id, &event.id, event.received_at, &sub.id),
            account_id: event.account_id.clone(),
            subscription_id: sub.id.clone(),
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            status: if sub.enabled {
                DeliveryStatus::Pending
            } else {
                DeliveryStatus::Skipped
            },
            attempt_count: 0,
            created_at: now,
            updated_at: now,
            next_attempt_at: None,
            last_error: (!sub.enabled).then(|| "subscription paused".to_string()),
            last_latency_ms: None,
        }
    }

    /// The queue message that makes this delivery's attempts, carrying `payload` (the
    /// event's body, shared by all of its deliveries).
    pub fn task(&self, payload: Payload) -> DeliveryTask {
        DeliveryTask {
            delivery_id: self.id.clone(),
            account_id: self.account_id.clone(),
            subscription_id: self.subscription_id.clone(),
            event_id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            payload,
            prior_receives: 0,
            parkings: 0,
            created_at: Some(self.created_at),
            logged: false,
            recheck: false,
            listed_on_event: false,
            not_before: None,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The exact body a delivery sends (and its signature covers): an event's JSON.
///
/// A task carries it as JSON, as it is (`"payload":{"id":…}`), not escaped into a string:
/// escaping added a backslash before every quote and backslash of the event, up to doubling
/// its size on the queue. The tasks of one event share one copy. A task written before
/// this change, with the payload as a string of JSON, still reads: its string is the
/// payload, byte for byte.
#[derive(Clone)]
pub struct Payload(Arc<RawValue>);

impl Payload {
    /// The body every endpoint receives for `event`.
    pub fn of(event: &Event) -> Payload {
        Payload::from_json(event.payload()).expect("an event's payload is JSON")
    }

    /// Takes `json` as it is; fails if it is not one JSON value without surrounding space.
    pub fn from_json(json: String) -> Result<Payload, serde_json::Error> {
        if json.trim() != json {
            // `RawValue` would keep the value without its spaces: not the bytes given.
            return Err(serde::de::Error::custom(
                "a payload has no leading or trailing whitespace",
            ));
        }
        Ok(Payload(Arc::from(RawValue::from_string(json)?)))
    }

    pub fn get(&self) -> &str {
        self.0.get()
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.get().as_bytes()
    }

    pub fn len(&self) -> usize {
        self.get().len()
    }

    pub fn is_empty(&self) -> bool {
        self.get().is_empty()
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Payload {}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Payload").field(&self.get()).finish()
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Payload {
    /// Either shape: the payload as JSON (now), or as a string holding it (before).
    /// Only `serde_json` can read a task (it alone knows raw values).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Payload, D::Error> {
        use serde::de::Error;
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        if !raw.get().starts_with('"') {
            return Ok(Payload(Arc::from(raw)));
        }
        let json: String = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        Payload::from_json(json)
            .map_err(|e| D::Error::custom(format!("a payload string that is not JSON: {e}")))
    }
}

/// Cuts a response body to the logged size on a character boundary.
pub fn truncate_body(body: &str, max: usize) -> String {
    if body.len() <= max {
        return body.to_string();
    }
    let mut end = max;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    body[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_headers_are_kept_bounded_and_a_cookie_masked() {
        let long = "v".repeat(1000);
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("Set-Cookie", "session=secret"),
        ];
        headers.push(("X-Long", long.as_str()));
        let many: Vec<String> = (0..50).map(|i| format!("x-{i}")).collect();
        headers.extend(many.iter().map(|n| (n.as_str(), "1")));
        let kept = logged_response_headers(headers);
        assert_eq!(kept.len(), MAX_LOGGED_RESPONSE_HEADERS);
        assert_eq!(kept[0], ("content-type".into(), "application/json".into()));
        assert_eq!(kept[1], ("set-cookie".into(), "********".into()));
        assert_eq!(kept[2].1.chars().count(), MAX_LOGGED_HEADER_VALUE_CHARS);
    }

    #[test]
    fn statuses_round_trip() {
        for s in ["pending", "succeeded", "failed", "dead", "skipped"] {
            assert_eq!(DeliveryStatus::parse(s).unwrap().as_str(), s);
        }
        assert!(DeliveryStatus::parse("lost").is_none());
    }

    fn task_json(payload: &str) -> String {
        format!(
            r#"{{"delivery_id":"msg_1","account_id":"acct","subscription_id":"wh_1","event_id":"evt_1","event_type":"call.ended","payload":{payload}}}"#
        )
    }

    /// A payload with everything escaping touches: quotes, backslashes, a control
    /// character (written escaped), and characters beyond ASCII (written as they are).
    const PAYLOAD: &str = r#"{"id":"evt_1","type":"call.ended","data":{"q":"say \"hi\"","path":"C:\\dir","nl":"a\nb","u":"\u0001","é":"ü😀"}}"#;

    #[test]
    fn a_task_carries_its_payload_as_it_is_and_reads_back_the_same_bytes() {
        let task: DeliveryTask = serde_json::from_str(&task_json(PAYLOAD)).unwrap();
        assert_eq!(task.payload.get(), PAYLOAD);
        let written = serde_json::to_string(&task).unwrap();
        assert!(
            written.contains(&format!(r#""payload":{PAYLOAD}"#)),
            "{written}"
        );
        assert_eq!(written.len(), task_json(PAYLOAD).len());
        let again: DeliveryTask = serde_json::from_str(&written).unwrap();
        assert_eq!(again, task);
        assert_eq!(again.payload.as_bytes(), PAYLOAD.as_bytes());
    }

    #[test]
    fn a_task_written_before_with_its_payload_as_a_string_still_reads() {
        // As tasks were written before: the payload a JSON string holding the JSON.
        let old = task_json(&serde_json::to_string(PAYLOAD).unwrap());
        assert!(old.contains(r#""payload":"{\"id\":"#), "{old}");
        let task: DeliveryTask = serde_json::from_str(&old).unwrap();
        assert_eq!(task.payload.as_bytes(), PAYLOAD.as_bytes());
        // Written again (a deferral, a dead letter), it takes the new shape, same bytes.
        let written = serde_json::to_string(&task).unwrap();
        assert_eq!(written, task_json(PAYLOAD));
        // An old task whose string is not JSON is refused, not sent as something else.
        assert!(serde_json::from_str::<DeliveryTask>(&task_json(r#""not json""#)).is_err());
    }

    #[test]
    fn the_payload_of_an_event_is_its_delivered_body() {
        let event = Event {
            id: EventId::parse("evt_1").unwrap(),
            event_type: EventType::known("call.ended").unwrap(),
            account_id: AccountId::parse("acct").unwrap(),
            occurred_at: "2026-11-26T12:00:00Z".into(),
            received_at: Timestamp::EPOCH,
            data: serde_json::json!({"q": "\"quoted\""}),
        };
        assert_eq!(Payload::of(&event).get(), event.payload());
        assert!(Payload::from_json(" {}".into()).is_err());
        assert!(Payload::from_json("{".into()).is_err());
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_body("héllo", 2), "h");
        assert_eq!(truncate_body("hello", 10), "hello");
    }
}
