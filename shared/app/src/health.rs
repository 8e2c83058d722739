//! After a batch is logged: keeps each endpoint's health on its subscription, disables an
//! endpoint that is gone or has failed for too long, and announces what changed as an
//! operational event (`webhook.failing`, `webhook.recovered`, `webhook.disabled`) to the
//! account's subscriptions that want it, never to the endpoint it is about.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use crate::ingest::store_and_enqueue;
use crate::Services;
use domain::backoff::Backoff;
use domain::catalog::EventType;
use domain::event::Event;
use domain::health::{self, DisableCause, HealthChange, HealthPolicy, Observed};
use domain::ids::{AccountId, EventId, SubscriptionId};
use domain::random::Random;
use domain::subscription::Subscription;
use domain::time::Timestamp;

pub const DISABLED_EVENT_TYPE: &str = "webhook.disabled";
pub const FAILING_EVENT_TYPE: &str = "webhook.failing";
pub const RECOVERED_EVENT_TYPE: &str = "webhook.recovered";
pub const DEAD_EVENT_TYPE: &str = "delivery.dead";

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
    let deployment = HealthPolicy {
        failing_after_failures: services.settings.failing_after_failures,
        auto_disable_after: services.settings.auto_disable_after,
    };
    let mut thresholds: HashMap<&AccountId, u32> = HashMap::new();
    for (key, seen) in observed {
        let Some(known) = snapshot.get(key) else {
            continue;
        };
        let mut policy = deployment;
        if seen.failures > 0 {
            // Read only for a batch with failures: a healthy endpoint costs no extra call.
            if !thresholds.contains_key(&key.0) {
                let own = account_threshold(services, &key.0).await;
                thresholds.insert(&key.0, own.unwrap_or(deployment.failing_after_failures));
            }
            policy.failing_after_failures = thresholds[&key.0];
        }
        if health::apply(&mut known.clone(), seen, now, policy).is_none() {
            continue;
        }
        update(services, &key.0, &key.1, seen, now, policy).await;
    }
}

/// The account's own `webhook.failing` threshold (its alert settings), if it set one. A
/// failed read falls back to the deployment's: health is tracked either way.
async fn account_threshold(services: &Services, account_id: &AccountId) -> Option<u32> {
    match services.alerts.settings(account_id).await {
        Ok(settings) => settings?.failing_after_failures,
        Err(e) => {
            tracing::warn!(account_id = %account_id, error = %e, "could not read the account's failure threshold; using the deployment's");
            None
        }
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
    policy: HealthPolicy,
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
        let failing_since = sub.failing_since;
        let Some(change) = health::apply(&mut sub, seen, now, policy) else {
            return;
        };
        sub.version += 1;
        if matches!(change, HealthChange::Disabled(_)) {
            sub.updated_at = now;
        }
        match services.subscriptions.put_if_version(&sub, expected).await {
            Ok(true) => {
                let event = match change {
                    HealthChange::Disabled(cause) => {
                        tracing::warn!(
                            subscription_id = %sub.id,
                            account_id = %sub.account_id,
                            reason = cause.code(),
                            "endpoint disabled: {}",
                            sub.disabled_reason.as_deref().unwrap_or_default()
                        );
                        Some(disabled_event(&sub, cause, now, &*services.random))
                    }
                    HealthChange::Failing { consecutive } => {
                        tracing::warn!(subscription_id = %sub.id, account_id = %sub.account_id, consecutive, "endpoint failing");
                        Some(failing_event(
                            &sub,
                            consecutive,
                            policy,
                            seen,
                            now,
                            &*services.random,
                        ))
                    }
                    HealthChange::Recovered { announced: true } => {
                        tracing::info!(subscription_id = %sub.id, account_id = %sub.account_id, "endpoint recovered");
                        Some(recovered_event(&sub, failing_since, now, &*services.random))
                    }
                    _ => None,
                };
                if let Some(event) = event {
                    announce(services, event).await;
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

/// An operational event of the account's, about `sub`, made now.
fn operational(
    sub: &Subscription,
    event_type: &str,
    occurred_at: Timestamp,
    now: Timestamp,
    random: &dyn Random,
    data: serde_json::Value,
) -> Event {
    Event {
        id: EventId::generate(now, random),
        event_type: EventType::known(event_type).expect("operational types are in the catalog"),
        account_id: sub.account_id.clone(),
        occurred_at: occurred_at.to_rfc3339(),
        received_at: now,
        data,
    }
}

/// `webhook.failing`: the endpoint crossed the threshold of failures in a row.
pub fn failing_event(
    sub: &Subscription,
    consecutive: u32,
    policy: HealthPolicy,
    seen: &Observed,
    now: Timestamp,
    random: &dyn Random,
) -> Event {
    let (last_error, cause) = seen.last_error.clone().unzip();
    operational(
        sub,
        FAILING_EVENT_TYPE,
        now,
        now,
        random,
        json!({
            "webhook_id": sub.id,
            "url": sub.url,
            "consecutive_failures": consecutive,
            "threshold": policy.failing_after_failures,
            "failing_since": sub.failing_since.unwrap_or(now).to_rfc3339(),
            "last_error": last_error,
            "cause": cause,
            "delivery_id": seen.last_failed_delivery,
        }),
    )
}

/// `webhook.recovered`: the first success after a run announced as failing.
pub fn recovered_event(
    sub: &Subscription,
    failing_since: Option<Timestamp>,
    now: Timestamp,
    random: &dyn Random,
) -> Event {
    operational(
        sub,
        RECOVERED_EVENT_TYPE,
        now,
        now,
        random,
        json!({
            "webhook_id": sub.id,
            "url": sub.url,
            "failing_since": failing_since.map(Timestamp::to_rfc3339),
            "recovered_at": now.to_rfc3339(),
        }),
    )
}

/// The operational event telling the account an endpoint was disabled.
pub fn disabled_event(
    sub: &Subscription,
    cause: DisableCause,
    now: Timestamp,
    random: &dyn Random,
) -> Event {
    let disabled_at = sub.disabled_at.unwrap_or(now);
    operational(
        sub,
        DISABLED_EVENT_TYPE,
        disabled_at,
        now,
        random,
        json!({
            "webhook_id": sub.id,
            "url": sub.url,
            "reason": cause.code(),
            "message": sub.disabled_reason,
            "failing_since": sub.failing_since.map(Timestamp::to_rfc3339),
            "disabled_at": disabled_at.to_rfc3339(),
        }),
    )
}

/// Stores and queues an operational event for fan-out. What it announces is already
/// written, so the announcement is worth a few tries of its own.
#[tracing::instrument(skip_all, fields(event_type = %event.event_type, account_id = %event.account_id))]
pub async fn announce(services: &Services, event: Event) {
    let about = event.about_webhook().unwrap_or_default().to_string();
    let mut delays = Backoff::new(Duration::from_millis(50), 4, Duration::from_secs(5), 3);
    loop {
        match store_and_enqueue(services, std::slice::from_ref(&event)).await {
            Ok(_) => return,
            Err(e) if e.retryable() => match delays.next() {
                Some(delay) => {
                    tracing::warn!(webhook_id = %about, error = %e, "could not announce; trying again");
                    tokio::time::sleep(delay).await;
                }
                None => break,
            },
            Err(e) => {
                tracing::warn!(webhook_id = %about, error = %e, "could not announce");
                break;
            }
        }
    }
    tracing::error!(webhook_id = %about, event = %serde_json::to_string(&event).unwrap_or_default(), "an operational event was not announced");
}
