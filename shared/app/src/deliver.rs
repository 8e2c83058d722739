//! Delivery: sign, send, log, then acknowledge, retry later, or dead-letter.

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use super::health;
use super::sqs::{set_aside, Record};
use crate::limiter::{Refusal, IN_FLIGHT_DEFERRAL, RELEASE_PER_SECOND};
use crate::metrics::DeliveryMetrics;
use crate::ports::{OutboundRequest, OutgoingMessage, SendError, SendResult, MAX_MESSAGE_BYTES};
use crate::task_message;
use crate::Services;
use domain::catalog::is_operational;
use domain::catalog::EventType;
use domain::delivery::{
    Attempt, Delivery, DeliveryStatus, DeliveryTask, DeliveryUpdate, FailureCause, Payload,
};
use domain::diagnosis::Diagnosis;
use domain::event::Event;
use domain::health::Observed;
use domain::ids::{AccountId, DeliveryId, EventId, SubscriptionId};
use domain::retry::{
    classify_status, holding_delay, parking_delay, unproven_wait, visibility_left, Failure,
    RetryPolicy, Verdict, MAX_RETRY_HORIZON,
};
use domain::signing;
use domain::subscription::{EndpointAuth, Subscription};
use domain::time::Timestamp;

use domain::subscription::MASKED as MASK;

type Headers = Vec<(String, String)>;

/// What becomes of a message once its outcome is logged.
enum Next {
    Acknowledge,
    /// Over the subscription's in-flight cap or rate limit: not attempted, sent back as a
    /// new message after this long, without spending an attempt.
    /// Not attempted: over a limit (see `limiter`); sent back after a wait.
    Defer(Refusal),
    RetryAfter(Duration),
    DeadLetter,
    /// Received before its `not_before` (a queue capped its delay): sent back for the rest
    /// of its wait, without spending an attempt.
    Wait(Duration),
}

struct Handled {
    message_id: String,
    attempt_number: u32,
    receive_count: u32,
    receipt_handle: String,
    task: DeliveryTask,
    /// `None` when nothing happened that the log must know (a deferral).
    update: Option<DeliveryUpdate>,
    next: Next,
    /// The endpoint answered 410 Gone.
    gone: bool,
    /// What became of this attempt if it was a probe, for what is held behind it.
    probe: ProbeEnd,
    /// For a first try: how long after its message was sent the attempt was made.
    first_try_lag_ms: Option<u64>,
    /// One of the tasks of a pack (`task_message`): whatever is left to do of it is split
    /// off into a message of its own, and its message is acknowledged once all are.
    packed: bool,
}

/// How long after a batch arrives the deliveries of a pack may still start; those that
/// have not are split off to come back in a second (as over an in-flight cap). A batch of
/// ten packs of forty to slow endpoints must not run into the function's timeout, which
/// would bring back every one of its messages, delivered or not.
const PACK_SEND_BUDGET: Duration = Duration::from_secs(20);

/// How often a pack's delivery refused as busy looks again for its endpoint's turn.
const PACKED_TURN_POLL: Duration = Duration::from_millis(5);

/// The longest a pack's delivery waits in place for its endpoint's rate limit; longer, it
/// is split off to come back when due.
const PACKED_RATE_WAIT: Duration = Duration::from_secs(1);

/// One task of a received message, ready to be attempted.
struct Unit<'a> {
    message_id: String,
    receipt_handle: String,
    receive_count: u32,
    task: DeliveryTask,
    sub: Option<&'a Subscription>,
    /// Retries must end before the message expires from the queue.
    retry_until: Option<Timestamp>,
    /// For a first try, when its message was sent (see `Handled::first_try_lag_ms`).
    first_try_sent_at: Option<Timestamp>,
    packed: bool,
}

impl<'a> Unit<'a> {
    fn of(
        record: &Record<'_>,
        task: DeliveryTask,
        sub: Option<&'a Subscription>,
        packed: bool,
    ) -> Unit<'a> {
        let receive_count = record.receive_count;
        // A first try is due when fan-out sends it: the time since is the pipeline's lag,
        // which SQS's own age metrics do not show (they ignore messages received more than
        // twice, and a waiting retry is as old as its delivery). A delivery sent parked
        // (its endpoint failing) was meant to wait: it is not counted.
        let first_try_sent_at =
            (task.prior_receives == 0 && task.parkings == 0 && receive_count == 1)
                .then_some(record.sent_at)
                .flatten();
        Unit {
            message_id: record.message_id.to_string(),
            receipt_handle: record.receipt_handle.to_string(),
            receive_count,
            retry_until: record.sent_at.map(|sent| sent + MAX_RETRY_HORIZON),
            first_try_sent_at,
            task,
            sub,
            packed,
        }
    }

    /// Attempts the delivery when one of `slots` is free.
    async fn run(
        self,
        services: &Services,
        slots: &tokio::sync::Semaphore,
        start_packed_by: std::time::Instant,
    ) -> Handled {
        // Measured when its turn comes: a pack's last delivery starts after the others.
        let first_try_lag_ms = self
            .first_try_sent_at
            .map(|sent| (services.clock.now_ms() - sent.as_millis()).max(0) as u64);
        let attempt_number = self.task.prior_receives + self.receive_count;
        let returned_pack = self.packed && self.receive_count > 1;
        // The reads a recheck makes (see `attempt`) are made on the first try only: later
        // tries go with a copy that asks for none (made only for a task that asks).
        let mut task = std::borrow::Cow::Borrowed(&self.task);
        let mut first_try = true;
        let (update, next, gone, probe) = loop {
            let slot = slots
                .acquire()
                .await
                .expect("the batch's slots are never closed");
            if self.packed && std::time::Instant::now() > start_packed_by {
                break (None, Next::Defer(Refusal::Busy), false, ProbeEnd::Nothing);
            }
            let (mut update, next, gone, probe) = attempt(
                services,
                self.sub,
                &task,
                attempt_number,
                self.retry_until,
                returned_pack && first_try,
            )
            .await;
            first_try = false;
            if task.recheck {
                task.to_mut().recheck = false;
            }
            // A pack's delivery over its endpoint's in-flight cap (other messages to it are
            // in flight) or just short of its rate waits here for its turn, its slot given
            // up meanwhile: split off, each would cost the queue a message of its own.
            let wait = match next {
                Next::Defer(Refusal::Busy) => PACKED_TURN_POLL,
                Next::Defer(Refusal::RateLimited(wait)) if wait <= PACKED_RATE_WAIT => wait,
                _ => Duration::ZERO,
            };
            if self.packed && !wait.is_zero() {
                drop(slot);
                tokio::time::sleep(wait).await;
                continue;
            }
            if let Some(u) = &mut update {
                // A delivery logged before its task was sent (a redrive, the sweep's) is
                // not created by its first try: its row is updated.
                u.first_try = attempt_number == 1 && !self.task.logged;
            }
            break (update, next, gone, probe);
        };
        Handled {
            message_id: self.message_id,
            attempt_number,
            receive_count: self.receive_count,
            receipt_handle: self.receipt_handle,
            task: self.task,
            update,
            next,
            gone,
            probe,
            first_try_lag_ms,
            packed: self.packed,
        }
    }
}

