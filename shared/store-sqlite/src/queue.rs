use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use tokio::sync::Notify;

use super::Db;
use app::ports::{
    check_sizes, released_after_ms, Clock, OsRandom, OutgoingMessage, Queue, QueueMessage,
    MAX_BATCH, MAX_MESSAGE_BYTES,
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

/// The ids of the messages held for each endpoint key (`OutgoingMessage::held_for`): how
/// `release_held` finds them. Not an index on the column: the held messages of an account
/// whose forty endpoints hang are written forty keys at a time, and an index on the key
/// put each of them on a page of its own, which measurably slowed every other account's
/// deliveries (fairness scenario: B's p99 beside A 3.6–3.9 ms with the index, 2.5–3.4
/// without). Kept in memory, changed only inside the writer's calls, so in the order
/// their writes are made; shared by every handle on the queue (`Db::held_of`).
///
/// It may be wrong both ways, never for long: an id may outlive its hold (a call undone, a
/// message received), and `release_held` looks again at the row; an id may be dropped while
/// its row stays held (a release undone), and that message waits its backstop. A restart
/// forgets them all: what was held before comes back at its backstop, as for a recovery no
/// probe in this process saw. Past [`HELD_IDS_PER_ENDPOINT`] for one endpoint, or
/// [`HELD_IDS`] in all, an endpoint's holds are released by a look at every message of the
/// queue instead (slower, and said in the log): one endpoint down for a day cannot take
/// the release away from the others.
#[derive(Default)]
pub(crate) struct HeldIds {
    /// Ordered: message ids are time-ordered, so the oldest holds are released first.
    by_key: HashMap<String, BTreeSet<String>>,
    count: usize,
    /// Endpoints some of whose holds were not remembered.
    overflowed: HashSet<String>,
}

/// Held ids remembered at most, and for one endpoint (about 70 bytes each).
const HELD_IDS: usize = 100_000;
const HELD_IDS_PER_ENDPOINT: usize = 20_000;

/// Held messages released per call to the writer: each call is a few milliseconds, so a
/// recovered endpoint's backlog does not hold up everyone else's writes while it goes.
const RELEASED_PER_CALL: usize = 1_000;

impl HeldIds {
    fn remember(&mut self, key: &str, id: &str) {
        let full = self.count >= HELD_IDS
            || self
                .by_key
                .get(key)
                .is_some_and(|ids| ids.len() >= HELD_IDS_PER_ENDPOINT);
        if full {
            if self.overflowed.insert(key.to_string()) {
                tracing::warn!(
                    subscription_id = key,
                    held = self.count,
                    "too many held deliveries to remember; this endpoint's will be found by a scan when it recovers"
                );
            }
            return;
        }
        if self
            .by_key
            .entry(key.to_string())
            .or_default()
            .insert(id.to_string())
        {
            self.count += 1;
        }
    }

    fn forget(&mut self, key: &str, id: &str) {
        if let Some(ids) = self.by_key.get_mut(key) {
            if ids.remove(id) {
                self.count -= 1;
            }
            if ids.is_empty() {
                self.by_key.remove(key);
            }
        }
    }

    /// Up to `max` of the oldest ids held for `key`, forgotten.
    fn take(&mut self, key: &str, max: usize) -> Vec<String> {
        let Some(ids) = self.by_key.get_mut(key) else {
            return Vec::new();
        };
        let taken: Vec<String> = std::iter::from_fn(|| ids.pop_first()).take(max).collect();
        if ids.is_empty() {
            self.by_key.remove(key);
        }
        self.count -= taken.len();
        taken
    }

    /// Forgets everything held for `key`; says whether some of it was never remembered.
    fn take_overflowed(&mut self, key: &str) -> bool {
        if !self.overflowed.remove(key) {
            return false;
        }
        if let Some(ids) = self.by_key.remove(key) {
            self.count -= ids.len();
        }
        true
    }
}

fn lock(held: &Mutex<HeldIds>) -> std::sync::MutexGuard<'_, HeldIds> {
    held.lock().unwrap_or_else(|e| e.into_inner())
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
    /// Wakes one receiver when the next delayed message is due (see [`DueTimer`]).
    due: Arc<DueTimer>,
    held: Arc<Mutex<HeldIds>>,
    #[cfg(test)]
    takes: std::sync::atomic::AtomicUsize,
}

