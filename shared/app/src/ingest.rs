//! Ingest: accepted events are stored once (deduplicated on account and id) and put on the
//! events queue. The HTTP route that validates what producers post lives in the HTTP layer.

use std::time::Duration;

use serde::Serialize;

use crate::ports::{EventInsert, OutgoingMessage};
use crate::Services;
use domain::event::Event;

/// What ingest answers for one event.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    pub id: String,
    /// An event with this id was accepted before; nothing new is delivered.
    pub duplicate: bool,
}

/// Stores the events (deduplicated on account and id), then enqueues the new ones and any
/// earlier copy that never reached the queue, then marks them enqueued. If the queue fails
/// the caller gets a 503 and may retry with the same ids: nothing is lost or doubled. The
/// service's own operational events take the same way.
#[tracing::instrument(name = "ingest", skip_all, fields(events = events.len()))]
pub async fn store_and_enqueue(
    services: &Services,
    events: &[Event],
) -> crate::Result<Vec<Accepted>> {
    let inserted = services.events.insert_batch(events).await?;
    let mut messages = Vec::new();
    let mut keys = Vec::new();
    let mut results = Vec::with_capacity(events.len());
    for (i, (event, insert)) in events.iter().zip(&inserted).enumerate() {
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
                body: serde_json::to_string(event).expect("an event serialises"),
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
