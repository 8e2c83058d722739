use std::time::Duration;

use async_trait::async_trait;

use crate::Result;

/// SQS's limit on entries per batch call; adapters split larger batches.
pub const MAX_BATCH: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Unique within one send call.
    pub id: String,
    pub body: String,
    pub delay: Duration,
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
}
