//! A queue with SQS semantics, as the embedded `SqliteQueue` has them: a received message
//! is hidden for the visibility timeout under a fresh receipt handle, only that handle
//! deletes it or changes its visibility (a stale one is ignored, no error), and a message
//! received too often is moved to the dead-letter queue by the receive that finds it
//! visible again. Times come from the clock port, so a test with a fake clock controls
//! visibility and delays; a long poll waits on tokio's timer and wakes on a send.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use app::ports::{
    check_sizes, released_after_ms, Clock, OsRandom, OutgoingMessage, Queue, QueueMessage,
    MAX_BATCH, MAX_MESSAGE_BYTES,
};
use app::{Error, Result};
use domain::ids;
use domain::random::Random;
use domain::time::Timestamp;

/// Where a message goes after too many receives: SQS's redrive policy.
#[derive(Clone)]
pub struct Redrive {
    pub dead_letter_queue: Arc<MemoryQueue>,
    pub max_receive_count: u32,
}

struct Message {
    id: String,
    body: String,
    sent_at: i64,
    visible_at: i64,
    receive_count: u32,
    /// The handle of the latest receive; `None` before the first and after a redrive.
    receipt: Option<String>,
    /// Sending order: the oldest of messages visible since the same moment goes first.
    sequence: u64,
    /// Waits for this endpoint's recovery (`OutgoingMessage::held_for`); cleared when
    /// received.
    held_for: Option<String>,
}

#[derive(Default)]
struct Messages {
    by_id: HashMap<String, Message>,
    sent: u64,
}

impl Messages {
    fn insert(&mut self, mut message: Message) {
        self.sent += 1;
        message.sequence = self.sent;
        self.by_id.insert(message.id.clone(), message);
    }

    /// The message a receipt handle was given for, while that handle is its latest.
    fn by_receipt(&mut self, receipt: &str) -> Option<&mut Message> {
        let id = receipt.split_once('#').map_or(receipt, |(id, _)| id);
        self.by_id
            .get_mut(id)
            .filter(|m| m.receipt.as_deref() == Some(receipt))
    }
}

pub struct MemoryQueue {
    name: String,
    visibility_timeout: Duration,
    redrive: Option<Redrive>,
    clock: Arc<dyn Clock>,
    /// A larger message is refused, as SQS refuses one over its queue's size.
    max_message_bytes: usize,
    messages: Mutex<Messages>,
    /// Wakes long-polling receivers when a message becomes visible: one per batch's worth
    /// of messages sent, so a send does not set every idle poller racing for them.
    arrivals: Notify,
}

impl MemoryQueue {
    pub fn new(
        name: impl Into<String>,
        visibility_timeout: Duration,
        redrive: Option<Redrive>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        MemoryQueue {
            name: name.into(),
            visibility_timeout,
            redrive,
            clock,
            max_message_bytes: MAX_MESSAGE_BYTES,
            messages: Mutex::new(Messages::default()),
            arrivals: Notify::new(),
        }
    }

