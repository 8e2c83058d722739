//! Fan-out: each event becomes one delivery per matching subscription of its account.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};

use super::sqs::{set_aside, Record};
use crate::alerts;
use crate::ports::OutgoingMessage;
use crate::{Result, Services};
use domain::alerts::AlertTopic;
#[cfg(test)]
use domain::delivery::DeliveryTask;
use domain::delivery::{Delivery, DeliveryStatus, Payload};
use domain::event::Event;
use domain::ids::{AccountId, DeliveryId};
use domain::retry::parking_delay;
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
/// Idempotent: delivery ids are derived from (event, subscription) and created only if
/// absent, so a redelivered event sends only what the first pass did not. When a message
/// comes back (receive count > 1) its earlier pass may have created deliveries and died
/// before sending them, so their never-attempted deliveries are sent again: at least once,
/// with the same `webhook-id`.
#[tracing::instrument(name = "fan_out", skip_all, fields(messages = batch.records.len()))]
pub async fn handle_events(services: &Services, batch: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut work: Vec<(String, u32, Event)> = Vec::new();
    for message in &batch.records {
        let Some(record) = Record::from_message(message) else {
            tracing::error!("events queue record without id or body");
            continue;
        };
        match serde_json::from_str::<Event>(record.body) {
            Ok(event) => work.push((record.message_id.to_string(), record.receive_count, event)),
            Err(e) => set_aside(services, "events", &record, &e, &mut response).await,
        }
    }
    if let Err(e) = fan_out(services, &work).await {
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

async fn fan_out(services: &Services, work: &[(String, u32, Event)]) -> Result<()> {
    if work.is_empty() {
        return Ok(());
    }
    let now = services.clock.now();
    let mut subscriptions: HashMap<&AccountId, Vec<Subscription>> = HashMap::new();
    for (_, _, event) in work {
        if !subscriptions.contains_key(&event.account_id) {
            let subs = services.subscriptions.list_all(&event.account_id).await?;
            subscriptions.insert(&event.account_id, subs);
        }
    }

    let mut deliveries = Vec::new();
    let mut tasks = Vec::new();
    for (_, _, event) in work {
        // One copy for all of the event's tasks; each message embeds it as it is.
        let payload = Payload::of(event);
        let about = event.about_webhook();
        for sub in subscriptions[&event.account_id]
            .iter()
            .filter(|s| s.wants(&event.event_type) && about != Some(s.id.as_str()))
        {
            let delivery = Delivery::new(event, sub, now);
            let mut task = delivery.task(payload.clone());
            // A failing endpoint's new deliveries start parked (see `limiter`): they would
            // only be received to be parked, a wall of them ahead of every other account's
            // new deliveries. A returning one may be its endpoint's next probe.
            let delay = if sub.failing_since.is_some() {
                task.parkings = 1;
                parking_delay(0, services.random.unit())
            } else {
                Duration::ZERO
            };
            tasks.push((task, delay));
            deliveries.push(delivery);
        }
    }

    let created = services.deliveries.create_batch(&deliveries).await?;
    let mut resend: HashSet<DeliveryId> = HashSet::new();
    for (_, receive_count, event) in work {
        if *receive_count > 1 {
            for d in services
                .deliveries
                .list_for_event(&event.account_id, &event.id)
                .await?
            {
                if d.status == DeliveryStatus::Pending && d.attempt_count == 0 {
                    resend.insert(d.id);
                }
            }
        }
    }

    let mut messages = Vec::new();
    for ((delivery, (task, delay)), created) in deliveries.iter().zip(tasks).zip(created) {
        let send = (created && delivery.status == DeliveryStatus::Pending)
            || resend.contains(&delivery.id);
        if send {
            messages.push(OutgoingMessage {
                id: messages.len().to_string(),
                body: serde_json::to_string(&task).expect("a delivery task serialises"),
                delay,
            });
        }
    }
    tracing::debug!(
        events = work.len(),
        deliveries = deliveries.len(),
        sent = messages.len(),
        "fanned out"
    );
    services.deliveries_queue.send_batch(messages).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::MAX_MESSAGE_BYTES;
    use domain::catalog::EventType;
    use domain::event::MAX_EVENT_BYTES;
    use domain::ids::{EventId, SubscriptionId, MAX_ID_CHARS};
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
            delivery_id: DeliveryId::of(&event.account_id, &event.id, &subscription_id),
            account_id: event.account_id.clone(),
            subscription_id,
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            payload: Payload::of(&event),
            prior_receives: u32::MAX,
            parkings: u32::MAX,
        };
        let task_message = serde_json::to_string(&task).unwrap();
        assert!(task_message.len() < payload.len() + 4096);
        for size in [event_message.len(), task_message.len()] {
            assert!(size <= MAX_MESSAGE_BYTES / 2, "{size}");
        }
    }
}