/// What became of a probe (an attempt at an endpoint that was failing, or not yet heard
/// from in this process), for the deliveries held behind it (`Queue::release_held`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum ProbeEnd {
    /// Not a probe, or one whose delivery is retried later: that retry is the next probe.
    Nothing,
    /// It succeeded: what was held for the endpoint's recovery comes back now, at the
    /// endpoint's pace.
    Proven,
    /// It failed, and its delivery is not tried again (dead, or refused for good): the
    /// endpoint has no probe left, so what was held comes back one a second, the first at
    /// once, to be the next probe. A subscription allowing one attempt would otherwise
    /// have each of its deliveries wait its whole backstop.
    GaveUp,
}

/// How fast the deliveries held for an endpoint come back after its last probe gave up:
/// the first becomes the next probe, and the rest, while it is in flight, are held again.
const RELEASE_AFTER_GIVING_UP_PER_SECOND: u32 = 1;

/// The dead-letter message: the delivery and everything tried, for a human to review.
#[derive(Serialize)]
struct DeadLetter<'a> {
    delivery: &'a DeliveryTask,
    /// The oldest attempts left out so that the message fits in the queue; the log has them.
    #[serde(skip_serializing_if = "is_zero")]
    attempts_omitted: usize,
    attempts: &'a [Attempt],
    dead_at: Timestamp,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The dead letter of `task`, within what a queue message may be: a large payload with a
/// long history of attempts (each with its headers and response) could be over it, and the
/// move would then fail on every try. The newest attempts are kept.
pub(crate) fn dead_letter_body(
    task: &DeliveryTask,
    attempts: &[Attempt],
    dead_at: Timestamp,
) -> String {
    let body = |omitted: usize| {
        serde_json::to_string(&DeadLetter {
            delivery: task,
            attempts_omitted: omitted,
            attempts: &attempts[omitted..],
            dead_at,
        })
        .expect("a dead letter serialises")
    };
    let whole = body(0);
    if whole.len() <= MAX_MESSAGE_BYTES {
        return whole;
    }
    // Each attempt's share of the body, with its separating comma.
    let sizes: Vec<usize> = attempts
        .iter()
        .map(|a| {
            serde_json::to_string(a)
                .expect("an attempt serialises")
                .len()
                + 1
        })
        .collect();
    // Room for the `attempts_omitted` field, at its longest.
    let mut total = whole.len() + format!(r#""attempts_omitted":{},"#, attempts.len()).len();
    let mut omitted = 0;
    while total > MAX_MESSAGE_BYTES && omitted < attempts.len() {
        total -= sizes[omitted];
        omitted += 1;
    }
    body(omitted)
}

/// Handles one batch from the deliveries queue. The deliveries are sent concurrently (up to
/// `send_concurrency`), so a slow endpoint holds up only its own. Every outcome is
/// written to the log in one call before any message is acknowledged; a message whose
/// outcome could not be logged is reported as failed and comes back.
#[tracing::instrument(name = "deliver", skip_all, fields(messages = batch.records.len()))]
pub async fn handle_deliveries(services: &Services, batch: SqsEvent) -> SqsBatchResponse {
    let received_at = services.clock.now_ms();
    let mut response = SqsBatchResponse::default();
    let mut messages = Vec::new();
    for message in &batch.records {
        let Some(record) = Record::from_message(message) else {
            tracing::error!("deliveries queue record without id or body");
            continue;
        };
        match task_message::parse(record.body) {
            Ok((tasks, packed)) => messages.push((record, tasks, packed)),
            Err(e) => set_aside(services, "deliveries", &record, &e, &mut response).await,
        }
    }
    if messages.is_empty() {
        return response;
    }

    let keys: Vec<(AccountId, SubscriptionId)> = messages
        .iter()
        .flat_map(|(_, tasks, _)| tasks)
        .map(|t| (t.account_id.clone(), t.subscription_id.clone()))
        .collect();
    let subscriptions: HashMap<(AccountId, SubscriptionId), Subscription> = match services
        .subscriptions
        .get_many(&keys)
        .await
    {
        Ok(subs) => subs
            .into_iter()
            .map(|s| ((s.account_id.clone(), s.id.clone()), s))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "could not load subscriptions; the batch will be retried");
            for (record, _, _) in &messages {
                response.add_failure(record.message_id);
            }
            return response;
        }
    };

    // At most `send_concurrency` attempts at once, whatever the messages carry.
    let slots = tokio::sync::Semaphore::new(services.settings.send_concurrency.max(1));
    let start_packed_by = std::time::Instant::now() + PACK_SEND_BUDGET;
    let per_message: Vec<_> = messages
        .into_iter()
        .map(|(record, tasks, packed)| {
            let units: Vec<Unit> = tasks
                .into_iter()
                .map(|task| {
                    let sub =
                        subscriptions.get(&(task.account_id.clone(), task.subscription_id.clone()));
                    Unit::of(&record, task, sub, packed)
                })
                .collect();
            let (slots, max_in_flight) = (&slots, services.settings.max_in_flight_per_subscription);
            async move {
                let mut units = units.into_iter();
                let Some(first) = units.next() else {
                    return Vec::new();
                };
                // A pack's first delivery goes first: on an endpoint not yet heard from it
                // is the probe, and once it answers the rest are not probes. The rest then
                // go together, at most the endpoint's in-flight cap of them, so that a
                // pack does not refuse its own deliveries as busy.
                // An attempt's future is large: each is made only when the pack's turn
                // comes for it, never a pack's worth at once.
                // (A loop, not a mapped stream: a closure over `Unit<'_>` trips the
                // compiler's `Send` inference in the pollers.)
                let mut done = vec![first.run(services, slots, start_packed_by).await];
                let mut running = futures::stream::FuturesUnordered::new();
                loop {
                    while running.len() < max_in_flight.max(1) {
                        let Some(unit) = units.next() else { break };
                        running.push(unit.run(services, slots, start_packed_by));
                    }
                    match running.next().await {
                        Some(handled) => done.push(handled),
                        None => break,
                    }
                }
                done
            }
        })
        .collect();
    let handled: Vec<Handled> = futures::future::join_all(per_message)
        .await
        .into_iter()
        .flatten()
        .collect();

    // The endpoints a probe of this batch found answering (proven in the limiter already)
    // or left without a probe: what was held for them comes back whatever becomes of this
    // batch.
    let probes_ended: Vec<(&Subscription, ProbeEnd)> = handled
        .iter()
        .filter(|h| h.probe != ProbeEnd::Nothing)
        .filter_map(|h| {
            subscriptions
                .get(&(h.task.account_id.clone(), h.task.subscription_id.clone()))
                .map(|sub| (sub, h.probe))
        })
        .collect();
    let updates: Vec<DeliveryUpdate> = handled.iter().filter_map(|h| h.update.clone()).collect();
    let found = match services.deliveries.record(&updates).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "could not log the attempts; the batch will be retried");
            for h in &handled {
                response.add_failure(h.message_id.clone());
            }
            release_held(services, probes_ended).await;
            return once_each(response);
        }
    };
    // An outcome the log refused (its delivery id is logged under another account: a forged
    // or corrupt task) has nowhere to go: its message alone is dropped, and said so.
    let mut found = found.into_iter();
    let mut handled = handled;
    for h in handled.iter_mut().filter(|h| h.update.is_some()) {
        if found.next() == Some(false) {
            tracing::error!(
                delivery_id = %h.task.delivery_id,
                account_id = %h.task.account_id,
                "the delivery is logged under another account; its message is dropped"
            );
            h.next = Next::Acknowledge;
            h.update = None;
        }
    }
    if let Some(stage) = &services.settings.metrics_stage {
        metrics_of(&handled).publish(stage, services.clock.now_ms());
    }
    health::track(services, &subscriptions, &observed(&handled)).await;
    settle(
        services,
        &subscriptions,
        handled,
        received_at,
        &mut response,
    )
    .await;
    // After this batch's own deferrals are held, so that those are released too.
    release_held(services, probes_ended).await;
    once_each(response)
}

