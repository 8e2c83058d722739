//! The sweep: finds deliveries left `pending` with no message behind them, and sends them
//! again. Every path that strands one is closed where it is known (a redrive undone when
//! its send fails, the queue's own give-ups consumed by `stranded`, fan-out re-sending on
//! a second receive), but not a crash between a redrive's mark and its send, a purged
//! queue or a message lost in some way not foreseen. A delivery with a message changes by
//! its due time; one overdue by more than the grace has none, or has been waiting that
//! long behind its endpoint's backlog or limits.
//!
//! A delivery of an enabled endpoint that is failing is left alone: its messages are
//! parked (see `limiter`) without the log knowing, so it may wait past any grace with a
//! message behind it. Once the endpoint answers again, a stranded one is found by the next
//! sweep. A paused or disabled endpoint's delivery is sent again: the deliver use case
//! settles it.
//!
//! Sending again when a message does exist after all (a backlog or a rate limit holding a
//! delivery longer than the grace, which is why the grace is long) makes one more copy per
//! grace period while it lasts: the receiver may see the same `webhook-id` more than once,
//! which at-least-once delivery allows, and never loses the event.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::ports::OutgoingMessage;
use crate::{Result, Services};
use domain::delivery::{Delivery, DeliveryStatus, Payload};
use domain::ids::{AccountId, SubscriptionId};

/// How long past its due time a pending delivery waits before the sweep sends it again:
/// far beyond any parking (10 min at most) or ordinary backlog, since a false positive is
/// a duplicate; the queue's own give-ups, the common case, are handled at once by
/// `stranded`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(6 * 3600);
/// How often the runner sweeps. On AWS a schedule in the template says it.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(600);
/// How long one sweep may read and send on the deliver function (its timeout is 60 s): it
/// stops between pages, and the next run starts elsewhere (see `DeliveryLog::overdue`).
pub const FUNCTION_BUDGET: Duration = Duration::from_secs(40);
/// Overdue deliveries read per page.
pub const PAGE: usize = 500;

/// What one run found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Pending past their due time and the grace.
    pub overdue: usize,
    /// Sent again.
    pub requeued: usize,
    /// Left alone: their endpoint is failing, so they may be parked.
    pub endpoint_failing: usize,
    /// Marked dead: the event is past its retention, there is nothing left to send.
    pub event_expired: usize,
    /// The run stopped at its time budget before it had read every overdue delivery.
    pub cut_short: bool,
}

/// One sweep, reading page after page until none is left or `budget` has passed. Each
/// page's deliveries are sent before the next is read, so a run cut short (or a function
/// timing out) leaves nothing marked and unsent.
#[tracing::instrument(name = "sweep", skip_all)]
pub async fn sweep(services: &Services, grace: Duration, budget: Duration) -> Result<SweepReport> {
    let started = std::time::Instant::now();
    let before = services
        .clock
        .now()
        .plus_millis(-(grace.as_millis() as i64));
    let mut report = SweepReport::default();
    let mut cursor: Option<String> = None;
    loop {
        let page = services
            .deliveries
            .overdue(before, cursor.as_deref(), PAGE)
            .await?;
        sweep_page(services, page.items, &mut report).await?;
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
        if started.elapsed() >= budget {
            report.cut_short = true;
            break;
        }
    }
    if report.requeued > 0 || report.event_expired > 0 || report.cut_short {
        tracing::warn!(?report, "sweep");
    }
    Ok(report)
}

async fn sweep_page(
    services: &Services,
    overdue: Vec<Delivery>,
    report: &mut SweepReport,
) -> Result<()> {
    report.overdue += overdue.len();
    if overdue.is_empty() {
        return Ok(());
    }
    let now = services.clock.now();
    let mut keys: Vec<(AccountId, SubscriptionId)> = overdue
        .iter()
        .map(|d| (d.account_id.clone(), d.subscription_id.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    let parked: HashMap<(AccountId, SubscriptionId), bool> = services
        .subscriptions
        .get_many(&keys)
        .await?
        .into_iter()
        .map(|s| {
            let parked = s.enabled && s.failing_since.is_some();
            ((s.account_id, s.id), parked)
        })
        .collect();

    let mut messages = Vec::new();
    for d in overdue {
        let key = (d.account_id.clone(), d.subscription_id.clone());
        if parked.get(&key).copied().unwrap_or(false) {
            report.endpoint_failing += 1;
            continue;
        }
        let from = (DeliveryStatus::Pending, d.attempt_count);
        let Some(event) = services.events.get(&d.account_id, &d.event_id).await? else {
            if services
                .deliveries
                .move_status(&d.account_id, &d.id, from, DeliveryStatus::Dead, now)
                .await?
            {
                tracing::warn!(delivery_id = %d.id, account_id = %d.account_id, "a stranded delivery's event has expired; marked dead");
                report.event_expired += 1;
            }
            continue;
        };
        // Rescheduled to now first, and only if nothing changed it since it was read: an
        // outcome logged meanwhile stands, and the next run does not find it again unless
        // this message is lost too.
        if !services
            .deliveries
            .move_status(&d.account_id, &d.id, from, DeliveryStatus::Pending, now)
            .await?
        {
            continue;
        }
        tracing::warn!(
            delivery_id = %d.id,
            account_id = %d.account_id,
            subscription_id = %d.subscription_id,
            due = %d.next_attempt_at.unwrap_or(d.updated_at),
            "a pending delivery was overdue with no sign of its message; sent again"
        );
        let mut task = d.task(Payload::of(&event));
        // Its attempt numbers go on from those already made.
        task.prior_receives = d.attempt_count;
        task.logged = true;
        messages.push(OutgoingMessage {
            id: messages.len().to_string(),
            body: serde_json::to_string(&task).expect("a delivery task serialises"),
            delay: Duration::ZERO,
            held_for: None,
        });
    }
    report.requeued += messages.len();
    // A failed send leaves them pending and rescheduled: a run after the grace finds them
    // again.
    services.deliveries_queue.send_batch(messages).await
}
