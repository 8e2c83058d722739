//! Reading what Lambda's SQS event source hands a function, and setting aside what can
//! never be processed.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsMessage};
use serde::Serialize;

use crate::ports::{OutgoingMessage, MAX_MESSAGE_BYTES};
use crate::Services;
use domain::time::Timestamp;

/// A record with the fields every handler needs, or `None` for a record without them.
pub(crate) struct Record<'a> {
    pub message_id: &'a str,
    pub receipt_handle: &'a str,
    pub body: &'a str,
    pub receive_count: u32,
    /// When the message was sent: its retention counts from then.
    pub sent_at: Option<Timestamp>,
}

impl<'a> Record<'a> {
    pub fn from_message(m: &'a SqsMessage) -> Option<Self> {
        Some(Record {
            message_id: m.message_id.as_deref()?,
            receipt_handle: m.receipt_handle.as_deref().unwrap_or(""),
            body: m.body.as_deref()?,
            receive_count: m
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|c| c.parse().ok())
                .unwrap_or(1),
            sent_at: m
                .attributes
                .get("SentTimestamp")
                .and_then(|t| t.parse().ok())
                .map(Timestamp::from_millis),
        })
    }
}

/// What the dead-letter queue receives for a message no handler can read: the message as
/// it came and why it was refused, for a human to look at. Beside the dead deliveries, it
/// is told apart by its single `unprocessable` field.
#[derive(Debug, Serialize)]
struct Unprocessable<'a> {
    unprocessable: UnprocessableMessage<'a>,
}

#[derive(Debug, Serialize)]
struct UnprocessableMessage<'a> {
    queue: &'a str,
    message_id: &'a str,
    body: &'a str,
    /// The body's length when only its start is kept, to fit in the dead-letter queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    body_truncated_from: Option<usize>,
    error: String,
    set_aside_at: Timestamp,
}

/// The set-aside message for `record`, within what a queue message may be: the unreadable
/// body, escaped into a string, can be several times its size. Its start is kept then.
fn set_aside_body(queue: &str, record: &Record<'_>, error: String, at: Timestamp) -> String {
    let mut keep = record.body.len();
    loop {
        let mut end = keep;
        while !record.body.is_char_boundary(end) {
            end -= 1;
        }
        let body = serde_json::to_string(&Unprocessable {
            unprocessable: UnprocessableMessage {
                queue,
                message_id: record.message_id,
                body: &record.body[..end],
                body_truncated_from: (end < record.body.len()).then_some(record.body.len()),
                error: error.clone(),
                set_aside_at: at,
            },
        })
        .expect("a set-aside message serialises");
        if body.len() <= MAX_MESSAGE_BYTES || end == 0 {
            return body;
        }
        keep = end / 2;
    }
}

/// A message that cannot be decoded is a permanent failure: received again it fails the
/// same way, so it is moved to the dead-letter queue at once and acknowledged, rather than
/// coming back until the queue's own redrive gives up on it (35 receives of the deliveries
/// queue, hours later). If the move fails the message is reported as failed and comes back.
pub(crate) async fn set_aside(
    services: &Services,
    queue: &str,
    record: &Record<'_>,
    error: &serde_json::Error,
    response: &mut SqsBatchResponse,
) {
    tracing::error!(queue, message_id = record.message_id, error = %error, "unreadable message set aside in the dead-letter queue");
    let body = set_aside_body(queue, record, error.to_string(), services.clock.now());
    let moved = services
        .dead_letter_queue
        .send_batch(vec![OutgoingMessage {
            id: "0".into(),
            body,
            delay: Duration::ZERO,
            held_for: None,
        }])
        .await;
    if let Err(e) = moved {
        tracing::warn!(queue, message_id = record.message_id, error = %e, "could not set aside an unreadable message; it will come back");
        response.add_failure(record.message_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_aside_message_fits_in_the_queue_keeping_the_start_of_its_body() {
        let record = |body| Record {
            message_id: "m1",
            receipt_handle: "r1",
            body,
            receive_count: 1,
            sent_at: None,
        };
        let small = set_aside_body(
            "events",
            &record("not json"),
            "bad".into(),
            Timestamp::from_millis(1),
        );
        let v: serde_json::Value = serde_json::from_str(&small).unwrap();
        assert_eq!(v["unprocessable"]["body"], "not json");
        assert!(v["unprocessable"].get("body_truncated_from").is_none());

        // A message at the queue's limit, every byte of it escaped twice over.
        let huge = "\"".repeat(MAX_MESSAGE_BYTES);
        let body = set_aside_body(
            "events",
            &record(&huge),
            "bad".into(),
            Timestamp::from_millis(1),
        );
        assert!(body.len() <= MAX_MESSAGE_BYTES, "{}", body.len());
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let kept = v["unprocessable"]["body"].as_str().unwrap();
        assert!(!kept.is_empty() && huge.starts_with(kept));
        assert_eq!(v["unprocessable"]["body_truncated_from"], MAX_MESSAGE_BYTES);
    }
}