/// `response` with each failed message named once: a pack's tasks may each report it.
fn once_each(mut response: SqsBatchResponse) -> SqsBatchResponse {
    let mut seen = std::collections::HashSet::new();
    response
        .batch_item_failures
        .retain(|f| seen.insert(f.item_identifier.clone()));
    response
}

/// Brings back what was held for each endpoint whose probe ended in this batch (see
/// [`ProbeEnd`]): proven, at the endpoint's pace ([`RELEASE_PER_SECOND`], or its own rate
/// limit if lower); given up, one a second. An endpoint both proven and given up in one
/// batch is proven. Where the queue cannot release, nothing was held.
async fn release_held(services: &Services, mut probes_ended: Vec<(&Subscription, ProbeEnd)>) {
    if !services.deliveries_queue.releases_held() {
        return;
    }
    // Proven first, so that an endpoint's proof is the release it gets.
    probes_ended.sort_by_key(|(_, end)| *end != ProbeEnd::Proven);
    let mut done: Vec<&SubscriptionId> = Vec::new();
    for (sub, end) in probes_ended {
        if done.contains(&&sub.id) {
            continue;
        }
        done.push(&sub.id);
        let per_second = match end {
            ProbeEnd::Proven => sub
                .rate_limit_per_second
                .filter(|r| *r > 0)
                .map_or(RELEASE_PER_SECOND, |r| r.min(RELEASE_PER_SECOND)),
            _ => RELEASE_AFTER_GIVING_UP_PER_SECOND,
        };
        match services
            .deliveries_queue
            .release_held(sub.id.as_str(), per_second)
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(subscription_id = %sub.id, released = n, per_second, proven = end == ProbeEnd::Proven, "a probe ended: the endpoint's held deliveries come back")
            }
            // They come back at their backstop instead.
            Err(e) => {
                tracing::warn!(subscription_id = %sub.id, error = %e, "could not release held deliveries")
            }
        }
    }
}

/// What the logged attempts of this batch showed about each endpoint.
fn observed(handled: &[Handled]) -> HashMap<(AccountId, SubscriptionId), Observed> {
    let mut by_subscription: HashMap<(AccountId, SubscriptionId), Observed> = HashMap::new();
    for h in handled {
        let Some((u, a)) = h
            .update
            .as_ref()
            .and_then(|u| Some((u, u.attempt.as_ref()?)))
        else {
            continue;
        };
        let o = by_subscription
            .entry((h.task.account_id.clone(), h.task.subscription_id.clone()))
            .or_default();
        match u.status {
            _ if h.gone => o.gone(&a.url, a.at),
            DeliveryStatus::Succeeded => o.success(),
            _ => {
                if o.last_failure_at.is_none_or(|last| a.at >= last) {
                    let error = u.error.clone().unwrap_or_default();
                    o.last_error = Some((error, FailureCause::of(a, u.cause).key()));
                    o.last_failed_delivery = Some(u.delivery_id.to_string());
                }
                o.failure(a.at);
            }
        }
    }
    by_subscription
}

fn metrics_of(handled: &[Handled]) -> DeliveryMetrics {
    let mut m = DeliveryMetrics::default();
    for h in handled {
        let Some(update) = &h.update else { continue };
        match update.status {
            DeliveryStatus::Succeeded => m.succeeded += 1,
            DeliveryStatus::Failed => m.failed += 1,
            DeliveryStatus::Dead => m.dead += 1,
            DeliveryStatus::Skipped => m.skipped += 1,
            DeliveryStatus::Pending => m.retried += 1,
        }
        if let Some(a) = &update.attempt {
            m.latencies_ms.push(a.latency_ms);
            m.attempt_numbers.push(h.attempt_number);
            m.first_try_lags_ms.extend(h.first_try_lag_ms);
        }
    }
    m
}

