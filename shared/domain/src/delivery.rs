//! Deliveries: one per (event, subscription) pair, with the log of its attempts.

use serde::{Deserialize, Serialize};

/// Response bodies are kept to this many bytes in the attempt log.
pub const MAX_LOGGED_RESPONSE_BYTES: usize = 4 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub account_id: String,
    pub subscription_id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    /// Attempts made over the delivery's whole life (a redrive does not reset it).
    pub attempt_count: u32,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(default)]
    pub next_attempt_at: Option<i64>,
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
    /// Milliseconds since the epoch when the request was sent.
    pub at: i64,
    pub url: String,
    /// The request headers as sent, with secrets masked.
    pub request_headers: Vec<(String, String)>,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub response_body: Option<String>,
    pub error: Option<String>,
}

/// The outcome of handling one delivery message, written to the log in one batch per
/// queue batch and before the message is acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryUpdate {
    pub delivery_id: String,
    pub account_id: String,
    pub status: DeliveryStatus,
    pub attempt: Option<Attempt>,
    pub next_attempt_at: Option<i64>,
    pub error: Option<String>,
    pub at: i64,
}

/// The message on the deliveries queue. It carries the exact body to send, so an attempt
/// needs no read of the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryTask {
    pub delivery_id: String,
    pub account_id: String,
    pub subscription_id: String,
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    /// Receives of earlier copies of this message that count against the attempt budget:
    /// a delivery deferred for fairness goes back as a new message, whose receive count
    /// starts again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub prior_receives: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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
    fn statuses_round_trip() {
        for s in ["pending", "succeeded", "failed", "dead", "skipped"] {
            assert_eq!(DeliveryStatus::parse(s).unwrap().as_str(), s);
        }
        assert!(DeliveryStatus::parse("lost").is_none());
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_body("héllo", 2), "h");
        assert_eq!(truncate_body("hello", 10), "hello");
    }
}
