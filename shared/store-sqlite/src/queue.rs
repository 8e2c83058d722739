use std::sync::atomic::{AtomicI64, Ordering};
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
    /// When the one receiver waiting for the next delayed message wakes (clock ms), or
    /// `NO_TIMEKEEPER`. Only one receiver sleeps until a delayed message is due; the others
    /// wait for arrivals. Without it every idle receiver woke at each due time and raced for
    /// the same row: with a parked backlog due every millisecond or so, thousands of empty
    /// takes a second on the one writer, in front of every other account's writes.
    timekeeper_wakes_at: Arc<AtomicI64>,
    #[cfg(test)]
    takes: std::sync::atomic::AtomicUsize,
}

const NO_TIMEKEEPER: i64 = i64::MAX;

/// A receiver's claim to wake at `at` for the next delayed message.
struct Timekeeping<'a> {
    cell: &'a AtomicI64,
    at: i64,
}

impl Drop for Timekeeping<'_> {
    fn drop(&mut self) {
        // Unless another receiver has claimed an earlier time since.
        let _ =
            self.cell
                .compare_exchange(self.at, NO_TIMEKEEPER, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// Delayed messages are taken on this grid (clock ms): those due within one tick are taken
/// together, in batches, instead of one take each. A retry or a parked delivery is late by
/// at most this much; a message sent without delay is not concerned (it wakes a receiver).
const DUE_TICK_MS: i64 = 20;

/// `at` rounded up to the next tick.
fn on_tick(at: i64) -> i64 {
    at.div_euclid(DUE_TICK_MS)
        .saturating_add(i64::from(at.rem_euclid(DUE_TICK_MS) != 0))
        .saturating_mul(DUE_TICK_MS)
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
            timekeeper_wakes_at: Arc::new(AtomicI64::new(NO_TIMEKEEPER)),
            #[cfg(test)]
            takes: Default::default(),
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

    /// Makes this receiver the one that wakes at `at` for a delayed message, unless another
    /// already wakes by then. The claim ends when dropped, so a receiver cancelled while
    /// waiting does not leave the delayed messages without a timekeeper.
    fn claim_timekeeping(&self, at: i64) -> Option<Timekeeping<'_>> {
        let cell = &self.timekeeper_wakes_at;
        // A claim this far past its time is a keeper that cannot run (it will find the
        // messages taken): not one to rely on.
        let stale_before = self.clock.now_ms() - 1_000;
        let mut current = cell.load(Ordering::Acquire);
        loop {
            if current <= at && current >= stale_before {
                return None;
            }
            match cell.compare_exchange(current, at, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(Timekeeping { cell, at }),
                Err(seen) => current = seen,
            }
        }
    }

    /// One attempt at taking visible messages; also says when the next one becomes visible.
    async fn take(&self, max: usize) -> Result<(Vec<QueueMessage>, Option<i64>)> {
        #[cfg(test)]
        self.takes.fetch_add(1, Ordering::Relaxed);
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
        let mut kept_time = false;
        loop {
            // Registered before looking, so a send between the look and the wait still wakes us.
            let arrival = self.arrivals.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();
            let (taken, next_visible) = self.take(max.max(1)).await?;
            if !taken.is_empty() {
                if taken.len() >= max || kept_time {
                    // There may be more, or the next delayed message now has no timekeeper:
                    // pass the wake-up on to another receiver.
                    self.arrivals.notify_one();
                }
                return Ok(taken);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let mut wake = deadline;
            let mut keeping = None;
            if let Some(at) = next_visible.map(on_tick) {
                if let Some(claim) = self.claim_timekeeping(at) {
                    let in_ms = (at - self.clock.now_ms()).max(0) as u64;
                    wake = wake.min(now + Duration::from_millis(in_ms));
                    keeping = Some(claim);
                }
            }
            tokio::select! {
                _ = &mut arrival => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
            // Given up whatever woke us (dropping the claim): whoever looks next claims the
            // next due time.
            kept_time |= keeping.take().is_some();
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
        // A change may make a message visible now, or due before the timekeeper wakes: one
        // receiver looks again (and takes over the timekeeping if so).
        self.arrivals.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::ports::SystemClock;

    #[test]
    fn due_times_are_rounded_up_to_the_tick() {
        assert_eq!(on_tick(0), 0);
        assert_eq!(on_tick(1), DUE_TICK_MS);
        assert_eq!(on_tick(DUE_TICK_MS), DUE_TICK_MS);
        assert_eq!(on_tick(DUE_TICK_MS + 1), 2 * DUE_TICK_MS);
        // Saturates rather than overflows.
        assert_eq!(on_tick(i64::MAX), i64::MAX);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_receivers_do_not_all_wake_for_each_delayed_message() {
        let queue = Arc::new(SqliteQueue::new(
            Db::in_memory().unwrap(),
            "q",
            Duration::from_secs(30),
            None,
            Arc::new(SystemClock),
        ));
        const RECEIVERS: usize = 16;
        const MESSAGES: usize = 40;
        let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let receivers: Vec<_> = (0..RECEIVERS)
            .map(|_| {
                let (queue, received) = (queue.clone(), received.clone());
                tokio::spawn(async move {
                    while received.load(Ordering::SeqCst) < MESSAGES {
                        let got = queue.receive(10, Duration::from_secs(2)).await.unwrap();
                        received.fetch_add(got.len(), Ordering::SeqCst);
                    }
                })
            })
            .collect();
        // Every receiver is idle before the messages are sent.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let taken_before = queue.takes.load(Ordering::SeqCst);
        // Due one after another, 25 ms apart, as a parked backlog comes due.
        let messages = (0..MESSAGES)
            .map(|i| OutgoingMessage {
                id: format!("{i}"),
                body: format!("m{i}"),
                delay: Duration::from_millis(50 + 25 * i as u64),
            })
            .collect();
        queue.send_batch(messages).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            for r in receivers {
                r.await.unwrap();
            }
        })
        .await
        .expect("every message is received in time");
        assert_eq!(received.load(Ordering::SeqCst), MESSAGES);
        // Each receiver woke for each due message before (some 16 takes a message, most
        // of them empty): now the one timekeeper takes it and hands the timer on.
        let takes = queue.takes.load(Ordering::SeqCst) - taken_before;
        assert!(
            takes <= 4 * MESSAGES,
            "{takes} takes for {MESSAGES} messages"
        );
    }
}
