//! What the deliveries queue gave up on. After too many receives (every one of them a
//! crash, a timeout or a throttle: the deliver use case retires a delivery itself, with its
//! history, long before) the queue moves a message on by its own redrive policy. That move
//! never passes through our code, so the delivery would stay `pending` for ever with no
//! message behind it (or, a first try, never be logged at all): not listed as dead, refused
//! by retry, skipped by recover. The queue
//! moves it to `deliveries-stranded` (see `topology`), and this consumer turns it into an
//! ordinary dead letter: marked `dead` in the log, so it is listed and can be redriven, and
//! its dead-letter message (with the attempts the log has) put on the dead-letter queue,
//! where the dead-letter alarm sees it.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};

use super::deliver::dead_letter_body;
use super::sqs::{set_aside, Record};
use crate::metrics::DeliveryMetrics;
use crate::ports::OutgoingMessage;
use crate::task_message;
use crate::{Result, Services};
use domain::delivery::{Delivery, DeliveryStatus, DeliveryTask};

/// The queue's name where it is told apart (logs, set-aside messages).
const QUEUE: &str = crate::topology::DELIVERIES_STRANDED.name;

/// Handles one batch of the stranded queue. A message whose delivery cannot be looked up
/// or marked comes back (and, after the queue's own limit, goes to the dead-letter queue
/// as it is); every other one is acknowledged.
#[tracing::instrument(name = "stranded", skip_all, fields(messages = batch.records.len()))]
pub async fn handle_stranded(services: &Services, batch: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut metrics = DeliveryMetrics::default();
    for message in &batch.records {
        let Some(record) = Record::from_message(message) else {
            tracing::error!("stranded queue record without id or body");
            continue;
        };
        // A pack (see `task_message`) strands all of its deliveries.
        let tasks = match task_message::parse(record.body) {
            Ok((tasks, _)) => tasks,
            Err(e) => {
                set_aside(services, QUEUE, &record, &e, &mut response).await;
                continue;
            }
        };
        let mut failed = false;
        for task in &tasks {
            match mark_dead(services, task, record.receive_count).await {
                Ok(true) => metrics.dead += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(delivery_id = %task.delivery_id, error = %e, "could not mark a stranded delivery dead; it will come back");
                    failed = true;
                }
            }
        }
        if failed {
            response.add_failure(record.message_id);
        }
    }
    if let Some(stage) = &services.settings.metrics_stage {
        metrics.publish(stage, services.clock.now_ms());
    }
    response
}

/// Marks the task's delivery dead if it is still pending as it was, or logs it dead if it
/// is not logged at all (a first try whose every receive crashed: a delivery is logged from
/// its first outcome); says whether it did. A delivery that has an outcome already (a
/// duplicate message delivered it) is left as it is.
async fn mark_dead(services: &Services, task: &DeliveryTask, receives: u32) -> Result<bool> {
    let now = services.clock.now();
    let delivery = match services
        .deliveries
        .get(&task.account_id, &task.delivery_id)
        .await?
    {
        // Created only if still absent: an outcome logged meanwhile stands.
        None => {
            let dead = Delivery {
                id: task.delivery_id.clone(),
                account_id: task.account_id.clone(),
                subscription_id: task.subscription_id.clone(),
                event_id: task.event_id.clone(),
                event_type: task.event_type.clone(),
                status: DeliveryStatus::Dead,
                attempt_count: 0,
                created_at: task.created_at.unwrap_or(now),
                updated_at: now,
                next_attempt_at: None,
                last_error: Some(format!(
                    "the deliveries queue gave up after {receives} receives without an outcome"
                )),
                last_latency_ms: None,
            };
            let created = services
                .deliveries
                .create_batch(std::slice::from_ref(&dead))
                .await?;
            if created != [true] {
                return Ok(false);
            }
            dead
        }
        Some(delivery) if delivery.status != DeliveryStatus::Pending => return Ok(false),
        Some(delivery) => {
            let moved = services
                .deliveries
                .move_status(
                    &delivery.account_id,
                    &delivery.id,
                    (DeliveryStatus::Pending, delivery.attempt_count),
                    DeliveryStatus::Dead,
                    now,
                )
                .await?;
            if !moved {
                // An outcome was logged meanwhile: it stands.
                return Ok(false);
            }
            delivery
        }
    };
    tracing::warn!(
        delivery_id = %delivery.id,
        account_id = %delivery.account_id,
        subscription_id = %delivery.subscription_id,
        attempts = delivery.attempt_count,
        receives,
        "the deliveries queue gave up on a delivery after too many receives; marked dead"
    );
    // The log is the record (the dead letters listed and redriven come from it); the
    // message is for the alarm and a human. Failing to write it does not undo the mark, and
    // retrying would find the delivery dead and write nothing: it is logged instead.
    let attempts = services
        .deliveries
        .attempts(&task.account_id, &task.delivery_id)
        .await
        .unwrap_or_default();
    let sent = services
        .dead_letter_queue
        .send_batch(vec![OutgoingMessage {
            id: "0".into(),
            body: dead_letter_body(task, &attempts, now),
            delay: Duration::ZERO,
            held_for: None,
        }])
        .await;
    if let Err(e) = sent {
        tracing::error!(delivery_id = %delivery.id, error = %e, "a stranded delivery is marked dead, but its dead-letter message could not be sent");
    }
    Ok(true)
}
