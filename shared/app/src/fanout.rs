//! Fan-out: each event becomes one delivery per matching subscription of its account.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};

use super::sqs::{set_aside, Record};
use crate::alerts;
use crate::ingest::EventMessage;
use crate::ports::OutgoingMessage;
use crate::task_message::{self, Packer};
use crate::{Result, Services};
use domain::alerts::AlertTopic;
use domain::delivery::{Delivery, DeliveryStatus, DeliveryTask, Payload};
use domain::event::Event;
use domain::ids::{AccountId, SubscriptionId};
use domain::retry::{holding_delay, parking_delay};
use domain::subscription::Subscription;

/// What the fan-out function is invoked with: batches of the events queue, and the alert
/// digests' schedule (fan-out is the function that sends alert e-mail).
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
pub enum Invocation {
    Scheduled(crate::deliver_function::ScheduledEvent),
    Queue(SqsEvent),
}

#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum Response {
    Batch(SqsBatchResponse),
    Digests(alerts::DigestReport),
}

/// Runs what `invocation` asks. Only the digest run can fail as a whole, and is then
/// retried by its schedule's asynchronous invocation.
pub async fn handle_invocation(services: &Services, invocation: Invocation) -> Result<Response> {
    Ok(match invocation {
        Invocation::Scheduled(_) => Response::Digests(alerts::send_digests(services).await?),
        Invocation::Queue(batch) => Response::Batch(handle_events(services, batch).await),
    })
}

/// Handles one batch from the events queue. A message whose work did not complete is
/// reported in `batchItemFailures` and comes back; nothing else fails the batch.
///
/// Writes nothing per delivery: a delivery is logged by its first outcome (a paused
/// subscription's, never sent, is logged here as skipped). Idempotent all the same: delivery
/// ids are derived from (event, subscription), and an event fanned out before (a message
/// received again, or an event posted again) sends its tasks with `recheck`, so deliver
/// reads their rows and sends nothing that is finished or retrying under another message.
/// One still in its first attempt may be sent twice: at least once, with the same
/// `webhook-id`.
#[tracing::instrument(name = "fan_out", skip_all, fields(messages = batch.records.len()))]
pub async fn handle_events(services: &Services, batch: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut work: Vec<(String, u32, Event)> = Vec::new();
    let mut again: HashSet<String> = HashSet::new();
    for message in &batch.records {
        let Some(record) = Record::from_message(message) else {
            tracing::error!("events queue record without id or body");
            continue;
        };
        match serde_json::from_str::<EventMessage>(record.body) {
            Ok(EventMessage { event, again: seen }) => {
                if seen || record.receive_count > 1 {
                    again.insert(record.message_id.to_string());
                }
                work.push((record.message_id.to_string(), record.receive_count, event))
            }
            Err(e) => set_aside(services, "events", &record, &e, &mut response).await,
        }
    }
    if let Err(e) = fan_out(services, &work, &again).await {
        tracing::warn!(error = %e, events = work.len(), "fan-out failed; the batch will be retried");
        for (message_id, _, _) in &work {
            response.add_failure(message_id.clone());
        }
        return response;
    }
    // Alert e-mail, once the event's deliveries are made. Events about one topic one after
    // the other (they would only race for its throttle), topics all at once (a slow mail
    // server costs the batch one timeout, not one per event).
    let mut by_topic: HashMap<String, Vec<&(String, u32, Event)>> = HashMap::new();
    for item in &work {
        if let Some(topic) = AlertTopic::of(&item.2) {
            let key = format!("{}/{}", item.2.account_id, topic.key());
            by_topic.entry(key).or_default().push(item);
        }
    }
    let groups = by_topic.into_values().map(|items| async move {
        let mut outcomes = Vec::new();
        for (message_id, receive_count, event) in items {
            outcomes.push((
                message_id,
                *receive_count,
                alerts::notify(services, event).await,
            ));
        }
        outcomes
    });
    for (message_id, receive_count, outcome) in futures::future::join_all(groups)
        .await
        .into_iter()
        .flatten()
    {
        let Err(e) = outcome else { continue };
        if receive_count < alerts::MAX_ALERT_RECEIVES {
            tracing::warn!(error = %e, message_id = %message_id, "alert e-mail not sent; the event will be tried again");
            response.add_failure(message_id.clone());
        } else {
            tracing::error!(error = %e, message_id = %message_id, receive_count, "alert e-mail not sent after several tries; given up");
        }
    }
    response
}

