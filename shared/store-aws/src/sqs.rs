use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName, SendMessageBatchRequestEntry,
};

use super::queue_error;
use app::ports::{
    batch_calls, check_sizes, OutgoingMessage, Queue, QueueMessage, MAX_BATCH, MAX_MESSAGE_BYTES,
};
use app::{Error, Result};

/// SQS's longest delay on a message.
const MAX_DELAY_SECS: u64 = 900;
/// SQS's longest visibility timeout.
const MAX_VISIBILITY_SECS: u64 = 12 * 3600;
/// SQS's longest long poll.
const MAX_WAIT_SECS: u64 = 20;
/// Entries a batch send retries when SQS reports them failed but the call succeeded.
const SEND_RETRIES: usize = 3;

pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    /// The queue's `MaximumMessageSize`: a larger message is refused here, as SQS would.
    max_message_bytes: usize,
}

impl SqsQueue {
    /// A queue taking messages of up to [`MAX_MESSAGE_BYTES`], as `topology` sets them all.
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
            max_message_bytes: MAX_MESSAGE_BYTES,
        }
    }

    /// For a queue whose `MaximumMessageSize` is `max` bytes.
    pub fn with_max_message_bytes(mut self, max: usize) -> Self {
        self.max_message_bytes = max;
        self
    }

    /// The queue's name: the last part of its URL.
    fn name(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or(&self.url)
    }
}

fn whole_seconds(d: Duration, max: u64) -> i32 {
    // Rounded up: a retry must never come earlier than its step.
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.min(max) as i32
}

fn build_error(e: impl std::error::Error) -> Error {
    Error::queue(format!("building an SQS request: {e}"))
}

#[async_trait]
impl Queue for SqsQueue {
    /// A message over the queue's size is refused before anything is sent. The rest go in
    /// as many calls as SQS's limits on one call need: 10 entries, 1 MiB together.
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Result<()> {
        check_sizes(self.name(), &messages, self.max_message_bytes)?;
        for chunk in batch_calls(&messages) {
            let mut pending: Vec<SendMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&m.body)
                        .delay_seconds(whole_seconds(m.delay, MAX_DELAY_SECS))
                        .build()
                        .map_err(build_error)
                })
                .collect::<Result<_>>()?;
            for _ in 0..SEND_RETRIES {
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(pending.clone()))
                    .send()
                    .await
                    .map_err(queue_error)?;
                let failed: Vec<&str> = out.failed().iter().map(|f| f.id()).collect();
                pending.retain(|e| failed.contains(&e.id()));
                if pending.is_empty() {
                    break;
                }
            }
            if !pending.is_empty() {
                return Err(Error::queue(format!(
                    "SQS refused {} messages of a batch",
                    pending.len()
                )));
            }
        }
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<QueueMessage>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .wait_time_seconds(wait.as_secs().min(MAX_WAIT_SECS) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(queue_error)?;
        Ok(out
            .messages()
            .iter()
            .map(|m| {
                let attr = |name: MessageSystemAttributeName| {
                    m.attributes()
                        .and_then(|a| a.get(&name))
                        .and_then(|v| v.parse::<i64>().ok())
                };
                QueueMessage {
                    message_id: m.message_id().unwrap_or_default().to_string(),
                    receipt_handle: m.receipt_handle().unwrap_or_default().to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount)
                        .map_or(1, |c| c.clamp(1, u32::MAX as i64) as u32),
                    sent_at: attr(MessageSystemAttributeName::SentTimestamp).unwrap_or(0),
                }
            })
            .collect())
    }

    async fn delete_batch(&self, receipt_handles: Vec<String>) -> Result<()> {
        for chunk in receipt_handles.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .build()
                        .map_err(build_error)
                })
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(queue_error)?;
            for f in out.failed() {
                // A stale receipt is no error: the message was received again since.
                tracing::debug!(code = f.code(), "delete of a stale receipt ignored");
            }
        }
        Ok(())
    }

    async fn change_visibility_batch(&self, changes: Vec<(String, Duration)>) -> Result<()> {
        for chunk in changes.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, (r, after))| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .visibility_timeout(whole_seconds(*after, MAX_VISIBILITY_SECS))
                        .build()
                        .map_err(build_error)
                })
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(queue_error)?;
            for f in out.failed() {
                tracing::warn!(code = f.code(), message = ?f.message(), "visibility change refused");
            }
        }
        Ok(())
    }

    /// SQS finds messages by receipt only, and a waiting message has none: a held one waits
    /// its whole delay (deliver then parks as before holding existed).
    fn releases_held(&self) -> bool {
        false
    }

    async fn release_held(&self, _key: &str, _per_second: u32) -> Result<usize> {
        Ok(0)
    }
}
