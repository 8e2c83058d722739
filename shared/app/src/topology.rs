//! The queue topology, written once: how long a received message stays hidden, how many
//! receives send it to its dead-letter queue, how long it is kept, how large a message may
//! be, and how the functions consume it. The embedded runner builds its queues and pollers from these values, the
//! AWS provisioning (moto, quick starts) creates its queues from them, and a test fails if
//! `template.yaml` says anything else.

use std::time::Duration;

use crate::ports::MAX_MESSAGE_BYTES;
use domain::subscription::MAX_ATTEMPTS_LIMIT;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSpec {
    /// The name after the stage prefix (`webhooks-<stage>-<name>` in the template).
    pub name: &'static str,
    pub visibility: Duration,
    /// Receives after which the queue itself moves a message to `dead_letter`.
    pub max_receives: Option<u32>,
    pub dead_letter: Option<&'static str>,
    pub retention: Duration,
    /// The largest message the queue takes (SQS's `MaximumMessageSize`; its classic
    /// default, 256 KiB, is too small for a large event's delivery on top of its history).
    pub max_message_bytes: usize,
}

/// How a function takes messages from its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerSpec {
    pub queue: &'static str,
    pub batch_size: usize,
    /// Batches handled at once (the event source mapping's maximum concurrency).
    pub max_concurrency: usize,
    /// The function's timeout; the queue hides a message 6 times as long, as AWS advises,
    /// so that a batch still running is never handed to a second consumer.
    pub function_timeout: Duration,
}

/// SQS's longest retention: a retry schedule must end well before it.
pub const RETENTION: Duration = Duration::from_secs(14 * 86_400);

pub const FANOUT: ConsumerSpec = ConsumerSpec {
    queue: "events",
    batch_size: 10,
    max_concurrency: 10,
    function_timeout: Duration::from_secs(30),
};

/// A batch is sent in one wave (10 at once), so the slowest endpoint's 30 s timeout plus
/// logging fits in the function's timeout.
pub const DELIVER: ConsumerSpec = ConsumerSpec {
    queue: "deliveries",
    batch_size: 10,
    max_concurrency: 50,
    function_timeout: Duration::from_secs(60),
};

pub const EVENTS: QueueSpec = QueueSpec {
    name: "events",
    visibility: FANOUT.function_timeout.saturating_mul(6),
    max_receives: Some(10),
    dead_letter: Some("events-dlq"),
    retention: RETENTION,
    max_message_bytes: MAX_MESSAGE_BYTES,
};

pub const EVENTS_DLQ: QueueSpec = QueueSpec {
    name: "events-dlq",
    visibility: Duration::from_secs(30),
    max_receives: None,
    dead_letter: None,
    retention: RETENTION,
    max_message_bytes: MAX_MESSAGE_BYTES,
};

/// The queue's own redrive is a safety net above the largest attempt budget: the deliver
/// function moves exhausted deliveries to the dead-letter queue itself, with their history.
/// What the queue moves (a message whose every receive crashed, timed out or was
/// throttled) goes to [`DELIVERIES_STRANDED`], whose consumer marks the delivery dead:
/// such a move never passes through the deliver function, and the delivery would otherwise
/// stay `pending` for ever with no message behind it.
pub const DELIVERIES: QueueSpec = QueueSpec {
    name: "deliveries",
    visibility: DELIVER.function_timeout.saturating_mul(6),
    max_receives: Some(MAX_ATTEMPTS_LIMIT + 5),
    dead_letter: Some("deliveries-stranded"),
    retention: RETENTION,
    max_message_bytes: MAX_MESSAGE_BYTES,
};

/// Consumed by the deliver function too (see `stranded`), so it hides a message as long as
/// the deliveries queue does. A message its consumer fails on ten times goes on to the
/// dead-letter queue, for a human, rather than cycling until its retention.
pub const DELIVERIES_STRANDED: QueueSpec = QueueSpec {
    name: "deliveries-stranded",
    visibility: DELIVER.function_timeout.saturating_mul(6),
    max_receives: Some(10),
    dead_letter: Some("deliveries-dlq"),
    retention: RETENTION,
    max_message_bytes: MAX_MESSAGE_BYTES,
};

/// How the deliver function takes what the deliveries queue gave up on: rare, so little
/// concurrency (the event source mapping's minimum).
pub const STRANDED: ConsumerSpec = ConsumerSpec {
    queue: "deliveries-stranded",
    batch_size: 10,
    max_concurrency: 2,
    function_timeout: DELIVER.function_timeout,
};

pub const DELIVERIES_DLQ: QueueSpec = QueueSpec {
    name: "deliveries-dlq",
    visibility: Duration::from_secs(30),
    max_receives: None,
    dead_letter: None,
    retention: RETENTION,
    max_message_bytes: MAX_MESSAGE_BYTES,
};

pub const QUEUES: [QueueSpec; 5] = [
    EVENTS,
    EVENTS_DLQ,
    DELIVERIES,
    DELIVERIES_STRANDED,
    DELIVERIES_DLQ,
];
pub const CONSUMERS: [ConsumerSpec; 3] = [FANOUT, DELIVER, STRANDED];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queue_named_exists_and_every_message_outlives_its_retries() {
        let names: Vec<_> = QUEUES.iter().map(|q| q.name).collect();
        for q in QUEUES {
            if let Some(dlq) = q.dead_letter {
                assert!(names.contains(&dlq), "{} redrives to unknown {dlq}", q.name);
                assert!(q.max_receives.is_some());
            }
        }
        for c in CONSUMERS {
            let q = QUEUES.iter().find(|q| q.name == c.queue).unwrap();
            assert!(q.visibility >= c.function_timeout * 6, "{}", q.name);
            // SQS event source mappings take at most 10 per batch from a standard queue
            // without a batching window, and our handlers send at most 10 per call.
            assert!((1..=10).contains(&c.batch_size));
        }
        assert!(DELIVERIES.max_receives.unwrap() > MAX_ATTEMPTS_LIMIT);
        for q in QUEUES {
            // What SQS allows; a dead-letter queue takes whatever its source queue does.
            assert!((1024..=MAX_MESSAGE_BYTES).contains(&q.max_message_bytes));
            if let Some(dlq) = q.dead_letter {
                let dlq = QUEUES.iter().find(|d| d.name == dlq).unwrap();
                assert!(dlq.max_message_bytes >= q.max_message_bytes, "{}", q.name);
            }
        }
    }
}
