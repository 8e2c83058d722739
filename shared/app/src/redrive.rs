//! Sending a delivery again: manual retry, dead-letter redrive and recovery all put a fresh
//! message on the deliveries queue. A new message starts a new receive count, so the
//! delivery gets a fresh attempt budget; its id, and so its `webhook-id`, stay the same.

use std::time::Duration;

use crate::ports::OutgoingMessage;
use crate::{Error, Result, Services};
use domain::delivery::{Delivery, DeliveryStatus, DeliveryTask, DeliveryUpdate};

/// Whether a delivery in this status may be sent again. A pending one already has a
/// message on the queue; sending another would run two attempt streams at once.
pub fn can_redrive(status: DeliveryStatus) -> bool {
    !matches!(status, DeliveryStatus::Pending)
}

/// Re-enqueues the given deliveries (all of one account) and marks them pending.
pub async fn redrive(services: &Services, deliveries: &[Delivery]) -> Result<usize> {
    let mut messages = Vec::new();
    let mut updates = Vec::new();
    let now = services.clock.now_ms();
    for d in deliveries.iter().filter(|d| can_redrive(d.status)) {
        let Some(event) = services.events.get(&d.account_id, &d.event_id).await? else {
            // The event has passed its retention: nothing left to send.
            tracing::warn!(delivery_id = %d.id, "cannot redrive: the event has expired");
            continue;
        };
        let task = DeliveryTask {
            delivery_id: d.id.clone(),
            account_id: d.account_id.clone(),
            subscription_id: d.subscription_id.clone(),
            event_id: d.event_id.clone(),
            event_type: d.event_type.clone(),
            payload: event.payload(),
            prior_receives: 0,
        };
        messages.push(OutgoingMessage {
            id: messages.len().to_string(),
            body: serde_json::to_string(&task).map_err(|e| Error::Storage(e.to_string()))?,
            delay: Duration::ZERO,
        });
        updates.push(DeliveryUpdate {
            delivery_id: d.id.clone(),
            account_id: d.account_id.clone(),
            status: DeliveryStatus::Pending,
            attempt: None,
            next_attempt_at: Some(now),
            error: None,
            at: now,
        });
    }
    // Sent first: if marking fails, the delivery still goes out and the deliver handler
    // records its outcome. Marking first could leave a delivery pending with no message,
    // refused every later redrive.
    services.deliveries_queue.send_batch(messages).await?;
    services.deliveries.record(&updates).await?;
    Ok(updates.len())
}