/// When no delayed message is known to be due.
const NOTHING_DUE: i64 = i64::MAX;

/// One task per queue sleeps until the next delayed message is due, then wakes one
/// receiver as a send does. Before, every idle receiver slept until that time and raced for
/// the same row: with a parked backlog coming due every millisecond or so, thousands of
/// empty takes a second on the one writer (measured: ~9 000/s in the fairness scenario), in
/// front of every other account's writes. A receiver that finds nothing visible tells the
/// timer when the next message is due.
struct DueTimer {
    /// Clock ms of the earliest due time a receiver reported, or `NOTHING_DUE`.
    next_due: AtomicI64,
    /// Rings when `next_due` moved earlier, or the queue is gone.
    changed: Notify,
    started: std::sync::Once,
    closed: std::sync::atomic::AtomicBool,
}

impl DueTimer {
    fn new() -> Self {
        DueTimer {
            next_due: AtomicI64::new(NOTHING_DUE),
            changed: Notify::new(),
            started: std::sync::Once::new(),
            closed: Default::default(),
        }
    }

    /// Wakes one receiver of `arrivals` at each due time, until the queue is dropped.
    async fn run(self: Arc<Self>, arrivals: Arc<Notify>, clock: Arc<dyn Clock>) {
        while !self.closed.load(Ordering::Acquire) {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let due = self.next_due.load(Ordering::Acquire);
            let now = clock.now_ms();
            if due <= now {
                // Unless a receiver reported an earlier time meanwhile (it is due too, then).
                let _ = self.next_due.compare_exchange(
                    due,
                    NOTHING_DUE,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                arrivals.notify_one();
                continue;
            }
            if due == NOTHING_DUE {
                changed.await;
            } else {
                let wait = Duration::from_millis((due - now) as u64);
                tokio::select! {
                    _ = &mut changed => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Delayed messages are taken on this grid (clock ms): those due within one tick are taken
/// together, in batches, instead of one take each. A retry or a parked delivery is late by
/// at most this much; a message sent without delay is not concerned (it wakes a receiver).
const DUE_TICK_MS: i64 = 20;

impl Drop for SqliteQueue {
    fn drop(&mut self) {
        self.due.closed.store(true, Ordering::Release);
        self.due.changed.notify_one();
    }
}

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
        let name = name.into();
        SqliteQueue {
            arrivals: db.arrivals_of(&name),
            held: db.held_of(&name),
            db,
            name,
            visibility_timeout,
            redrive,
            clock,
            max_message_bytes: MAX_MESSAGE_BYTES,
            due: Arc::new(DueTimer::new()),
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

    /// Has one receiver woken at `at` (clock ms), when the next delayed message is due.
    fn report_due(&self, at: i64) {
        let due = &self.due;
        due.started.call_once(|| {
            tokio::spawn(due.clone().run(self.arrivals.clone(), self.clock.clone()));
        });
        if at < due.next_due.fetch_min(at, Ordering::AcqRel) {
            due.changed.notify_one();
        }
    }

    /// One attempt at taking visible messages; also says when the next one becomes visible
    /// (or, if any is visible still, that one is due now).
    async fn take(&self, max: usize) -> Result<(Vec<QueueMessage>, Option<i64>)> {
        let (taken, moved, next_visible) = self.take_or_move(max).await?;
        if moved {
            if let Some(r) = &self.redrive {
                // Its receivers learn of it now, not at the end of their long poll.
                self.db.arrivals_of(&r.dead_letter_queue).notify_one();
            }
        }
        Ok((taken, next_visible))
    }

    /// Takes up to `max` visible messages, moving those received too often to the
    /// redrive queue instead; says whether it moved any.
    async fn take_or_move(&self, max: usize) -> Result<(Vec<QueueMessage>, bool, Option<i64>)> {
        #[cfg(test)]
        self.takes.fetch_add(1, Ordering::Relaxed);
        let queue = self.name.clone();
        let redrive = self.redrive.clone();
        let now = self.clock.now_ms();
        let hidden_until = now + self.visibility_timeout.as_millis() as i64;
        let held = self.held.clone();
        self.db
            .call(move |c| {
                let tx = c.savepoint()?;
                type Row = (String, String, i64, u32, Option<String>);
                let rows: Vec<Row> = {
                    let mut stmt = tx.prepare_cached(
                        "SELECT id, body, sent_at, receive_count, held_for FROM queue_messages
                         WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at LIMIT ?3",
                    )?;
                    let rows = stmt
                        .query_map(params![queue, now, max as i64], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                        })?
                        .collect::<rusqlite::Result<_>>()?;
                    rows
                };
                let mut taken = Vec::with_capacity(rows.len());
                let mut moved = false;
                for (id, body, sent_at, count, held_for) in rows {
                    // Received or moved, it is held no longer.
                    if let Some(key) = held_for {
                        lock(&held).forget(&key, &id);
                    }
                    if let Some(r) = redrive.as_ref().filter(|r| count >= r.max_receive_count) {
                        moved = true;
                        tx.prepare_cached(
                            "UPDATE queue_messages SET queue = ?3, visible_at = ?4,
                             receive_count = 0, receipt = NULL, parked = 0, held_for = NULL
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
                         visible_at = ?3, receipt = ?4, parked = 0, held_for = NULL
                         WHERE queue = ?1 AND id = ?2",
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
                // Asked after every take, not only an empty one: the receiver that takes
                // what just came due may then be busy for a while (an attempt can hang for
                // its whole timeout), and the next due time must reach the timer anyway.
                let next_visible = tx
                    .prepare_cached("SELECT MIN(visible_at) FROM queue_messages WHERE queue = ?1")?
                    .query_row([&queue], |r| r.get::<_, Option<i64>>(0))
                    .optional()?
                    .flatten();
                tx.commit()?;
                Ok((taken, moved, next_visible))
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
        let held = self.held.clone();
        self.db
            .call(move |c| {
                let tx = c.savepoint()?;
                {
                    let mut stmt = tx.prepare_cached(
                        "INSERT INTO queue_messages (queue, id, body, sent_at, visible_at, held_for)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?;
                    for m in messages {
                        let id = ids::time_ordered("m", Timestamp::from_millis(now), &OsRandom);
                        let visible_at = now + m.delay.as_millis() as i64;
                        stmt.execute(params![queue, id, m.body, now, visible_at, m.held_for])?;
                        if let Some(key) = &m.held_for {
                            lock(&held).remember(key, &id);
                        }
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
            if taken.len() >= max.max(1) {
                // There may be more: pass the wake-up on to another receiver (whose take
                // tells the timer what is due next).
                self.arrivals.notify_one();
                return Ok(taken);
            }
            if let Some(at) = next_visible {
                self.report_due(on_tick(at));
            }
            if !taken.is_empty() {
                return Ok(taken);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            tokio::select! {
                _ = &mut arrival => {}
                _ = tokio::time::sleep_until(deadline) => {}
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
        // A change may make a message visible now, or due before the timer rings: one
        // receiver looks again (and tells the timer).
        self.arrivals.notify_one();
        Ok(())
    }

    /// One write per message instead of an insert and a delete: the received row takes the
    /// new body and due time and becomes a message no one holds, its receive count started
    /// over. A stale receipt replaces nothing (the message came back to another receiver,
    /// or was deleted): nothing is lost, and no copy is made to be attempted twice.
    async fn requeue_batch(&self, messages: Vec<(String, OutgoingMessage)>) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let (receipts, copies): (Vec<String>, Vec<OutgoingMessage>) = messages.into_iter().unzip();
        check_sizes(&self.name, &copies, self.max_message_bytes)?;
        let queue = self.name.clone();
        let now = self.clock.now_ms();
        let first_due = copies
            .iter()
            .map(|m| now + m.delay.as_millis() as i64)
            .min();
        let held = self.held.clone();
        self.db
            .call(move |c| {
                let tx = c.savepoint()?;
                {
                    let mut stmt = tx.prepare_cached(
                        "UPDATE queue_messages SET body = ?4, sent_at = ?5, visible_at = ?6,
                         receive_count = 0, receipt = NULL, parked = 0, held_for = ?7
                         WHERE queue = ?1 AND id = ?2 AND receipt = ?3",
                    )?;
                    for (r, m) in receipts.iter().zip(&copies) {
                        let at = now + m.delay.as_millis() as i64;
                        let id = message_id_of(r);
                        let replaced =
                            stmt.execute(params![queue, id, r, m.body, now, at, m.held_for])?;
                        if let Some(key) = m.held_for.as_deref().filter(|_| replaced == 1) {
                            lock(&held).remember(key, id);
                        }
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await?;
        // The timer learns the first due time here, without a receiver's take.
        match first_due {
            Some(at) if at <= now => self.arrivals.notify_one(),
            Some(at) => self.report_due(on_tick(at)),
            None => {}
        }
        Ok(())
    }

    fn releases_held(&self) -> bool {
        true
    }

    /// The ids remembered for `key` (see [`HeldIds`]), oldest first, [`RELEASED_PER_CALL`]
    /// to a call: each looked up by its key; those still held ranked by due time and given
    /// the earlier of their due time and their place in the paced release (as
    /// `released_after_ms` counts it). No scan, and no SQL for an endpoint with none held
    /// (every first success after a start). Asked on the writer even then, not of the map
    /// beforehand: a hold whose write was made before this call is in the map by the time
    /// the call runs. An endpoint some of whose holds were not remembered is released by
    /// one look at every message of the queue.
    async fn release_held(&self, key: &str, per_second: u32) -> Result<usize> {
        let now = self.clock.now_ms();
        let mut released = 0;
        loop {
            let (queue, key, held) = (self.name.clone(), key.to_string(), self.held.clone());
            let (looked, changed) = self
                .db
                .call(move |c| {
                    if lock(&held).take_overflowed(&key) {
                        return Ok((
                            0,
                            release_by_scan(c, &queue, &key, now, per_second, released)?,
                        ));
                    }
                    let ids = lock(&held).take(&key, RELEASED_PER_CALL);
                    if ids.is_empty() {
                        return Ok((0, 0));
                    }
                    let looked = ids.len();
                    let tx = c.savepoint()?;
                    let mut due: Vec<(i64, String)> = Vec::with_capacity(ids.len());
                    {
                        let mut look = tx.prepare_cached(
                            "SELECT visible_at FROM queue_messages
                             WHERE queue = ?1 AND id = ?2 AND held_for = ?3",
                        )?;
                        for id in ids {
                            if let Some(at) = look
                                .query_row(params![queue, id, key], |r| r.get::<_, i64>(0))
                                .optional()?
                            {
                                due.push((at, id));
                            }
                        }
                    }
                    due.sort_unstable();
                    {
                        let mut release = tx.prepare_cached(
                            "UPDATE queue_messages SET visible_at = ?3, held_for = NULL
                             WHERE queue = ?1 AND id = ?2",
                        )?;
                        for (n, (at, id)) in due.iter().enumerate() {
                            let slot = now + released_after_ms(released + n, per_second);
                            release.execute(params![queue, id, (*at).min(slot)])?;
                        }
                    }
                    tx.commit()?;
                    Ok((looked, due.len()))
                })
                .await?;
            if changed > 0 && released == 0 {
                // The first is due now: one receiver looks (and tells the timer of the rest).
                self.arrivals.notify_one();
            }
            released += changed;
            if looked < RELEASED_PER_CALL {
                return Ok(released);
            }
        }
    }
}

/// Releases every message of `queue` held for `key`, paced after the `before` already
/// released: a scan of the queue, for an endpoint with more holds than [`HeldIds`] keeps.
fn release_by_scan(
    c: &mut rusqlite::Connection,
    queue: &str,
    key: &str,
    now: i64,
    per_second: u32,
    before: usize,
) -> crate::DbResult<usize> {
    let released = c
        .prepare_cached(
            "WITH held AS (
                 SELECT id, row_number() OVER (ORDER BY visible_at, id) - 1 AS n
                 FROM queue_messages WHERE queue = ?1 AND held_for = ?2
             )
             UPDATE queue_messages
             SET visible_at = min(visible_at, ?3 + (held.n + ?5) * 1000 / ?4), held_for = NULL
             FROM held WHERE queue_messages.queue = ?1 AND queue_messages.id = held.id",
        )?
        .execute(params![queue, key, now, per_second.max(1), before as i64])?;
    tracing::info!(
        subscription_id = key,
        released,
        "held deliveries released by a scan"
    );
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::ports::SystemClock;

    /// A queue on `db` with the system clock and a visibility of `visibility_ms`.
    fn queue(db: &Db, name: &str, visibility_ms: u64, redrive: Option<Redrive>) -> SqliteQueue {
        SqliteQueue::new(
            db.clone(),
            name,
            Duration::from_millis(visibility_ms),
            redrive,
            Arc::new(SystemClock),
        )
    }

    fn held(body: &str, key: &str) -> OutgoingMessage {
        OutgoingMessage {
            id: body.into(),
            body: body.into(),
            delay: Duration::from_secs(600),
            held_for: Some(key.into()),
        }
    }

    /// Held messages requeued in place are remembered like sent ones; a release takes them
    /// oldest first, a call's worth at a time, and leaves another endpoint's alone.
    #[tokio::test]
    async fn a_release_finds_requeued_holds_and_goes_a_call_at_a_time() {
        let db = Db::in_memory().unwrap();
        let q = queue(&db, "deliveries", 30_000, None);
        let plain = |body: &str| OutgoingMessage {
            id: body.into(),
            body: body.into(),
            delay: Duration::ZERO,
            held_for: None,
        };
        q.send_batch(vec![plain("r1"), plain("r2")]).await.unwrap();
        let got = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 2);
        let requeued: Vec<_> = got
            .iter()
            .map(|m| (m.receipt_handle.clone(), held(&m.body, "wh_a")))
            .collect();
        q.requeue_batch(requeued).await.unwrap();
        let more: Vec<_> = (0..RELEASED_PER_CALL + 3)
            .map(|i| held(&format!("s{i}"), "wh_a"))
            .collect();
        for chunk in more.chunks(MAX_BATCH) {
            q.send_batch(chunk.to_vec()).await.unwrap();
        }
        q.send_batch(vec![held("b", "wh_b")]).await.unwrap();
        assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());

        // Fast enough that every one is due within the test.
        let released = q.release_held("wh_a", 1_000_000).await.unwrap();
        assert_eq!(released, RELEASED_PER_CALL + 5);
        let mut back = Vec::new();
        loop {
            let got = q.receive(10, Duration::from_millis(200)).await.unwrap();
            if got.is_empty() {
                break;
            }
            back.extend(got.into_iter().map(|m| m.body));
        }
        assert_eq!(back.len(), RELEASED_PER_CALL + 5);
        assert!(!back.contains(&"b".to_string()));
        // The requeued two were remembered too.
        assert!(back.contains(&"r1".to_string()) && back.contains(&"r2".to_string()));
        assert_eq!(q.release_held("wh_a", 100).await.unwrap(), 0);
        assert_eq!(q.release_held("wh_b", 100).await.unwrap(), 1);
    }

    /// Past what `HeldIds` remembers for an endpoint, its holds are still released, all of
    /// them, by a scan, and paced.
    #[tokio::test]
    async fn an_endpoint_with_more_holds_than_remembered_is_released_by_a_scan() {
        let db = Db::in_memory().unwrap();
        let q = queue(&db, "deliveries", 30_000, None);
        q.send_batch(vec![
            held("h1", "wh_a"),
            held("h2", "wh_a"),
            held("b", "wh_b"),
        ])
        .await
        .unwrap();
        {
            // As if the cap had been reached before one of them.
            let mut ids = lock(&q.held);
            let last = ids.by_key["wh_a"].last().cloned().unwrap();
            ids.forget("wh_a", &last);
            ids.overflowed.insert("wh_a".into());
        }
        let started = std::time::Instant::now();
        assert_eq!(q.release_held("wh_a", 2).await.unwrap(), 2);
        let mut back = Vec::new();
        while back.len() < 2 {
            let got = q.receive(10, Duration::from_secs(2)).await.unwrap();
            assert!(!got.is_empty(), "not released");
            back.extend(got.into_iter().map(|m| (m.body, started.elapsed())));
        }
        // Due at the same moment, either may go first; the second waits its slot.
        let mut bodies = [back[0].0.as_str(), back[1].0.as_str()];
        bodies.sort_unstable();
        assert_eq!(bodies, ["h1", "h2"]);
        assert!(
            back[1].1 >= Duration::from_millis(450),
            "not paced: {back:?}"
        );
        assert!(lock(&q.held).overflowed.is_empty());
        assert_eq!(q.release_held("wh_b", 100).await.unwrap(), 1);
    }

    #[test]
    fn due_times_are_rounded_up_to_the_tick() {
        assert_eq!(on_tick(0), 0);
        assert_eq!(on_tick(1), DUE_TICK_MS);
        assert_eq!(on_tick(DUE_TICK_MS), DUE_TICK_MS);
        assert_eq!(on_tick(DUE_TICK_MS + 1), 2 * DUE_TICK_MS);
        // Saturates rather than overflows.
        assert_eq!(on_tick(i64::MAX), i64::MAX);
    }

    #[tokio::test]
    async fn a_requeue_with_a_stale_receipt_replaces_nothing_and_copies_nothing() {
        let queue = queue(&Db::in_memory().unwrap(), "q", 200, None);
        queue
            .send_batch(vec![OutgoingMessage {
                id: "0".into(),
                body: "task".into(),
                delay: Duration::ZERO,
                held_for: None,
            }])
            .await
            .unwrap();
        let first = queue.receive(1, Duration::from_secs(1)).await.unwrap();
        // Back after its visibility timeout, to another receiver.
        let second = queue.receive(1, Duration::from_secs(2)).await.unwrap();
        assert_eq!(second[0].receive_count, 2);
        queue
            .requeue_batch(vec![(
                first[0].receipt_handle.clone(),
                OutgoingMessage {
                    id: "0".into(),
                    body: "stale copy".into(),
                    delay: Duration::ZERO,
                    held_for: None,
                },
            )])
            .await
            .unwrap();
        assert_eq!(queue.len().await.unwrap(), 1);
        queue
            .delete_batch(vec![second[0].receipt_handle.clone()])
            .await
            .unwrap();
        assert_eq!(queue.len().await.unwrap(), 0, "no copy was made");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_receivers_do_not_all_wake_for_each_delayed_message() {
        let queue = Arc::new(queue(&Db::in_memory().unwrap(), "q", 30_000, None));
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
                held_for: None,
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
        // Each receiver woke for each due message before (650 takes for the 40 messages,
        // measured): now the timer wakes one receiver, about 2 takes a message. The bound
        // leaves room for a slow machine's extra long-poll expiries.
        let takes = queue.takes.load(Ordering::SeqCst) - taken_before;
        assert!(
            takes <= 5 * MESSAGES,
            "{takes} takes for {MESSAGES} messages"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_due_while_the_previous_ones_taker_is_busy_is_taken_on_time() {
        let queue = Arc::new(queue(&Db::in_memory().unwrap(), "q", 30_000, None));
        let message = |id: &str, delay_ms: u64| OutgoingMessage {
            id: id.into(),
            body: id.into(),
            delay: Duration::from_millis(delay_ms),
            held_for: None,
        };
        queue
            .send_batch(vec![message("first", 100), message("second", 300)])
            .await
            .unwrap();
        // Two receivers wait from the start; each receives once. Whichever takes the first
        // message then hangs on to it (an attempt that hangs for its timeout) and does not
        // look again, so only its take can tell the timer when the second is due.
        let started = std::time::Instant::now();
        let receivers: Vec<_> = (0..2)
            .map(|_| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    let got = queue.receive(10, Duration::from_secs(5)).await.unwrap();
                    (got[0].body.clone(), started.elapsed())
                })
            })
            .collect();
        let mut got = Vec::new();
        for r in receivers {
            got.push(r.await.unwrap());
        }
        got.sort();
        assert_eq!(got[0].0, "first");
        assert_eq!(got[1].0, "second");
        assert!(
            got[1].1 < Duration::from_secs(2),
            "taken after {:?}, at the end of the long poll",
            got[1].1
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_moved_by_the_redrive_policy_wakes_the_other_queues_receivers() {
        let db = Db::in_memory().unwrap();
        let redrive = Redrive {
            dead_letter_queue: "given-up".into(),
            max_receive_count: 1,
        };
        let queue = queue(&db, "work", 50, Some(redrive));
        let given_up = Arc::new(super::tests::queue(&db, "given-up", 30_000, None));
        let waiting = {
            let given_up = given_up.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let got = given_up.receive(10, Duration::from_secs(5)).await.unwrap();
                (got.len(), started.elapsed())
            })
        };
        queue
            .send_batch(vec![OutgoingMessage {
                id: "1".into(),
                body: "m".into(),
                delay: Duration::ZERO,
                held_for: None,
            }])
            .await
            .unwrap();
        // Received once and never deleted: at its next receive it is moved.
        assert_eq!(
            queue
                .receive(10, Duration::from_secs(1))
                .await
                .unwrap()
                .len(),
            1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(queue
            .receive(10, Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty());
        let (count, after) = waiting.await.unwrap();
        assert_eq!(count, 1);
        assert!(after < Duration::from_secs(2), "woken after {after:?}");
    }
}
