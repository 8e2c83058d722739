//! Ingest: accepted events are stored once (deduplicated on account and id) and put on the
//! events queue, or fanned out at once for an account with few subscriptions. The HTTP route that validates what producers post lives in the HTTP layer.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use crate::fanout::{matching, Plan, ToFanOut};
use crate::ports::{EventInsert, OutgoingMessage, MAX_MESSAGE_BYTES};
use crate::Services;
use domain::catalog;
use domain::event::Event;
use domain::ids::{AccountId, EventId, SubscriptionId};
use domain::subscription::Subscription;

/// What ingest answers for one event.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    pub id: EventId,
    /// An event with this id was accepted before; nothing new is delivered.
    pub duplicate: bool,
}

/// An account with at most this many subscriptions has its events fanned out by ingest
/// itself, straight onto the deliveries queue: one queue hop, and one function, fewer per
/// event. An account with more goes through the events queue, so that ingest's answer never
/// waits on reading or fanning out to many subscriptions.
pub const DIRECT_FAN_OUT_MAX_SUBSCRIPTIONS: usize = 10;

/// Stores the events (deduplicated on account and id), then enqueues each once per request:
/// a new one as it is, one stored before with `again` set (whether the earlier copy reached
/// the queue is not kept, so it is enqueued again and fan-out rechecks its deliveries). If
/// the queue fails the caller gets a 503 and may retry with the same ids: nothing is lost
/// or doubled. An event too large for a queue message is refused before anything is stored
/// ([`crate::Error::TooLarge`]): retrying it could never succeed. The service's own
/// operational events take this way.
#[tracing::instrument(name = "ingest", skip_all, fields(events = events.len()))]
pub async fn store_and_enqueue(
    services: &Services,
    events: &[Event],
) -> crate::Result<Vec<Accepted>> {
    store(services, events, false).await
}

/// As [`store_and_enqueue`], for what producers post: the events of an account with few
/// subscriptions ([`DIRECT_FAN_OUT_MAX_SUBSCRIPTIONS`]) are fanned out here, as fan-out
/// would (see `fanout::Plan`), the others enqueued for it. Operational events always go
/// through fan-out, which sends their alert e-mail. If the subscriptions cannot be read,
/// every event is enqueued.
#[tracing::instrument(name = "ingest", skip_all, fields(events = events.len()))]
pub async fn store_and_fan_out(
    services: &Services,
    events: &[Event],
) -> crate::Result<Vec<Accepted>> {
    store(services, events, true).await
}

async fn store(
    services: &Services,
    events: &[Event],
    fan_out_small: bool,
) -> crate::Result<Vec<Accepted>> {
    let bodies: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).expect("an event serialises"))
        .collect();
    if let Some((event, body)) = events
        .iter()
        .zip(&bodies)
        .find(|(_, b)| b.len() > MAX_MESSAGE_BYTES)
    {
        return Err(crate::Error::TooLarge(format!(
            "event {} is {} bytes on the queue, which takes at most {MAX_MESSAGE_BYTES} bytes",
            event.id,
            body.len()
        )));
    }
    let small = if fan_out_small {
        small_accounts(services, events).await
    } else {
        HashMap::new()
    };
    // Which events ingest fans out itself, and to which subscriptions: stored with the
    // event, so the store can find their deliveries from it.
    let first_in_request: Vec<bool> = events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            events[..i]
                .iter()
                .all(|e| e.id != event.id || e.account_id != event.account_id)
        })
        .collect();
    let fanned_out_here: Vec<Option<Vec<SubscriptionId>>> = events
        .iter()
        .zip(&first_in_request)
        .map(|(event, first)| {
            let operational = catalog::is_operational(event.event_type.as_str());
            let subs = small
                .get(&event.account_id)
                .filter(|_| *first && !operational)?;
            Some(matching(event, subs).map(|s| s.id.clone()).collect())
        })
        .collect();
    let inserted = services
        .events
        .insert_batch_listing(events, &fanned_out_here)
        .await?;
    let as_stored = as_first_received(services, events, &inserted, &first_in_request).await?;
    let mut messages = Vec::new();
    let mut direct: Vec<ToFanOut> = Vec::new();
    let mut results = Vec::with_capacity(events.len());
    for (i, ((posted, insert), body)) in events.iter().zip(&inserted).zip(bodies).enumerate() {
        let duplicate = *insert == EventInsert::Exists;
        let (event, body) = match &as_stored[i] {
            Some(stored) => (
                stored,
                serde_json::to_string(stored).expect("an event serialises"),
            ),
            None => (posted, body),
        };
        if !first_in_request[i] {
        } else if fanned_out_here[i].is_some() {
            direct.push(ToFanOut {
                event,
                again: duplicate,
                // An event that existed keeps the list it was stored with.
                listed: !duplicate,
            });
        } else {
            messages.push(OutgoingMessage {
                id: messages.len().to_string(),
                body: if duplicate {
                    EventMessage::again(body)
                } else {
                    body
                },
                delay: Duration::ZERO,
                held_for: None,
            });
        }
        results.push(Accepted {
            id: event.id.clone(),
            duplicate,
        });
    }
    if !direct.is_empty() {
        Plan::of(services, &direct, |account| &small[account])
            .carry_out(services)
            .await?;
    }
    services.events_queue.send_batch(messages).await?;
    Ok(results)
}

