//! The delivery log. An outcome and its attempt change together under one lock, so no
//! reader sees one without the other, and a batch of outcomes applies whole or not at all,
//! as one SQLite transaction.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use super::paging::{newest_first, Before};
use app::ports::{DeliveryLog, Page};
use app::Result;
use domain::delivery::{Attempt, Delivery, DeliveryStatus, DeliveryUpdate};
use domain::ids::{AccountId, DeliveryId, EventId, SubscriptionId};
use domain::stats::{roll_up, slot_deltas, SlotKey, SlotStats, StatsGrain, StatsSlot};
use domain::time::Timestamp;

struct Stored {
    delivery: Delivery,
    /// Oldest first, numbered from 1.
    attempts: Vec<Attempt>,
}

/// Deliveries by id (unique across accounts, as the embedded adapter's primary key), each
/// with its attempts.
#[derive(Default)]
pub struct MemoryDeliveryLog {
    records: Mutex<BTreeMap<DeliveryId, Stored>>,
    /// Taken while `records` is held, so a reader never sees an outcome without its stats.
    slots: Mutex<BTreeMap<SlotKey, SlotStats>>,
}

impl MemoryDeliveryLog {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The account's deliveries, in id order.
fn of_account<'a>(
    records: &'a BTreeMap<DeliveryId, Stored>,
    account_id: &'a AccountId,
) -> impl Iterator<Item = &'a Delivery> {
    records
        .values()
        .map(|s| &s.delivery)
        .filter(move |d| &d.account_id == account_id)
}

fn owned(page: Page<&Delivery>) -> Page<Delivery> {
    Page {
        items: page.items.into_iter().cloned().collect(),
        next_cursor: page.next_cursor,
    }
}

/// Applies one outcome to its delivery (see `DeliveryLog::record`).
fn apply(stored: &mut Stored, u: &DeliveryUpdate) {
    let d = &mut stored.delivery;
    // A delivery that is no longer pending keeps its outcome; only the attempt counts.
    let keeps_outcome = u.applies_only_while_pending() && d.status != DeliveryStatus::Pending;
    if !keeps_outcome {
        d.status = u.status;
        d.next_attempt_at = u.next_attempt_at;
        d.last_error = u.error.clone();
    }
    d.updated_at = u.at;
    if let Some(a) = &u.attempt {
        d.attempt_count += 1;
        d.last_latency_ms = Some(a.latency_ms);
        stored.attempts.push(Attempt {
            attempt: d.attempt_count,
            ..a.clone()
        });
    }
}

#[async_trait]
impl DeliveryLog for MemoryDeliveryLog {
    async fn create_batch(&self, deliveries: &[Delivery]) -> Result<Vec<bool>> {
        let mut records = lock(&self.records)?;
        Ok(deliveries
            .iter()
            .map(|d| {
                if records.contains_key(&d.id) {
                    return false;
                }
                records.insert(
                    d.id.clone(),
                    Stored {
                        delivery: d.clone(),
                        attempts: Vec::new(),
                    },
                );
                true
            })
            .collect())
    }

    /// Every attempt counts in the stats, even one refused: the request was made.
    async fn record(&self, updates: &[DeliveryUpdate]) -> Result<Vec<bool>> {
        let mut records = lock(&self.records)?;
        let mut slots = lock(&self.slots)?;
        for (key, delta) in slot_deltas(updates) {
            slots.entry(key).or_default().merge(&delta);
        }
        Ok(updates
            .iter()
            .map(|u| match records.get_mut(&u.delivery_id) {
                Some(stored) if stored.delivery.account_id == u.account_id => {
                    apply(stored, u);
                    true
                }
                Some(_) => false,
                None => {
                    let attempts = match &u.attempt {
                        Some(a) if u.kept_short_if_first() => vec![Attempt::first_success(
                            a.at,
                            a.url.clone(),
                            a.request_headers.clone(),
                            a.status_code.unwrap_or_default(),
                            a.latency_ms,
                        )],
                        Some(a) => vec![Attempt {
                            attempt: 1,
                            ..a.clone()
                        }],
                        None => Vec::new(),
                    };
                    records.insert(
                        u.delivery_id.clone(),
                        Stored {
                            delivery: u.first_of_its_delivery(),
                            attempts,
                        },
                    );
                    true
                }
            })
            .collect())
    }