/// Acts on logged outcomes: park retries, move the exhausted to the dead-letter queue,
/// disable endpoints that are gone.
async fn settle(
    services: &Services,
    subscriptions: &HashMap<(AccountId, SubscriptionId), Subscription>,
    handled: Vec<Handled>,
    received_at: i64,
    response: &mut SqsBatchResponse,
) {
    // The batch has held its messages since `received_at`; a retry step longer than what is
    // left of SQS's 12 h comes back a little early and is delivered then (the jitter is
    // ±20 % anyway), rather than being refused and coming back at the queue's default.
    let elapsed = Duration::from_millis((services.clock.now_ms() - received_at).max(0) as u64);
    let longest = visibility_left(elapsed);
    let mut retries = Vec::new();
    let mut dead = Vec::new();
    let mut deferred = Vec::new();
    // Where the queue can bring them back when a probe succeeds, parked deliveries are held
    // for their endpoint instead: behind a failing endpoint's own probe with a longer
    // backstop, behind its account's stalled probes with the usual parking.
    let holds = services.deliveries_queue.releases_held();
    for h in handled {
        // A pack's task is split off into a message of its own; the pack is not touched.
        let receipt = (!h.packed).then_some(h.receipt_handle);
        match h.next {
            Next::Acknowledge => {}
            Next::Defer(refusal) => {
                let mut task = h.task;
                // This receive made no attempt, so it does not count.
                task.prior_receives += h.receive_count.saturating_sub(1);
                let unit = services.random.unit();
                let park = |parkings| {
                    if holds {
                        holding_delay(parkings, unit)
                    } else {
                        parking_delay(parkings, unit)
                    }
                };
                let (wait, parked) = match refusal {
                    Refusal::Busy => {
                        task.parkings = 0;
                        (IN_FLIGHT_DEFERRAL, false)
                    }
                    Refusal::RateLimited(wait) => {
                        task.parkings = 0;
                        (wait, false)
                    }
                    Refusal::Failing => (park(task.parkings), true),
                    // Counted in the same field: a delivery that waited for a proof and
                    // then for a failing endpoint's probe starts its parking further on.
                    // Held, but with the shorter parking as its backstop: only its own
                    // endpoint's success releases it, and that endpoint may be healthy and
                    // only waiting for one of its account's probe slots, which no release
                    // announces.
                    Refusal::Unproven { stalled: true } => {
                        (parking_delay(task.parkings, unit), true)
                    }
                    Refusal::Unproven { stalled: false } => {
                        (unproven_wait(task.parkings, unit), false)
                    }
                };
                if matches!(refusal, Refusal::Failing | Refusal::Unproven { .. }) {
                    task.parkings = task.parkings.saturating_add(1);
                }
                deferred.push(Deferred {
                    message_id: h.message_id,
                    receipt_handle: receipt,
                    task,
                    wait,
                    held: holds && parked,
                });
            }
            Next::Wait(wait) => {
                let mut task = h.task;
                task.prior_receives += h.receive_count.saturating_sub(1);
                deferred.push(Deferred {
                    message_id: h.message_id,
                    receipt_handle: receipt,
                    task,
                    wait,
                    held: false,
                });
            }
            Next::RetryAfter(delay) => match receipt {
                Some(receipt_handle) => {
                    retries.push((receipt_handle, delay.min(longest)));
                    response.add_failure(h.message_id);
                }
                // Split off: a new message, whose receives count on from this one's, not
                // attempted before its time however soon the queue hands it back.
                None => {
                    let mut task = h.task;
                    task.prior_receives += h.receive_count;
                    task.recheck = false;
                    task.not_before = Some(services.clock.now() + delay);
                    deferred.push(Deferred {
                        message_id: h.message_id,
                        receipt_handle: None,
                        task,
                        wait: delay,
                        held: false,
                    });
                }
            },
            Next::DeadLetter => {
                // Spent by this attempt (not a re-log of one already dead): announced.
                let spent = h
                    .update
                    .filter(|u| u.attempt.is_some())
                    .map(|u| (u, h.attempt_number));
                dead.push((h.message_id, receipt, h.task, spent));
            }
        }
    }
    if !retries.is_empty() {
        if let Err(e) = services
            .deliveries_queue
            .change_visibility_batch(retries)
            .await
        {
            // The messages come back after the queue's own visibility timeout instead.
            tracing::warn!(error = %e, "could not schedule retries");
        }
    }
    // What is left of each pack, by its message.
    let mut packs: HashMap<String, PackLeft> = HashMap::new();
    let (deferred, split_off): (Vec<Deferred>, Vec<Deferred>) = deferred
        .into_iter()
        .partition(|d| d.receipt_handle.is_some());
    for d in split_off {
        packs
            .entry(d.message_id.clone())
            .or_default()
            .split_off
            .push(d);
    }
    let (dead, packed_dead): (Vec<_>, Vec<_>) = dead
        .into_iter()
        .partition(|(_, receipt, _, _)| receipt.is_some());
    for (message_id, _, task, spent) in packed_dead {
        packs
            .entry(message_id)
            .or_default()
            .dead
            .push((task, spent));
    }
    if !deferred.is_empty() {
        defer(services, subscriptions, deferred, response).await;
    }
    let mut spent_dead = Vec::new();
    for (message_id, receipt_handle, task, spent) in dead {
        if let Err(e) = dead_letter(services, &task, receipt_handle).await {
            tracing::warn!(delivery_id = %task.delivery_id, error = %e, "dead-lettering failed; will try again");
            response.add_failure(message_id);
            continue;
        }
        spent_dead.push((task, spent));
    }
    // Packs at once, each on its own: one pack's failure does not bring back another.
    let packs_settled = packs
        .into_iter()
        .map(|(message_id, left)| settle_pack(services, subscriptions, message_id, left));
    for (message_id, settled, dead) in futures::future::join_all(packs_settled).await {
        if !settled {
            response.add_failure(message_id);
        }
        spent_dead.extend(dead);
    }
    let announcements: Vec<Event> = spent_dead
        .into_iter()
        // Never about the delivery of an operational event: a `delivery.dead` about a dead
        // `delivery.dead` could go on for ever.
        .filter(|(task, _)| !is_operational(task.event_type.as_str()))
        .filter_map(|(task, spent)| {
            spent.map(|(update, attempts)| dead_event(&task, &update, attempts, services))
        })
        .collect();
    // At once, not one after another: each may take a few tries of its own.
    let announcing = announcements
        .into_iter()
        .map(|event| health::announce(services, event));
    futures::future::join_all(announcing).await;
}

/// A dead delivery, and the outcome and attempt number that spent it (`None` for a re-log
/// of one already dead: not announced again).
type DeadTask = (DeliveryTask, Option<(DeliveryUpdate, u32)>);

/// What is left to do of one pack: its dead deliveries to move, its others to split off.
#[derive(Default)]
struct PackLeft {
    dead: Vec<DeadTask>,
    split_off: Vec<Deferred>,
}