/// Each event posted again (stored before, first in its request) as it goes out again:
/// with the receipt time it was stored with, not this request's. Its deliveries' ids begin
/// with that time (`DeliveryId::of`), so they are the ids it was first sent under, and
/// deliver's recheck finds what was sent. `None`: the event as posted.
async fn as_first_received(
    services: &Services,
    events: &[Event],
    inserted: &[EventInsert],
    first_in_request: &[bool],
) -> crate::Result<Vec<Option<Event>>> {
    let reads =
        events.iter().zip(inserted).zip(first_in_request).map(
            |((event, insert), first)| async move {
                if *insert != EventInsert::Exists || !first {
                    return Ok(None);
                }
                // Unreadable, the request fails (and is retried): sent under other ids, the
                // event's deliveries could reach their endpoints twice.
                let stored = services.events.get(&event.account_id, &event.id).await?;
                Ok::<_, crate::Error>(stored.filter(|s| s.received_at != event.received_at).map(
                    |s| Event {
                        received_at: s.received_at,
                        ..event.clone()
                    },
                ))
            },
        );
    futures::future::try_join_all(reads).await
}

/// The subscriptions of each account of `events` that has few enough for ingest to fan
/// out itself. One read per account, of at most one page; an account whose subscriptions
/// cannot be read is left to fan-out.
async fn small_accounts(
    services: &Services,
    events: &[Event],
) -> HashMap<AccountId, Vec<Subscription>> {
    let mut small = HashMap::new();
    let mut seen = HashSet::new();
    for event in events {
        if !seen.insert(&event.account_id) {
            continue;
        }
        // One more than the most: a full answer means there are more.
        let most = DIRECT_FAN_OUT_MAX_SUBSCRIPTIONS;
        match services
            .subscriptions
            .list(&event.account_id, None, most + 1)
            .await
        {
            Ok(subs) if subs.len() <= most => {
                small.insert(event.account_id.clone(), subs);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, account_id = %event.account_id, "could not read the subscriptions; the events go to fan-out");
            }
        }
    }
    small
}

/// A message of the events queue: the event, and whether it was enqueued before.
#[derive(Debug, serde::Deserialize)]
pub struct EventMessage {
    #[serde(flatten)]
    pub event: Event,
    /// The event was posted again (or its message redelivered): some of its deliveries may
    /// already be logged.
    #[serde(default)]
    pub again: bool,
}

impl EventMessage {
    /// `body` (an event's JSON object) marked as enqueued before.
    fn again(mut body: String) -> String {
        debug_assert!(body.ends_with('}'));
        body.pop();
        body.push_str(",\"again\":true}");
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_enqueued_again_reads_back_with_its_flag() {
        let event = serde_json::json!({
            "id": "evt_1", "type": "call.ended", "account_id": "acct_1",
            "occurred_at": "2026-11-30T00:00:00Z", "received_at": 5, "data": {"a": 1}
        })
        .to_string();
        let first: EventMessage = serde_json::from_str(&event).unwrap();
        assert!(!first.again);
        let again: EventMessage = serde_json::from_str(&EventMessage::again(event)).unwrap();
        assert!(again.again);
        assert_eq!(again.event, first.event);
    }
}
