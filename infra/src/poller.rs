//! Pollers that behave like Lambda's SQS event source mapping: receive a batch, hand it to
//! the function as an `SqsEvent`, delete what did not fail, leave failures to their
//! visibility timeout.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use app::ports::{Queue, QueueMessage};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use domain::backoff::Backoff;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A queue that fails to answer is asked again after 100 ms, doubling up to 5 s while it
/// keeps failing; the first answer resets it.
const RECEIVE_BACKOFF: Backoff = Backoff::new(
    Duration::from_millis(100),
    2,
    Duration::from_secs(5),
    u32::MAX,
);

#[derive(Debug, Clone, Copy)]
pub struct PollerConfig {
    pub batch_size: usize,
    /// Batches in flight at once, like the mapping's maximum concurrency.
    pub concurrency: usize,
}

/// An `SqsEvent` exactly as Lambda would build it for these messages.
pub fn sqs_event(queue_name: &str, messages: &[QueueMessage]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = Some(m.message_id.clone());
            record.receipt_handle = Some(m.receipt_handle.clone());
            record.body = Some(m.body.clone());
            record.attributes.insert(
                "ApproximateReceiveCount".into(),
                m.receive_count.to_string(),
            );
            record
                .attributes
                .insert("SentTimestamp".into(), m.sent_at.to_string());
            record.event_source = Some("aws:sqs".into());
            record.event_source_arn = Some(format!("arn:aws:sqs:local:000000000000:{queue_name}"));
            record.aws_region = Some("local".into());
            record
        })
        .collect();
    event
}

/// Receipt handles of the messages to delete: every one the function did not report.
pub fn acknowledged(messages: &[QueueMessage], response: &SqsBatchResponse) -> Vec<String> {
    let failed: HashSet<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    messages
        .iter()
        .filter(|m| !failed.contains(m.message_id.as_str()))
        .map(|m| m.receipt_handle.clone())
        .collect()
}

/// Starts `config.concurrency` workers on `queue` until `stop` turns true.
pub fn spawn<H, F>(
    name: &'static str,
    queue: Arc<dyn Queue>,
    config: PollerConfig,
    handler: H,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>>
where
    H: Fn(SqsEvent) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = SqsBatchResponse> + Send,
{
    (0..config.concurrency.max(1))
        .map(|_| {
            let (queue, handler, mut stop) = (queue.clone(), handler.clone(), stop.clone());
            tokio::spawn(async move {
                let mut receive_failures = RECEIVE_BACKOFF;
                while !*stop.borrow() {
                    let received = tokio::select! {
                        r = queue.receive(config.batch_size, Duration::from_secs(20)) => r,
                        _ = stop.changed() => break,
                    };
                    let messages = match received {
                        Ok(m) => {
                            receive_failures = RECEIVE_BACKOFF;
                            if m.is_empty() {
                                continue;
                            }
                            m
                        }
                        Err(e) => {
                            tracing::error!(queue = name, error = %e, "receive failed");
                            let delay = receive_failures.next().unwrap_or(Duration::from_secs(5));
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                    };
                    let response = handler(sqs_event(name, &messages)).await;
                    let done = acknowledged(&messages, &response);
                    if let Err(e) = queue.delete_batch(done).await {
                        // They come back after their visibility timeout: delivered twice at worst.
                        tracing::error!(queue = name, error = %e, "delete failed");
                    }
                }
            })
        })
        .collect()
}