async fn fan_out(
    services: &Services,
    work: &[(String, u32, Event)],
    again: &HashSet<String>,
) -> Result<()> {
    if work.is_empty() {
        return Ok(());
    }
    let mut subscriptions: HashMap<&AccountId, Vec<Subscription>> = HashMap::new();
    for (_, _, event) in work {
        if !subscriptions.contains_key(&event.account_id) {
            let subs = services.subscriptions.list_all(&event.account_id).await?;
            subscriptions.insert(&event.account_id, subs);
        }
    }
    let events: Vec<ToFanOut> = work
        .iter()
        .map(|(message_id, _, event)| ToFanOut {
            event,
            again: again.contains(message_id),
            // Stored by ingest before this step: a list it may carry is not this step's.
            listed: false,
        })
        .collect();
    let plan = Plan::of(services, &events, |account| &subscriptions[account]);
    tracing::debug!(
        events = work.len(),
        skipped = plan.skipped.len(),
        sent = plan.messages.len(),
        "fanned out"
    );
    plan.carry_out(services).await
}

/// An event for [`Plan::of`].
pub(crate) struct ToFanOut<'a> {
    pub event: &'a Event,
    /// Fanned out before (its tasks are sent for deliver to recheck).
    pub again: bool,
    /// Stored with the list of the subscriptions it matches now
    /// (`EventStore::insert_batch_listing`): its tasks say so.
    pub listed: bool,
}

/// The subscriptions among `subscriptions` (its account's) that `event` goes to: those
/// that want its type, except the one an operational event is about.
pub(crate) fn matching<'a>(
    event: &'a Event,
    subscriptions: &'a [Subscription],
) -> impl Iterator<Item = &'a Subscription> + 'a {
    let about = event.about_webhook();
    subscriptions
        .iter()
        .filter(move |s| s.wants(&event.event_type) && about != Some(s.id.as_str()))
}

/// What fan-out makes of some events: the deliveries to log at once (a paused
/// subscription's, skipped) and the task messages for the deliveries queue. Fan-out runs it
/// on the events queue's batches; ingest runs it itself for an account with few
/// subscriptions (see `ingest::store_and_fan_out`).
pub(crate) struct Plan {
    skipped: Vec<Delivery>,
    messages: Vec<OutgoingMessage>,
    /// The endpoint each held message (by index) waits for, asked again at the send, and
    /// the task to send instead if it is not held after all.
    held: Vec<(usize, Subscription, DeliveryTask)>,
}