/// Moves a pack's dead deliveries to the dead-letter queue, then, only if all moved, sends
/// its split-offs in one call; answers whether the pack is done with (else it is reported
/// failed and comes back) and the dead deliveries moved. In that order so that a pack that
/// comes back has nothing split off yet: its pending deliveries are then tried early, not
/// twice over in two messages. (A send the queue takes in part, 10 entries at a time, can
/// still leave copies; at least once.)
async fn settle_pack(
    services: &Services,
    subscriptions: &HashMap<(AccountId, SubscriptionId), Subscription>,
    message_id: String,
    left: PackLeft,
) -> (String, bool, Vec<DeadTask>) {
    let moves = left
        .dead
        .iter()
        .map(|(task, _)| dead_letter(services, task, None));
    let moved = futures::future::join_all(moves).await;
    if let Some(Err(e)) = moved.iter().find(|m| m.is_err()) {
        tracing::warn!(message_id = %message_id, error = %e, "dead-lettering part of a pack failed; the pack will come back");
        return (message_id, false, Vec::new());
    }
    if !left.split_off.is_empty() {
        let now = std::time::Instant::now();
        let copies: Vec<OutgoingMessage> = left
            .split_off
            .into_iter()
            .enumerate()
            .map(|(i, d)| deferred_copy(services, subscriptions, d, i, now).1)
            .collect();
        if let Err(e) = services.deliveries_queue.send_batch(copies).await {
            tracing::warn!(message_id = %message_id, error = %e, "could not split deliveries off their pack; the pack will come back");
            return (message_id, false, left.dead);
        }
    }
    (message_id, true, left.dead)
}

/// A delivery sent back without an attempt, or split off from its pack.
struct Deferred {
    message_id: String,
    /// The message it replaces; `None` when split off from a pack, which stays.
    receipt_handle: Option<String>,
    task: DeliveryTask,
    wait: Duration,
    /// Held for its endpoint's recovery (`OutgoingMessage::held_for`), `wait` a backstop.
    held: bool,
}

/// Sends deferred deliveries back after their wait, in place of their messages
/// (`Queue::requeue_batch`). If that fails the originals are reported failed and come back
/// instead.
async fn defer(
    services: &Services,
    subscriptions: &HashMap<(AccountId, SubscriptionId), Subscription>,
    deferred: Vec<Deferred>,
    response: &mut SqsBatchResponse,
) {
    // Asked again just before the write: a probe that ended since the refusal may have
    // released its endpoint's held deliveries already, and one held now would wait its
    // whole backstop. A probe that ends after this look releases after this write (the
    // embedded store applies writes in the order they are made).
    let now = std::time::Instant::now();
    let (message_ids, requeued): (Vec<String>, Vec<(String, OutgoingMessage)>) = deferred
        .into_iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let message_id = d.message_id.clone();
            let (receipt, copy) = deferred_copy(services, subscriptions, d, i, now);
            receipt.map(|receipt| (message_id, (receipt, copy)))
        })
        .unzip();
    // In place of the received messages (the task carries its parkings and receives).
    if let Err(e) = services.deliveries_queue.requeue_batch(requeued).await {
        tracing::warn!(error = %e, "could not defer deliveries; they will come back");
        for message_id in message_ids {
            response.add_failure(message_id);
        }
    }
}

/// The message that carries `d` back (numbered `id` in its send), and the receipt of the
/// message it replaces, if any. Whether it is still held is asked now: a probe that ended
/// since the refusal may have released its endpoint's held deliveries already, and one
/// held now would wait its whole backstop.
fn deferred_copy(
    services: &Services,
    subscriptions: &HashMap<(AccountId, SubscriptionId), Subscription>,
    d: Deferred,
    id: usize,
    now: std::time::Instant,
) -> (Option<String>, OutgoingMessage) {
    let still_held = d.held
        && subscriptions
            .get(&(d.task.account_id.clone(), d.task.subscription_id.clone()))
            .is_some_and(|sub| services.limiter.would_hold(sub, now));
    let mut task = d.task;
    if d.held && !still_held {
        // Not parked after all: this refusal does not count as one.
        task.parkings = task.parkings.saturating_sub(1);
    }
    let copy = OutgoingMessage {
        id: id.to_string(),
        body: task_message::single(&task),
        delay: match (d.held, still_held) {
            (true, false) => IN_FLIGHT_DEFERRAL,
            _ => d.wait,
        },
        held_for: still_held.then(|| task.subscription_id.to_string()),
    };
    (d.receipt_handle, copy)
}

/// Moves `task` to the dead-letter queue, deleting its message if it has one of its own
/// (`receipt_handle`; a pack's is left to the rest of the pack).
async fn dead_letter(
    services: &Services,
    task: &DeliveryTask,
    receipt_handle: Option<String>,
) -> crate::Result<()> {
    let attempts = services
        .deliveries
        .attempts(&task.account_id, &task.delivery_id)
        .await?;
    let body = dead_letter_body(task, &attempts, services.clock.now());
    services
        .dead_letter_queue
        .send_batch(vec![OutgoingMessage {
            id: "0".into(),
            body,
            delay: Duration::ZERO,
            held_for: None,
        }])
        .await?;
    if let Some(receipt_handle) = receipt_handle {
        services
            .deliveries_queue
            .delete_batch(vec![receipt_handle])
            .await?;
    }
    tracing::warn!(
        delivery_id = %task.delivery_id,
        subscription_id = %task.subscription_id,
        "delivery dead: attempts exhausted"
    );
    Ok(())
}

/// `delivery.dead`: `task`'s attempts ran out with `update`'s.
fn dead_event(
    task: &DeliveryTask,
    update: &DeliveryUpdate,
    attempts: u32,
    services: &Services,
) -> Event {
    let now = services.clock.now();
    let attempt = update.attempt.as_ref();
    Event {
        // One per delivery and attempt: a redelivered batch announces the same event, which
        // the event store takes once.
        id: EventId::derived(&[
            task.delivery_id.as_str(),
            &update.at.as_millis().to_string(),
        ]),
        event_type: EventType::known(health::DEAD_EVENT_TYPE)
            .expect("delivery.dead is in the catalog"),
        account_id: task.account_id.clone(),
        occurred_at: update.at.to_rfc3339(),
        received_at: now,
        data: serde_json::json!({
            "delivery_id": task.delivery_id,
            "webhook_id": task.subscription_id,
            "url": attempt.map(|a| a.url.clone()),
            "event_id": task.event_id,
            "event_type": task.event_type.as_str(),
            "attempts": attempts.max(1),
            "last_error": update.error,
            "cause": attempt.map(|a| FailureCause::of(a, update.cause).key()),
            "dead_at": update.at.to_rfc3339(),
        }),
    }
}