    async fn move_status(
        &self,
        account_id: &AccountId,
        id: &DeliveryId,
        from: (DeliveryStatus, u32),
        to: DeliveryStatus,
        at: Timestamp,
    ) -> Result<bool> {
        let mut records = lock(&self.records)?;
        let Some(d) = records
            .get_mut(id)
            .map(|s| &mut s.delivery)
            .filter(|d| &d.account_id == account_id && (d.status, d.attempt_count) == from)
        else {
            return Ok(false);
        };
        d.status = to;
        d.updated_at = at;
        d.next_attempt_at = (to == DeliveryStatus::Pending).then_some(at);
        Ok(true)
    }

    async fn get(&self, account_id: &AccountId, id: &DeliveryId) -> Result<Option<Delivery>> {
        Ok(lock(&self.records)?
            .get(id)
            .map(|s| &s.delivery)
            .filter(|d| &d.account_id == account_id)
            .cloned())
    }

    async fn attempts(&self, account_id: &AccountId, id: &DeliveryId) -> Result<Vec<Attempt>> {
        Ok(lock(&self.records)?
            .get(id)
            .filter(|s| &s.delivery.account_id == account_id)
            .map(|s| s.attempts.clone())
            .unwrap_or_default())
    }

    async fn list_for_event(
        &self,
        account_id: &AccountId,
        event_id: &EventId,
    ) -> Result<Vec<Delivery>> {
        let records = lock(&self.records)?;
        let mut found: Vec<Delivery> = of_account(&records, account_id)
            .filter(|d| &d.event_id == event_id)
            .cloned()
            .collect();
        found.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(found)
    }

    async fn list_for_subscription(
        &self,
        account_id: &AccountId,
        subscription_id: &SubscriptionId,
        status: Option<DeliveryStatus>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        let before = Before::parse(cursor)?;
        let records = lock(&self.records)?;
        let matching = of_account(&records, account_id).filter(|d| {
            &d.subscription_id == subscription_id && status.is_none_or(|s| d.status == s)
        });
        Ok(owned(newest_first(matching, &before, limit, |d| {
            (d.created_at.as_millis(), d.id.as_str())
        })))
    }

    async fn list_dead(
        &self,
        account_id: &AccountId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        let before = Before::parse(cursor)?;
        let records = lock(&self.records)?;
        let dead = of_account(&records, account_id).filter(|d| d.status == DeliveryStatus::Dead);
        Ok(owned(newest_first(dead, &before, limit, |d| {
            (d.updated_at.as_millis(), d.id.as_str())
        })))
    }

    async fn overdue(
        &self,
        before: Timestamp,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        let records = lock(&self.records)?;
        let mut found: Vec<Delivery> = records
            .values()
            .map(|r| &r.delivery)
            .filter(|d| cursor.is_none_or(|after| d.id.as_str() > after))
            .filter(|d| {
                d.status == DeliveryStatus::Pending
                    && d.next_attempt_at.unwrap_or(d.updated_at) < before
            })
            .take(limit + 1)
            .cloned()
            .collect();
        let more = found.len() > limit;
        found.truncate(limit);
        let next_cursor = more
            .then(|| found.last().map(|d| d.id.to_string()))
            .flatten();
        Ok(Page {
            items: found,
            next_cursor,
        })
    }

    async fn stats_slots(
        &self,
        account_id: &AccountId,
        subscription_id: Option<&SubscriptionId>,
        since: Timestamp,
        grain: StatsGrain,
    ) -> Result<Vec<StatsSlot>> {
        let slots: Vec<StatsSlot> = lock(&self.slots)?
            .iter()
            .filter(|(key, _)| {
                &key.account_id == account_id
                    && subscription_id.is_none_or(|s| s == &key.subscription_id)
                    && key.start >= since
            })
            .map(|(key, stats)| StatsSlot {
                subscription_id: key.subscription_id.clone(),
                start: key.start,
                stats: stats.clone(),
            })
            .collect();
        // Only slots are kept: hours are summed on read.
        Ok(roll_up(slots, grain, since))
    }
}