impl Plan {
    /// The plan for `events`, given each account's subscriptions.
    pub(crate) fn of<'a>(
        services: &Services,
        events: &[ToFanOut],
        subscriptions_of: impl Fn(&AccountId) -> &'a [Subscription],
    ) -> Plan {
        let now = services.clock.now();
        let mut plan = Plan {
            skipped: Vec::new(),
            messages: Vec::new(),
            held: Vec::new(),
        };
        // Where the queue releases held deliveries (the runner), fan-out and deliver share
        // one limiter, which knows whether a failing endpoint has a probe in flight: if not,
        // a new delivery goes now and is its probe. Elsewhere only `failing_since` is known.
        let holds = services.deliveries_queue.releases_held();
        // The open pack of each subscription.
        let mut packs: HashMap<(AccountId, SubscriptionId), Packer> = HashMap::new();
        for ToFanOut {
            event,
            again,
            listed,
        } in events
        {
            // One copy for all of the event's tasks; each message embeds it as it is.
            let payload = Payload::of(event);
            for sub in matching(event, subscriptions_of(&event.account_id)) {
                let delivery = Delivery::new(event, sub, now);
                if delivery.status != DeliveryStatus::Pending {
                    plan.skipped.push(delivery);
                    continue;
                }
                let mut task = delivery.task(payload.clone());
                task.recheck = *again;
                task.listed_on_event = *listed;
                // A failing endpoint's new deliveries start parked (see `limiter`): they
                // would only be received to be parked, a wall of them ahead of every other
                // account's new deliveries. A returning one may be its endpoint's next probe.
                // So do those of an endpoint not yet heard from while its account's probes
                // hang (known only where fan-out and deliver share a process: the runner).
                // Where the queue can release them, they are held for the endpoint instead.
                let instant = std::time::Instant::now();
                let parked = if holds {
                    services.limiter.would_hold(sub, instant)
                } else {
                    sub.failing_since.is_some() || services.limiter.would_park(sub, instant)
                };
                // Held behind its own failing endpoint's probe, the backstop is long; behind
                // its account's stalled probes, short (see deliver's `settle`).
                let delay = if !parked {
                    Duration::ZERO
                } else if holds && sub.failing_since.is_some() {
                    holding_delay(0, services.random.unit())
                } else {
                    parking_delay(0, services.random.unit())
                };
                if parked {
                    task.parkings = 1;
                }
                if !parked && sub.failing_since.is_none() {
                    // Due now: packed with the others of its subscription (see
                    // `task_message`). A failing endpoint's go alone, each the probe it may
                    // be or held behind one.
                    let pack = packs
                        .entry((sub.account_id.clone(), sub.id.clone()))
                        .or_default();
                    if let Some(body) = pack.add(task_message::single(&task)) {
                        plan.push(body);
                    }
                    continue;
                }
                let held = parked && holds;
                if held {
                    let mut unheld = task.clone();
                    unheld.parkings = 0;
                    plan.held.push((plan.messages.len(), sub.clone(), unheld));
                }
                plan.messages.push(OutgoingMessage {
                    id: plan.messages.len().to_string(),
                    body: task_message::single(&task),
                    delay,
                    held_for: held.then(|| sub.id.to_string()),
                });
            }
        }
        for mut pack in packs.into_values() {
            if let Some(body) = pack.close() {
                plan.push(body);
            }
        }
        plan
    }

    /// Adds a message due now, held for nothing.
    fn push(&mut self, body: String) {
        self.messages.push(OutgoingMessage {
            id: self.messages.len().to_string(),
            body,
            delay: Duration::ZERO,
            held_for: None,
        });
    }

    /// Logs the skipped deliveries and sends the tasks.
    pub(crate) async fn carry_out(mut self, services: &Services) -> Result<()> {
        if !self.skipped.is_empty() {
            services.deliveries.create_batch(&self.skipped).await?;
        }
        // As deliver does before holding (see `deliver::defer`): a probe that ended since
        // the plan may have released its endpoint already; such a delivery goes now.
        let now = std::time::Instant::now();
        for (i, sub, unheld) in &self.held {
            if !services.limiter.would_hold(sub, now) {
                let m = &mut self.messages[*i];
                m.body = task_message::single(unheld);
                m.held_for = None;
                m.delay = Duration::ZERO;
            }
        }
        services.deliveries_queue.send_batch(self.messages).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::MAX_MESSAGE_BYTES;
    use domain::catalog::EventType;
    use domain::event::MAX_EVENT_BYTES;
    use domain::ids::{DeliveryId, EventId, SubscriptionId, MAX_ID_CHARS};
    use domain::time::Timestamp;

    /// Ingest refuses an event whose payload is over `MAX_EVENT_BYTES`; every event it
    /// accepts must then travel: its events-queue message and each of its tasks, even with
    /// every id at its longest, fit in a queue message with room to spare.
    #[test]
    fn the_largest_event_accepted_fits_in_every_message_it_becomes() {
        let id = "i".repeat(MAX_ID_CHARS);
        let mut event = Event {
            id: EventId::parse(&id).unwrap(),
            event_type: EventType::known("call.transcript.ready").unwrap(),
            account_id: AccountId::parse(&id).unwrap(),
            occurred_at: "2026-11-26T12:00:00Z".into(),
            received_at: Timestamp::from_millis(i64::MAX),
            data: serde_json::json!({"quotes": ""}),
        };
        let room = MAX_EVENT_BYTES - event.payload().len();
        // Quotes: each is two bytes in the payload, and was four in a task before.
        event.data = serde_json::json!({"quotes": "\"".repeat(room / 2)});
        let payload = event.payload();
        assert!(payload.len() <= MAX_EVENT_BYTES && payload.len() > MAX_EVENT_BYTES - 2);

        let event_message = serde_json::to_string(&event).unwrap();
        let subscription_id = SubscriptionId::parse(&id).unwrap();
        let task = DeliveryTask {
            delivery_id: DeliveryId::of(
                &event.account_id,
                &event.id,
                event.received_at,
                &subscription_id,
            ),
            account_id: event.account_id.clone(),
            subscription_id,
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            payload: Payload::of(&event),
            prior_receives: u32::MAX,
            parkings: u32::MAX,
            created_at: Some(Timestamp::from_millis(i64::MAX)),
            logged: false,
            recheck: true,
            listed_on_event: false,
            not_before: Some(Timestamp::from_millis(i64::MAX)),
        };
        let task_message = serde_json::to_string(&task).unwrap();
        assert!(task_message.len() < payload.len() + 4096);
        for size in [event_message.len(), task_message.len()] {
            assert!(size <= MAX_MESSAGE_BYTES / 2, "{size}");
        }
    }
}