fn update(task: &DeliveryTask, status: DeliveryStatus, at: Timestamp) -> DeliveryUpdate {
    DeliveryUpdate {
        delivery_id: task.delivery_id.clone(),
        account_id: task.account_id.clone(),
        subscription_id: task.subscription_id.clone(),
        event_id: task.event_id.clone(),
        event_type: task.event_type.clone(),
        // A task from before fan-out said when: its row exists already, and keeps its own.
        created_at: task.created_at.unwrap_or(at),
        first_try: false,
        status,
        attempt: None,
        next_attempt_at: None,
        error: None,
        cause: None,
        at,
        listed_on_event: task.listed_on_event,
    }
}

/// One attempt at one delivery; `attempt_number` numbers it within its attempt budget.
/// Answers the outcome to log, what becomes of the message, whether the endpoint said it
/// is gone, and what became of it if it was a probe (see `ProbeEnd`).
#[tracing::instrument(
    name = "attempt",
    skip_all,
    fields(
        delivery_id = %task.delivery_id,
        subscription_id = %task.subscription_id,
        account_id = %task.account_id,
        attempt = attempt_number,
    )
)]
async fn attempt(
    services: &Services,
    sub: Option<&Subscription>,
    task: &DeliveryTask,
    attempt_number: u32,
    retry_until: Option<Timestamp>,
    returned_pack: bool,
) -> (Option<DeliveryUpdate>, Next, bool, ProbeEnd) {
    let now = services.clock.now();
    if let Some(due) = task.not_before {
        // A second's leeway: sooner than that is within the retry's jitter.
        if due.since(now) > Duration::from_secs(1) {
            return (None, Next::Wait(due.since(now)), false, ProbeEnd::Nothing);
        }
    }
    if task.recheck && attempt_number == 1 && !still_to_send(services, task).await {
        return (None, Next::Acknowledge, false, ProbeEnd::Nothing);
    }
    if returned_pack {
        // A pack came back (its batch timed out, or what it split off could not be sent):
        // its deliveries that already ended are not sent again; a dead one's move to the
        // dead-letter queue may not have happened, so it is made again. The others are
        // attempted: at least once.
        if let Ok(Some(d)) = services
            .deliveries
            .get(&task.account_id, &task.delivery_id)
            .await
        {
            match d.status {
                DeliveryStatus::Pending => {}
                DeliveryStatus::Dead => {
                    return (
                        Some(update(task, DeliveryStatus::Dead, now)),
                        Next::DeadLetter,
                        false,
                        ProbeEnd::Nothing,
                    )
                }
                _ => return (None, Next::Acknowledge, false, ProbeEnd::Nothing),
            }
        }
    }
    let sub = match sub {
        Some(s) if s.enabled => s,
        other => {
            let mut u = update(task, DeliveryStatus::Skipped, now);
            u.error = Some(match other {
                Some(_) => "subscription paused or disabled".into(),
                None => "subscription deleted".into(),
            });
            return (Some(u), Next::Acknowledge, false, ProbeEnd::Nothing);
        }
    };
    let policy = RetryPolicy::for_subscription(sub);
    if attempt_number > policy.max_attempts() {
        // Receives beyond the budget: either the last attempt was logged as exhausted and
        // the move to the dead-letter queue did not finish, or receives that made no
        // attempt (a crash while in flight) used the budget up. Only the log can tell.
        match services
            .deliveries
            .get(&task.account_id, &task.delivery_id)
            .await
        {
            Ok(Some(d)) if d.status == DeliveryStatus::Dead => {
                return (
                    Some(update(task, DeliveryStatus::Dead, now)),
                    Next::DeadLetter,
                    false,
                    ProbeEnd::Nothing,
                );
            }
            // A leftover copy of a delivery that already ended: nothing to do.
            Ok(Some(d)) if d.status != DeliveryStatus::Pending => {
                return (None, Next::Acknowledge, false, ProbeEnd::Nothing)
            }
            // Still pending: one real attempt before giving up, so no delivery ends dead
            // without having been tried.
            _ => {}
        }
    }
    let permit = match services.limiter.try_acquire(sub, std::time::Instant::now()) {
        Ok(permit) => permit,
        Err(refusal) => return (None, Next::Defer(refusal), false, ProbeEnd::Nothing),
    };

    let (mut u, result) = send_once(services, sub, task, attempt_number).await;
    let verdict = verdict_of(&result);
    let was_probe = match verdict {
        Verdict::Succeeded => permit.succeeded(),
        _ => permit.is_probe(),
    };
    drop(permit);
    let gone = verdict == Verdict::Gone;
    let next = match verdict {
        Verdict::Succeeded => {
            u.status = DeliveryStatus::Succeeded;
            Next::Acknowledge
        }
        Verdict::Permanent => {
            u.status = DeliveryStatus::Failed;
            Next::Acknowledge
        }
        // Acknowledged; the endpoint's health step disables the subscription.
        Verdict::Gone => {
            u.status = DeliveryStatus::Failed;
            Next::Acknowledge
        }
        Verdict::Retry(failure) => {
            match policy.next_delay(
                attempt_number,
                failure,
                result.retry_after,
                services.random.unit(),
            ) {
                // A retry the queue would drop unseen (its message expired) is a dead letter
                // now instead, with its history, listed and redrivable.
                Some(delay) if retry_until.is_none_or(|until| now + delay <= until) => {
                    u.next_attempt_at = Some(now + delay);
                    Next::RetryAfter(delay)
                }
                _ => {
                    u.status = DeliveryStatus::Dead;
                    Next::DeadLetter
                }
            }
        }
    };
    let probe = match (was_probe, &next) {
        (false, _) | (_, Next::RetryAfter(_)) => ProbeEnd::Nothing,
        _ if verdict == Verdict::Succeeded => ProbeEnd::Proven,
        _ => ProbeEnd::GaveUp,
    };
    (Some(u), next, gone, probe)
}

