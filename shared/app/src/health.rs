//! After a batch is logged: keeps each endpoint's health on its subscription, disables an
//! endpoint that is gone or has failed for too long, and announces it as a
//! `webhook.disabled` event to the account's subscriptions that want it.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use crate::ingest::store_and_enqueue;
use crate::Services;
use domain::backoff::Backoff;
use domain::catalog::EventType;
use domain::event::Event;
use domain::health::{self, DisableCause, HealthChange, Observed};
use domain::ids::{AccountId, EventId, SubscriptionId};
use domain::random::Random;
use domain::subscription::Subscription;
use domain::time::Timestamp;

pub const DISABLED_EVENT_TYPE: &str = "webhook.disabled";

/// Conditional writes lost to concurrent edits before giving up until the next batch.
const MAX_CONFLICTS: usize = 5;

/// `snapshot` is what the batch read; only a subscription whose health the batch changes
/// is read again and written, so a healthy endpoint costs no extra storage call.
pub async fn track(
    services: &Services,
    snapshot: &HashMap<(AccountId, SubscriptionId), Subscription>,
    observed: &HashMap<(AccountId, SubscriptionId), Observed>,
) {
    let now = services.clock.now();
    let period = services.settings.auto_disable_after;
    for (key, seen) in observed {
        let Some(known) = snapshot.get(key) else {
            continue;
        };
        if health::apply(&mut known.clone(), seen, now, period).is_none() {
            continue;
        }
        update(services, &key.0, &key.1, seen, now, period).await;
    }
}

/// Re-reads, re-decides and writes on the version read, so neither a customer's edit nor
/// another batch's verdict is overwritten.
async fn update(
    services: &Services,
    account_id: &AccountId,
    id: &SubscriptionId,
    seen: &Observed,
    now: Timestamp,
    period: Duration,
) {
    for _ in 0..MAX_CONFLICTS {
        let mut sub = match services.subscriptions.get(account_id, id).await {
            Ok(Some(sub)) => sub,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(subscription_id = %id, error = %e, "could not read endpoint health; the next batch will");
                return;
            }
        };
        let expected = sub.version;
        let Some(change) = health::apply(&mut sub, seen, now, period) else {
            return;
        };
        sub.version += 1;
        if matches!(change, HealthChange::Disabled(_)) {
            sub.updated_at = now;
        }
        match services.subscriptions.put_if_version(&sub, expected).await {
            Ok(true) => {
                if let HealthChange::Disabled(cause) = change {
                    announce(services, &sub, cause).await;
                }
                return;
            }
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(subscription_id = %id, error = %e, "could not record endpoint health; the next batch will");
                return;
            }
        }
    }
    tracing::warn!(
        subscription_id = %id,
        "endpoint health not recorded: the subscription kept changing; the next batch will"
    );
}

/// The operational event telling the account an endpoint was disabled.
pub fn disabled_event(
    sub: &Subscription,
    cause: DisableCause,
    now: Timestamp,
    random: &dyn Random,
) -> Event {
    let occurred_at = sub.disabled_at.unwrap_or(now).to_rfc3339();
    Event {
        id: EventId::generate(now, random),
        event_type: EventType::known(DISABLED_EVENT_TYPE)
            .expect("the disabled event's type is in the catalog"),
        account_id: sub.account_id.clone(),
        occurred_at: occurred_at.clone(),
        received_at: now,
        data: json!({
            "webhook_id": sub.id,
            "url": sub.url,
            "reason": cause.code(),
            "message": sub.disabled_reason,
            "failing_since": sub.failing_since.map(Timestamp::to_rfc3339),
            "disabled_at": occurred_at,
        }),
    }
}

#[tracing::instrument(skip_all, fields(subscription_id = %sub.id, account_id = %sub.account_id))]
async fn announce(services: &Services, sub: &Subscription, cause: DisableCause) {
    tracing::warn!(
        subscription_id = %sub.id,
        account_id = %sub.account_id,
        reason = cause.code(),
        "endpoint disabled: {}",
        sub.disabled_reason.as_deref().unwrap_or_default()
    );
    let event = disabled_event(sub, cause, services.clock.now(), &*services.random);
    // The disable is already written; the announcement is worth a few tries of its own.
    let mut delays = Backoff::new(Duration::from_millis(50), 4, Duration::from_secs(5), 3);
    loop {
        match store_and_enqueue(services, std::slice::from_ref(&event)).await {
            Ok(_) => return,
            Err(e) if e.retryable() => match delays.next() {
                Some(delay) => {
                    tracing::warn!(subscription_id = %sub.id, error = %e, "could not announce a disabled endpoint; trying again");
                    tokio::time::sleep(delay).await;
                }
                None => break,
            },
            Err(e) => {
                tracing::warn!(subscription_id = %sub.id, error = %e, "could not announce a disabled endpoint");
                break;
            }
        }
    }
    tracing::error!(subscription_id = %sub.id, event = %serde_json::to_string(&event).unwrap_or_default(), "a disabled endpoint was not announced");
}