    /// Takes messages of up to `max` bytes (the queue's `topology` size) instead of
    /// [`MAX_MESSAGE_BYTES`].
    pub fn with_max_message_bytes(mut self, max: usize) -> Self {
        self.max_message_bytes = max;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Messages in the queue, visible or not.
    pub fn len(&self) -> Result<usize> {
        Ok(self.lock()?.by_id.len())
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Messages>> {
        self.messages
            .lock()
            .map_err(|_| Error::queue(format!("a call panicked while changing {}", self.name)))
    }

    /// Takes a message redriven from another queue, visible at once with no receives.
    fn accept_redriven(&self, mut message: Message, now: i64) -> Result<()> {
        message.visible_at = now;
        message.receive_count = 0;
        message.receipt = None;
        message.held_for = None;
        self.lock()?.insert(message);
        self.arrivals.notify_one();
        Ok(())
    }

    /// One look for visible messages, oldest visible first. Says when the next one becomes
    /// visible when none is.
    fn take(&self, max: usize) -> Result<(Vec<QueueMessage>, Option<i64>)> {
        let now = self.clock.now_ms();
        let hidden_until = now + self.visibility_timeout.as_millis() as i64;
        let mut redriven = Vec::new();
        let mut taken = Vec::new();
        let next_visible = {
            let mut messages = self.lock()?;
            let mut visible: Vec<(i64, u64, String)> = messages
                .by_id
                .values()
                .filter(|m| m.visible_at <= now)
                .map(|m| (m.visible_at, m.sequence, m.id.clone()))
                .collect();
            visible.sort_unstable();
            for (_, _, id) in visible {
                if taken.len() >= max {
                    break;
                }
                let Some(receive_count) = messages.by_id.get(&id).map(|m| m.receive_count) else {
                    continue;
                };
                if let Some(r) = self
                    .redrive
                    .as_ref()
                    .filter(|r| receive_count >= r.max_receive_count)
                {
                    if let Some(m) = messages.by_id.remove(&id) {
                        redriven.push((r.dead_letter_queue.clone(), m));
                    }
                    continue;
                }
                let Some(m) = messages.by_id.get_mut(&id) else {
                    continue;
                };
                let receipt = format!("{}#{:016x}", m.id, nonce());
                m.receive_count += 1;
                m.visible_at = hidden_until;
                m.receipt = Some(receipt.clone());
                m.held_for = None;
                taken.push(QueueMessage {
                    message_id: m.id.clone(),
                    receipt_handle: receipt,
                    body: m.body.clone(),
                    receive_count: m.receive_count,
                    sent_at: m.sent_at,
                });
            }
            if taken.is_empty() {
                messages.by_id.values().map(|m| m.visible_at).min()
            } else {
                None
            }
        };
        // Outside this queue's lock: a dead-letter queue could redrive back into this one.
        for (dead_letter_queue, message) in redriven {
            dead_letter_queue.accept_redriven(message, now)?;
        }
        Ok((taken, next_visible))
    }
}

fn nonce() -> u64 {
    let mut b = [0u8; 8];
    OsRandom.fill(&mut b);
    u64::from_le_bytes(b)
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        check_sizes(&self.name, &messages, self.max_message_bytes)?;
        let count = messages.len();
        let now = self.clock.now_ms();
        {
            let mut stored = self.lock()?;
            for m in messages {
                stored.insert(Message {
                    id: ids::time_ordered("m", Timestamp::from_millis(now), &OsRandom),
                    body: m.body,
                    sent_at: now,
                    visible_at: now + m.delay.as_millis() as i64,
                    receive_count: 0,
                    receipt: None,
                    sequence: 0,
                    held_for: m.held_for,
                });
            }
        }
        for _ in 0..count.div_ceil(MAX_BATCH) {
            self.arrivals.notify_one();
        }
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<QueueMessage>> {
        let max = max.max(1);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so a send between the look and the wait still wakes us.
            let arrival = self.arrivals.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();
            let (taken, next_visible) = self.take(max)?;
            if !taken.is_empty() {
                if taken.len() >= max {
                    // There may be more: pass the wake-up on to another receiver.
                    self.arrivals.notify_one();
                }
                return Ok(taken);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let mut wake = deadline;
            if let Some(at) = next_visible {
                let in_ms = (at - self.clock.now_ms()).max(0) as u64;
                wake = wake.min(now + Duration::from_millis(in_ms));
            }
            tokio::select! {
                _ = &mut arrival => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn delete_batch(&self, receipt_handles: Vec<String>) -> Result<()> {
        let mut messages = self.lock()?;
        for receipt in &receipt_handles {
            if let Some(id) = messages.by_receipt(receipt).map(|m| m.id.clone()) {
                messages.by_id.remove(&id);
            }
        }
        Ok(())
    }

    async fn change_visibility_batch(&self, changes: Vec<(String, Duration)>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        {
            let mut messages = self.lock()?;
            for (receipt, after) in &changes {
                if let Some(m) = messages.by_receipt(receipt) {
                    m.visible_at = now + after.as_millis() as i64;
                }
            }
        }
        // A change to zero makes a message visible now: wake the receivers.
        self.arrivals.notify_waiters();
        Ok(())
    }

    fn releases_held(&self) -> bool {
        true
    }

    async fn release_held(&self, key: &str, per_second: u32) -> Result<usize> {
        let now = self.clock.now_ms();
        let released = {
            let mut messages = self.lock()?;
            let mut held: Vec<(i64, u64, String)> = messages
                .by_id
                .values()
                .filter(|m| m.held_for.as_deref() == Some(key))
                .map(|m| (m.visible_at, m.sequence, m.id.clone()))
                .collect();
            held.sort_unstable();
            for (n, (_, _, id)) in held.iter().enumerate() {
                if let Some(m) = messages.by_id.get_mut(id) {
                    m.visible_at = m.visible_at.min(now + released_after_ms(n, per_second));
                    m.held_for = None;
                }
            }
            held.len()
        };
        if released > 0 {
            self.arrivals.notify_waiters();
        }
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    struct ManualClock(AtomicI64);

    impl Clock for ManualClock {
        fn now(&self) -> Timestamp {
            Timestamp::from_millis(self.0.load(Ordering::SeqCst))
        }
    }

    fn message(body: &str) -> OutgoingMessage {
        OutgoingMessage {
            id: "0".into(),
            body: body.into(),
            delay: Duration::ZERO,
            held_for: None,
        }
    }

    #[tokio::test]
    async fn a_redriven_message_wakes_a_long_poll_on_the_dead_letter_queue() {
        let clock = Arc::new(ManualClock(AtomicI64::new(1_000)));
        let dlq = Arc::new(MemoryQueue::new(
            "dlq",
            Duration::from_secs(1),
            None,
            clock.clone(),
        ));
        let queue = MemoryQueue::new(
            "work",
            Duration::from_secs(1),
            Some(Redrive {
                dead_letter_queue: dlq.clone(),
                max_receive_count: 1,
            }),
            clock.clone(),
        );
        queue.send_batch(vec![message("poison")]).await.unwrap();
        assert_eq!(queue.receive(1, Duration::ZERO).await.unwrap().len(), 1);
        let waiting = tokio::spawn({
            let dlq = dlq.clone();
            async move { dlq.receive(1, Duration::from_secs(20)).await }
        });
        tokio::task::yield_now().await;
        clock.0.fetch_add(1_000, Ordering::SeqCst);
        assert!(queue.receive(1, Duration::ZERO).await.unwrap().is_empty());
        let dead = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the long poll woke")
            .unwrap()
            .unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (dead[0].body.as_str(), dead[0].receive_count),
            ("poison", 1)
        );
        assert!(queue.is_empty().unwrap());
    }

    #[tokio::test]
    async fn only_the_latest_receipt_deletes() {
        let clock = Arc::new(ManualClock(AtomicI64::new(1_000)));
        let queue = MemoryQueue::new("work", Duration::from_secs(1), None, clock.clone());
        queue.send_batch(vec![message("m")]).await.unwrap();
        let first = queue.receive(1, Duration::ZERO).await.unwrap();
        clock.0.fetch_add(1_000, Ordering::SeqCst);
        let second = queue.receive(1, Duration::ZERO).await.unwrap();
        assert_eq!(second[0].receive_count, 2);
        queue
            .delete_batch(vec![first[0].receipt_handle.clone()])
            .await
            .unwrap();
        assert_eq!(queue.len().unwrap(), 1, "a stale receipt deleted");
        queue
            .delete_batch(vec![second[0].receipt_handle.clone()])
            .await
            .unwrap();
        assert!(queue.is_empty().unwrap());
    }
}