/// Whether a task fan-out sent again (see `DeliveryTask::recheck`) still has its delivery to
/// make: it does unless the delivery is logged as finished, or as retrying under another
/// message. Unreadable, it is sent: at least once.
async fn still_to_send(services: &Services, task: &DeliveryTask) -> bool {
    // An event fanned out before delivery ids began with their event's receipt, and
    // posted again since, has its deliveries under the old id: looked for there too (until
    // the retention after that upgrade, when none is left).
    let old_id =
        DeliveryId::without_receipt_time(&task.account_id, &task.event_id, &task.subscription_id);
    if old_id != task.delivery_id {
        match services.deliveries.get(&task.account_id, &old_id).await {
            Ok(Some(d)) if !(d.status == DeliveryStatus::Pending && d.attempt_count == 0) => {
                return false
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, delivery_id = %task.delivery_id, "could not recheck a delivery sent again; it is sent");
                return true;
            }
        }
    }
    match services
        .deliveries
        .get(&task.account_id, &task.delivery_id)
        .await
    {
        Ok(None) => true,
        // Made by fan-out before deliveries were logged at their first outcome, never tried.
        Ok(Some(d)) => d.status == DeliveryStatus::Pending && d.attempt_count == 0,
        Err(e) => {
            tracing::warn!(error = %e, delivery_id = %task.delivery_id, "could not recheck a delivery sent again; it is sent");
            true
        }
    }
}

fn verdict_of(result: &SendResult) -> Verdict {
    match (&result.status, &result.error) {
        (Some(status), _) => classify_status(*status),
        (None, Some(SendError::Refused(_))) => Verdict::Permanent,
        (None, Some(SendError::OAuthToken { refused: true, .. })) => Verdict::Permanent,
        (None, Some(SendError::Timeout(_))) => Verdict::Retry(Failure::Timeout),
        (None, _) => Verdict::Retry(Failure::Network),
    }
}

/// Takes `sub`'s endpoint apart phase by phase (see `HttpSender::diagnose`) with what a
/// delivery would send: a signed `webhook.test` event with the subscription's headers and
/// credentials. Nothing is logged: it is a probe, not a delivery.
pub async fn diagnose(services: &Services, sub: &Subscription) -> Diagnosis {
    let now = services.clock.now();
    let event = Event {
        id: EventId::generate(now, &*services.random),
        event_type: EventType::known("webhook.test").expect("webhook.test is in the catalog"),
        account_id: sub.account_id.clone(),
        occurred_at: now.to_rfc3339(),
        received_at: now,
        data: serde_json::json!({
            "message": "This is a diagnosis of your endpoint by the webhook service.",
            "webhook_id": sub.id,
        }),
    };
    let task = Delivery::new(&event, sub, now).task(Payload::of(&event));
    // The probe goes out as a delivery would, credentials included: a token endpoint that
    // fails shows in the HTTP phase as the endpoint's 401 would.
    let bearer = bearer_for(services, sub, &task, now, None, DIAGNOSIS_TOKEN_BUDGET)
        .await
        .ok()
        .flatten();
    let (headers, _) = request_headers(sub, &task, now, bearer.as_deref());
    let request = OutboundRequest {
        url: sub.url.clone(),
        headers,
        body: Bytes::from_owner(task.payload.clone()),
        timeout: Duration::from_secs(sub.timeout_seconds.max(1) as u64),
    };
    let egress = services
        .settings
        .egress_ips
        .iter()
        .map(ToString::to_string)
        .collect();
    services.http.diagnose(request, egress).await
}

/// Signs and sends one request for `task` to `sub` now, and describes the attempt as a
/// pending update: the caller decides the status. `attempt_number` is only for the log.
pub async fn send_once(
    services: &Services,
    sub: &Subscription,
    task: &DeliveryTask,
    attempt_number: u32,
) -> (DeliveryUpdate, SendResult) {
    let now = services.clock.now();
    let started = std::time::Instant::now();
    let timeout = Duration::from_secs(sub.timeout_seconds.max(1) as u64);
    let request = |headers: Headers, timeout: Duration| OutboundRequest {
        url: sub.url.clone(),
        headers,
        // The payload's bytes as carried, shared rather than copied.
        body: Bytes::from_owner(task.payload.clone()),
        timeout,
    };
    // The whole attempt, token requests included, keeps within the endpoint's timeout.
    let left = || timeout.saturating_sub(started.elapsed());
    let first_bearer = bearer_for(services, sub, task, now, None, left()).await;
    let (logged_headers, result) = match first_bearer {
        Ok(bearer) => {
            let (headers, logged) = request_headers(sub, task, now, bearer.as_deref());
            let mut result = services.http.send(request(headers, left())).await;
            // A 401 to an OAuth token: the token may have been revoked before its expiry.
            // One new token and one more request, within the same timeout, before the
            // attempt counts as failed.
            if result.status == Some(401) && is_oauth(sub) && !left().is_zero() {
                let fresh = bearer_for(services, sub, task, now, bearer.as_deref(), left()).await;
                if let (Ok(Some(fresh)), false) = (fresh, left().is_zero()) {
                    let (headers, _) = request_headers(sub, task, now, Some(&fresh));
                    result = services.http.send(request(headers, left())).await;
                }
            }
            (logged, result)
        }
        // No token, so the endpoint is not called: the attempt fails with the token
        // endpoint's reason, and is retried like any failure.
        Err(error) => (
            request_headers(sub, task, now, None).1,
            SendResult::failed(error, started.elapsed()),
        ),
    };

    let verdict = verdict_of(&result);
    let error = result.error.as_ref().map(ToString::to_string);
    let mut u = update(task, DeliveryStatus::Pending, now);
    u.cause = result.error.as_ref().map(SendError::cause);
    u.error = error.clone().or_else(|| match verdict {
        Verdict::Succeeded => None,
        _ => result.status.map(|s| format!("endpoint answered {s}")),
    });
    u.attempt = Some(Attempt {
        attempt: 0,
        at: now,
        url: sub.url.clone(),
        request_headers: logged_headers,
        status_code: result.status,
        response_headers: result.headers.clone(),
        latency_ms: result.latency.as_millis() as u64,
        response_body: result.body.clone(),
        error,
    });
    if verdict != Verdict::Succeeded {
        tracing::warn!(
            delivery_id = %task.delivery_id,
            subscription_id = %task.subscription_id,
            account_id = %task.account_id,
            attempt = attempt_number,
            status_code = ?result.status,
            error = ?u.error,
            "delivery attempt failed"
        );
    }
    (u, result)
}

fn is_oauth(sub: &Subscription) -> bool {
    matches!(sub.auth, Some(EndpointAuth::OAuth2ClientCredentials { .. }))
}

/// A diagnosis's token request: its phases have 24 s in all, and API Gateway allows 29.
const DIAGNOSIS_TOKEN_BUDGET: Duration = Duration::from_secs(4);

