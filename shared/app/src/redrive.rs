//! Sending a delivery again: manual retry, dead-letter redrive and recovery all put a fresh
//! message on the deliveries queue. A new message starts a new receive count, so the
//! delivery gets a fresh attempt budget; its id, and so its `webhook-id`, stay the same.

use std::time::Duration;

use crate::ports::OutgoingMessage;
use crate::{Result, Services};
use domain::delivery::{Delivery, DeliveryStatus, DeliveryTask, Payload};

/// Whether a delivery in this status may be sent again. A pending one already has a
/// message on the queue; sending another would run two attempt streams at once.
pub fn can_redrive(status: DeliveryStatus) -> bool {
    !matches!(status, DeliveryStatus::Pending)
}

/// Re-enqueues the given deliveries (all of one account) and marks them pending; says how
/// many. Each is marked first, and only if it is still as it was read: a delivery whose
/// outcome changed meanwhile (another redrive, a late attempt) is left alone. Marked, then
/// sent: the deliver handler, however fast, finds it pending and its outcome stands. Marking
/// after sending let a fast outcome be overwritten with `pending`, and the delivery then
/// waited for ever for a message already gone. If the send fails, the marks are undone.
#[tracing::instrument(name = "redrive", skip_all, fields(deliveries = deliveries.len()))]
pub async fn redrive(services: &Services, deliveries: &[Delivery]) -> Result<usize> {
    let mut messages = Vec::new();
    let mut marked = Vec::new();
    let now = services.clock.now();
    for d in deliveries.iter().filter(|d| can_redrive(d.status)) {
        let Some(event) = services.events.get(&d.account_id, &d.event_id).await? else {
            // The event has passed its retention: nothing left to send.
            tracing::warn!(delivery_id = %d.id, "cannot redrive: the event has expired");
            continue;
        };
        let from = (d.status, d.attempt_count);
        if !services
            .deliveries
            .move_status(&d.account_id, &d.id, from, DeliveryStatus::Pending, now)
            .await?
        {
            tracing::info!(delivery_id = %d.id, "not redriven: it changed since it was read");
            continue;
        }
        marked.push(d);
        let task = DeliveryTask {
            logged: true,
            ..d.task(Payload::of(&event))
        };
        messages.push(OutgoingMessage {
            id: messages.len().to_string(),
            body: serde_json::to_string(&task).expect("a delivery task serialises"),
            delay: Duration::ZERO,
            held_for: None,
        });
    }
    if let Err(e) = services.deliveries_queue.send_batch(messages).await {
        // Some messages may have gone out; a delivery whose attempt already ran has a new
        // count and is not moved back. If the undo fails too, the delivery stays pending
        // without a message: the error line names it for an operator.
        for d in &marked {
            let undone = services
                .deliveries
                .move_status(
                    &d.account_id,
                    &d.id,
                    (DeliveryStatus::Pending, d.attempt_count),
                    d.status,
                    services.clock.now(),
                )
                .await;
            if let Err(undo) = undone {
                tracing::error!(delivery_id = %d.id, error = %undo, "a failed redrive could not be undone");
            }
        }
        return Err(e);
    }
    Ok(marked.len())
}
