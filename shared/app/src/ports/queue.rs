use std::time::Duration;

use async_trait::async_trait;

use crate::{Error, Result};

/// SQS's limit on entries per batch call; adapters split larger batches.
pub const MAX_BATCH: usize = 10;

/// The largest message body a queue takes, in bytes (UTF-8, as SQS counts them): SQS's
/// limit for a queue whose `MaximumMessageSize` is 1 MiB, as `topology` sets every queue
/// (the template and the AWS provisioning say the same). The embedded and in-memory queues
/// refuse what SQS would, so what works locally works on AWS. No message attributes are
/// sent, so the body is all that counts.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// SQS's cap on one batch send: its entries together.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Counted for each entry of a batch call beside its body, against [`MAX_BATCH_BYTES`]:
/// room for attributes and for any difference in how the service counts. A message too
/// large to share a call with its margin goes alone, where only its body counts.
pub const ENTRY_MARGIN_BYTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Unique within one send call.
    pub id: String,
    pub body: String,
    pub delay: Duration,
    /// The key (a subscription id) of the endpoint whose recovery this message waits for:
    /// [`Queue::release_held`] with that key brings it back before its `delay`, which is
    /// then only a backstop. Set only for a queue that [`Queue::releases_held`]; others
    /// ignore it.
    pub held_for: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
    /// Milliseconds since the epoch when it was sent.
    pub sent_at: i64,
}

/// A work queue with SQS semantics: a received message is invisible for the queue's
/// visibility timeout and comes back unless deleted; after too many receives it is moved
/// to the queue's dead-letter queue.
#[async_trait]
pub trait Queue: Send + Sync {
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Result<()>;
    /// Up to `max` visible messages; waits up to `wait` for the first to arrive.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<QueueMessage>>;
    /// Deletes by receipt handle; a stale handle deletes nothing and is no error.
    async fn delete_batch(&self, receipt_handles: Vec<String>) -> Result<()>;
    /// Makes each message visible again after the given time from now.
    async fn change_visibility_batch(&self, changes: Vec<(String, Duration)>) -> Result<()>;
    /// Sends each message, after its delay, in place of the received one whose receipt
    /// handle it is paired with: a new message (its receive count starts over), the
    /// received one gone. How a delivery that was not attempted goes back with a changed
    /// body (deliver's deferrals). SQS has no such call, so by default a copy is sent and
    /// then the original deleted: if the send fails nothing changed (the error says so);
    /// if the delete fails both exist, so the delivery may be attempted twice, never lost
    /// (logged, not an error). The embedded queue replaces in one write instead.
    async fn requeue_batch(&self, messages: Vec<(String, OutgoingMessage)>) -> Result<()> {
        let (receipts, copies): (Vec<String>, Vec<OutgoingMessage>) = messages.into_iter().unzip();
        self.send_batch(copies).await?;
        if let Err(e) = self.delete_batch(receipts).await {
            tracing::warn!(error = %e, "could not delete the originals of requeued messages");
        }
        Ok(())
    }
    /// Whether [`Queue::release_held`] works here: the embedded and in-memory queues, where
    /// one process sends, receives and knows when an endpoint recovers. SQS cannot find a
    /// group of waiting messages, so there a held message waits its whole delay. No
    /// default, like the next: a wrapper must say what it forwards.
    fn releases_held(&self) -> bool;
    /// Brings the messages held for `key` (sent or requeued with that `held_for`, not
    /// received since) back before their delay, oldest first, `per_second` of them a
    /// second from now: an endpoint that recovers gets its backlog at a pace it can take,
    /// not all at once. Never later than they were due. Answers how many; 0 where the
    /// queue does not release.
    async fn release_held(&self, key: &str, per_second: u32) -> Result<usize>;
}

/// When the `n`th message (from 0) of a release at `per_second` becomes visible, in ms
/// after the release: one every `1000 / per_second` ms.
pub fn released_after_ms(n: usize, per_second: u32) -> i64 {
    (n as i64).saturating_mul(1000) / i64::from(per_second.max(1))
}

/// Refuses a batch holding a message over `max_bytes` (nothing of it is sent): the same
/// message is refused every time, so the error is [`Error::TooLarge`], not worth retrying.
pub fn check_sizes(queue: &str, messages: &[OutgoingMessage], max_bytes: usize) -> Result<()> {
    match messages.iter().find(|m| m.body.len() > max_bytes) {
        None => Ok(()),
        Some(m) => Err(Error::TooLarge(format!(
            "a message of {} bytes for the {queue} queue, which takes at most {max_bytes} bytes",
            m.body.len()
        ))),
    }
}

/// Splits `messages` into runs, in order, that one batch call each can carry: at most
/// [`MAX_BATCH`] entries and [`MAX_BATCH_BYTES`] together, each entry counted with
/// [`ENTRY_MARGIN_BYTES`].
pub fn batch_calls(messages: &[OutgoingMessage]) -> Vec<&[OutgoingMessage]> {
    let mut calls = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, m) in messages.iter().enumerate() {
        let size = m.body.len() + ENTRY_MARGIN_BYTES;
        if i > start && (i - start == MAX_BATCH || bytes + size > MAX_BATCH_BYTES) {
            calls.push(&messages[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < messages.len() {
        calls.push(&messages[start..]);
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(len: usize) -> OutgoingMessage {
        OutgoingMessage {
            id: "0".into(),
            body: "x".repeat(len),
            delay: Duration::ZERO,
            held_for: None,
        }
    }

    fn shape(messages: &[OutgoingMessage]) -> Vec<usize> {
        batch_calls(messages).iter().map(|c| c.len()).collect()
    }

    #[test]
    fn calls_are_split_by_count_and_by_bytes() {
        assert!(batch_calls(&[]).is_empty());
        let small: Vec<_> = (0..25).map(|_| sized(100)).collect();
        assert_eq!(shape(&small), [10, 10, 5]);
        // 200 KiB each: five fit in 1 MiB with their margins, six do not.
        let large: Vec<_> = (0..10).map(|_| sized(200 * 1024)).collect();
        assert_eq!(shape(&large), [5, 5]);
        for call in batch_calls(&large) {
            let bytes: usize = call.iter().map(|m| m.body.len() + ENTRY_MARGIN_BYTES).sum();
            assert!(bytes <= MAX_BATCH_BYTES, "{bytes}");
        }
        // A message at the cap goes alone; the order is kept.
        let mixed = [sized(10), sized(MAX_MESSAGE_BYTES), sized(10), sized(10)];
        assert_eq!(shape(&mixed), [1, 1, 2]);
        let flat: Vec<usize> = batch_calls(&mixed)
            .concat()
            .iter()
            .map(|m| m.body.len())
            .collect();
        assert_eq!(flat, [10, MAX_MESSAGE_BYTES, 10, 10]);
    }

    #[test]
    fn a_message_over_the_cap_refuses_its_batch_naming_the_limit() {
        assert!(check_sizes("events", &[sized(MAX_MESSAGE_BYTES)], MAX_MESSAGE_BYTES).is_ok());
        let err = check_sizes(
            "events",
            &[sized(1), sized(MAX_MESSAGE_BYTES + 1)],
            MAX_MESSAGE_BYTES,
        )
        .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Invalid);
        let text = err.to_string();
        assert!(
            text.contains("1048577") && text.contains("1048576"),
            "{text}"
        );
    }
}