/// The bearer token of a delivery whose credentials are made per request: an OAuth access
/// token (kept, or fetched; `rejected` is one the endpoint has just refused) or a JWT.
/// `None` for static credentials.
async fn bearer_for(
    services: &Services,
    sub: &Subscription,
    task: &DeliveryTask,
    now: Timestamp,
    rejected: Option<&str>,
    budget: Duration,
) -> Result<Option<String>, SendError> {
    match &sub.auth {
        Some(EndpointAuth::OAuth2ClientCredentials { .. }) => {
            crate::oauth::token_for(services, sub, rejected, budget)
                .await
                .transpose()
        }
        Some(EndpointAuth::Jwt { audience }) => {
            crate::jwt::token_for(services, sub, audience.as_deref(), task, now)
                .await
                .map(Some)
        }
        _ => Ok(None),
    }
}

/// The headers to send, and the same with credentials masked for the log. `bearer`: the
/// token of per-request credentials (see `bearer_for`).
fn request_headers(
    sub: &Subscription,
    task: &DeliveryTask,
    now: Timestamp,
    bearer: Option<&str>,
) -> (Headers, Headers) {
    let timestamp = now.as_secs();
    let signature = signing::signature_header(
        sub.active_secrets(now),
        &task.delivery_id,
        timestamp,
        task.payload.as_bytes(),
    );
    let mut sent = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("webhook-id".to_string(), task.delivery_id.to_string()),
        ("webhook-timestamp".to_string(), timestamp.to_string()),
        ("webhook-signature".to_string(), signature),
    ];
    // The log shows which custom headers went out, not their values (often tenant tokens).
    let mut logged = sent.clone();
    for (name, value) in &sub.headers {
        sent.push((name.to_ascii_lowercase(), value.clone()));
        logged.push((name.to_ascii_lowercase(), MASK.to_string()));
    }
    let (name, value, masked) = match &sub.auth {
        None => return (sent, logged),
        Some(EndpointAuth::ApiKey { header, value }) => {
            (header.to_ascii_lowercase(), value.clone(), MASK.to_string())
        }
        Some(EndpointAuth::Basic { username, password }) => (
            "authorization".to_string(),
            format!(
                "Basic {}",
                STANDARD.encode(format!("{username}:{password}"))
            ),
            format!("Basic {MASK}"),
        ),
        Some(EndpointAuth::Bearer { token }) => (
            "authorization".to_string(),
            format!("Bearer {token}"),
            format!("Bearer {MASK}"),
        ),
        Some(EndpointAuth::OAuth2ClientCredentials { .. } | EndpointAuth::Jwt { .. }) => {
            match bearer {
                Some(token) => (
                    "authorization".to_string(),
                    format!("Bearer {token}"),
                    format!("Bearer {MASK}"),
                ),
                None => return (sent, logged),
            }
        }
    };
    sent.push((name.clone(), value));
    logged.push((name, masked));
    (sent, logged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::catalog::EventType;
    use domain::delivery::Payload;
    use domain::ids::{DeliveryId, EventId};

    /// The last delivery of a pack starts within its budget and may take the longest
    /// timeout an endpoint may have (OAuth token requests included); the batch then logs
    /// and settles. All of it must end before the function times out, which would bring
    /// back every message of the batch, delivered or not.
    #[test]
    fn a_batch_of_packs_ends_before_the_functions_timeout() {
        let longest_attempt = Duration::from_secs(domain::subscription::MAX_TIMEOUT_SECONDS.into());
        let settling = Duration::from_secs(5);
        assert!(
            PACK_SEND_BUDGET + longest_attempt + settling
                <= crate::topology::DELIVER.function_timeout
        );
    }

    fn task(payload_bytes: usize) -> DeliveryTask {
        let payload = format!(r#"{{"data":"{}"}}"#, "x".repeat(payload_bytes));
        DeliveryTask {
            delivery_id: DeliveryId::parse("msg_1").unwrap(),
            account_id: AccountId::parse("acct").unwrap(),
            subscription_id: SubscriptionId::parse("wh_1").unwrap(),
            event_id: EventId::parse("evt_1").unwrap(),
            event_type: EventType::known("call.ended").unwrap(),
            payload: Payload::from_json(payload).unwrap(),
            prior_receives: 0,
            parkings: 0,
            created_at: None,
            logged: false,
            recheck: false,
            listed_on_event: false,
            not_before: None,
        }
    }

    /// An attempt as large as the limits let it be: 20 headers of 1 KiB, as many response
    /// headers as are kept at their longest, and a 4 KiB response of quotes (each escaped).
    fn attempt(n: u32) -> Attempt {
        Attempt {
            attempt: n,
            at: Timestamp::from_millis(i64::from(n)),
            url: "https://example.com/hook".into(),
            request_headers: (0..20)
                .map(|i| (format!("x-h{i}"), "v".repeat(1024)))
                .collect(),
            response_headers: (0..domain::delivery::MAX_LOGGED_RESPONSE_HEADERS)
                .map(|i| {
                    let value = "\"".repeat(domain::delivery::MAX_LOGGED_HEADER_VALUE_CHARS);
                    (format!("x-r{i}"), value)
                })
                .collect(),
            status_code: Some(500),
            latency_ms: 1,
            response_body: Some("\"".repeat(4096)),
            error: None,
        }
    }

    #[test]
    fn a_dead_letter_keeps_its_newest_attempts_within_the_message_limit() {
        let small = dead_letter_body(
            &task(10),
            &[attempt(1), attempt(2)],
            Timestamp::from_millis(5),
        );
        let v: serde_json::Value = serde_json::from_str(&small).unwrap();
        assert!(v.get("attempts_omitted").is_none());
        assert_eq!(v["attempts"].as_array().unwrap().len(), 2);

        let attempts: Vec<Attempt> = (1..=60).map(attempt).collect();
        let body = dead_letter_body(&task(256 * 1024), &attempts, Timestamp::from_millis(5));
        assert!(body.len() <= MAX_MESSAGE_BYTES, "{}", body.len());
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let kept = v["attempts"].as_array().unwrap();
        let omitted = v["attempts_omitted"].as_u64().unwrap() as usize;
        assert!(omitted > 0 && !kept.is_empty());
        assert_eq!(omitted + kept.len(), 60);
        assert_eq!(kept.last().unwrap()["attempt"], 60);
        // No more left out than needed: one more attempt would not have fit.
        let one_more = serde_json::to_string(&attempts[omitted - 1]).unwrap().len();
        assert!(body.len() + one_more > MAX_MESSAGE_BYTES);
    }
}
