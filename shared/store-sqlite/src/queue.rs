use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use tokio::sync::Notify;

use super::Db;
use app::ports::{
    check_sizes, Clock, OsRandom, OutgoingMessage, Queue, QueueMessage, MAX_BATCH,
    MAX_MESSAGE_BYTES,
};
use app::Result;
use domain::ids;
use domain::random::Random;
use domain::time::Timestamp;

/// Where a message goes after too many receives: SQS's redrive policy.
#[derive(Debug, Clone)]
pub struct Redrive {
    pub dead_letter_queue: String,
    pub max_receive_count: u32,
}

/// A durable queue with SQS semantics in the `queue_messages` table.
pub struct SqliteQueue {
    db: Db,
    name: String,
    visibility_timeout: Duration,
    redrive: Option<Redrive>,
    clock: Arc<dyn Clock>,
    /// A larger message is refused, as SQS refuses one over its queue's size.
    max_message_bytes: usize,
    /// Wakes long-polling receivers when a message is sent, instead of polling on a timer:
    /// one receiver per batch's worth of messages, not all of them, so a send does not set
    /// every idle poller racing for the same few rows.
    arrivals: Arc<Notify>,
}

impl SqliteQueue {
    pub fn new(
        db: Db,
        name: impl Into<String>,
        visibility_timeout: Duration,
        redrive: Option<Redrive>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        SqliteQueue {
            db,
            name: name.into(),
            visibility_timeout,
            redrive,
            clock,
            max_message_bytes: MAX_MESSAGE_BYTES,
            arrivals: Arc::new(Notify::new()),
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

    /// Makes every message that a consumer had received, and had not parked with a
    /// visibility change, visible at once. Only the single consumer of the data dir may
    /// call it, at start: whoever held those messages is gone.
    pub async fn release_in_flight(&self) -> Result<usize> {
        let (queue, now) = (self.name.clone(), self.clock.now_ms());
        let released = self
            .db
            .call(move |c| {
                Ok(c.execute(
                    "UPDATE queue_messages SET visible_at = ?2, receipt = NULL
                     WHERE queue = ?1 AND receipt IS NOT NULL AND parked = 0 AND visible_at > ?2",
                    params![queue, now],
                )?)
            })
            .await?;
        self.arrivals.notify_waiters();
        Ok(released)
    }

    /// Messages in the queue, visible or not.
    pub async fn len(&self) -> Result<usize> {
        let queue = self.name.clone();
        self.db
            .call(move |c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) FROM queue_messages WHERE queue = ?1",
                    [queue],
                    |r| r.get::<_, i64>(0),
                )? as usize)
            })
            .await
    }

    /// One attempt at taking visible messages; also says when the next one becomes visible.
    async fn take(&self, max: usize) -> Result<(Vec<QueueMessage>, Option<i64>)> {
        let queue = self.name.clone();
        let redrive = self.redrive.clone();
        let now = self.clock.now_ms();
        let hidden_until = now + self.visibility_timeout.as_millis() as i64;
        self.db
            .call(move |c| {
                let tx = c.savepoint()?;
                let rows: Vec<(String, String, i64, u32)> = {
                    let mut stmt = tx.prepare_cached(
                        "SELECT id, body, sent_at, receive_count FROM queue_messages
                         WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at LIMIT ?3",
                    )?;
                    let rows = stmt
                        .query_map(params![queue, now, max as i64], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                        })?
                        .collect::<rusqlite::Result<_>>()?;
                    rows
                };
                let mut taken = Vec::with_capacity(rows.len());
                for (id, body, sent_at, count) in rows {
                    if let Some(r) = redrive.as_ref().filter(|r| count >= r.max_receive_count) {
                        tx.prepare_cached(
                            "UPDATE queue_messages SET queue = ?3, visible_at = ?4,
                             receive_count = 0, receipt = NULL, parked = 0
                             WHERE queue = ?1 AND id = ?2",
                        )?
                        .execute(params![
                            queue,
                            id,
                            r.dead_letter_queue,
                            now
                        ])?;
                        continue;
                    }
                    let receipt = format!("{id}#{:016x}", u64::from_le_bytes(nonce()));
                    tx.prepare_cached(
                        "UPDATE queue_messages SET receive_count = receive_count + 1,
                         visible_at = ?3, receipt = ?4, parked = 0 WHERE queue = ?1 AND id = ?2",
                    )?
                    .execute(params![queue, id, hidden_until, receipt])?;
                    taken.push(QueueMessage {
                        message_id: id,
                        receipt_handle: receipt,
                        body,
                        receive_count: count + 1,
                        sent_at,
                    });
                }
                let next_visible = if taken.is_empty() {
                    tx.prepare_cached(
                        "SELECT MIN(visible_at) FROM queue_messages WHERE queue = ?1",
                    )?
                    .query_row([&queue], |r| r.get::<_, Option<i64>>(0))
                    .optional()?
                    .flatten()
                } else {
                    None
                };
                tx.commit()?;
                Ok((taken, next_visible))
            })
            .await
    }
}

fn nonce() -> [u8; 8] {
    let mut b = [0u8; 8];
    OsRandom.fill(&mut b);
    b
}

/// The message id inside a receipt handle.
fn message_id_of(receipt: &str) -> &str {
    receipt.split_once('#').map_or(receipt, |(id, _)| id)
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        check_sizes(&self.name, &messages, self.max_message_bytes)?;
        let count = messages.len();
        let queue = self.name.clone();
        let now = self.clock.now_ms();
        self.db
            .call(move |c| {
                let tx = c.savepoint()?;
                {
                    let mut stmt = tx.prepare_cached(
                        "INSERT INTO queue_messages (queue, id, body, sent_at, visible_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?;
                    for m in messages {
                        let id = ids::time_ordered("m", Timestamp::from_millis(now), &OsRandom);
                        let visible_at = now + m.delay.as_millis() as i64;
                        stmt.execute(params![queue, id, m.body, now, visible_at])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await?;
        for _ in 0..count.div_ceil(MAX_BATCH) {
            self.arrivals.notify_one();
        }
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<QueueMessage>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so a send between the look and the wait still wakes us.
            let arrival = self.arrivals.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();
            let (taken, next_visible) = self.take(max.max(1)).await?;
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
        if receipt_handles.is_empty() {
            return Ok(());
        }
        let queue = self.name.clone();
        self.db
            .call(move |c| {
                let tx = c.savepoint()?;
                {
                    let mut stmt = tx.prepare_cached(
                        "DELETE FROM queue_messages WHERE queue = ?1 AND id = ?2 AND receipt = ?3",
                    )?;
                    for r in &receipt_handles {
                        stmt.execute(params![queue, message_id_of(r), r])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn change_visibility_batch(&self, changes: Vec<(String, Duration)>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let queue = self.name.clone();
        let now = self.clock.now_ms();
        self.db
            .call(move |c| {
                let tx = c.savepoint()?;
                {
                    let mut stmt = tx.prepare_cached(
                        "UPDATE queue_messages SET visible_at = ?4, parked = 1
                         WHERE queue = ?1 AND id = ?2 AND receipt = ?3",
                    )?;
                    for (r, after) in &changes {
                        let at = now + after.as_millis() as i64;
                        stmt.execute(params![queue, message_id_of(r), r, at])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await?;
        // A change to zero makes a message visible now: wake the receivers.
        self.arrivals.notify_waiters();
        Ok(())
    }
}
