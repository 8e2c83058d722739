//! Ingest: accepted events are stored once (deduplicated on account and id) and put on the
//! events queue. The HTTP route that validates what producers post lives in the HTTP layer.

use std::time::Duration;

use serde::Serialize;

use crate::ports::{EventInsert, OutgoingMessage, MAX_MESSAGE_BYTES};
use crate::Services;
use domain::event::Event;
use domain::ids::EventId;

/// What ingest answers for one event.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    pub id: EventId,
    /// An event with this id was accepted before; nothing new is delivered.
    pub duplicate: bool,
}

/// Stores the events (deduplicated on account and id), then enqueues the new ones and any
/// earlier copy that never reached the queue, then marks them enqueued. If the queue fails
/// the caller gets a 503 and may retry with the same ids: nothing is lost or doubled. An
/// event too large for a queue message is refused before anything is stored
/// ([`crate::Error::TooLarge`]): retrying it could never succeed. The service's own
/// operational events take the same way.
#[tracing::instrument(name = "ingest", skip_all, fields(events = events.len()))]
pub async fn store_and_enqueue(
    services: &Services,
    events: &[Event],
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
    let inserted = services.events.insert_batch(events).await?;
    let mut messages = Vec::new();
    let mut keys = Vec::new();
    let mut results = Vec::with_capacity(events.len());
    for (i, ((event, insert), body)) in events.iter().zip(&inserted).zip(bodies).enumerate() {
        let first_in_request = events[..i]
            .iter()
            .all(|e| e.id != event.id || e.account_id != event.account_id);
        let needs_queue = matches!(
            insert,
            EventInsert::Created | EventInsert::Exists { enqueued: false }
        );
        if needs_queue && first_in_request {
            messages.push(OutgoingMessage {
                id: messages.len().to_string(),
                body,
                delay: Duration::ZERO,
            });
            keys.push((event.account_id.clone(), event.id.clone()));
        }
        results.push(Accepted {
            id: event.id.clone(),
            duplicate: !matches!(insert, EventInsert::Created),
        });
    }
    services.events_queue.send_batch(messages).await?;
    services.events.mark_enqueued(&keys).await?;
    Ok(results)
}
