//! Subscriptions, replaced whole by `put` and only on the version read by `put_if_version`,
//! as the embedded adapter's conditional update does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use app::ports::SubscriptionStore;
use app::Result;
use domain::ids::{AccountId, SubscriptionId};
use domain::subscription::Subscription;

/// Subscriptions by (account, id): an account's are adjacent, in id order.
#[derive(Default)]
pub struct MemorySubscriptionStore {
    records: Mutex<BTreeMap<(String, String), Subscription>>,
}

impl MemorySubscriptionStore {
    pub fn new() -> Self {
        Self::default()
    }
}

fn key(account_id: &str, id: &str) -> (String, String) {
    (account_id.to_string(), id.to_string())
}

/// An account's subscriptions, in id order.
fn of_account<'a>(
    records: &'a BTreeMap<(String, String), Subscription>,
    account_id: &'a str,
) -> impl Iterator<Item = &'a Subscription> {
    records
        .range(key(account_id, "")..)
        .take_while(move |((account, _), _)| account == account_id)
        .map(|(_, s)| s)
}

#[async_trait]
impl SubscriptionStore for MemorySubscriptionStore {
    async fn put(&self, subscription: &Subscription) -> Result<()> {
        lock(&self.records)?.insert(
            key(&subscription.account_id, &subscription.id),
            subscription.clone(),
        );
        Ok(())
    }

    async fn put_if_version(&self, subscription: &Subscription, expected: u64) -> Result<bool> {
        let mut records = lock(&self.records)?;
        match records.get_mut(&key(&subscription.account_id, &subscription.id)) {
            Some(stored) if stored.version == expected => {
                *stored = subscription.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn get(
        &self,
        account_id: &AccountId,
        id: &SubscriptionId,
    ) -> Result<Option<Subscription>> {
        Ok(lock(&self.records)?.get(&key(account_id, id)).cloned())
    }

    async fn get_many(&self, keys: &[(AccountId, SubscriptionId)]) -> Result<Vec<Subscription>> {
        let records = lock(&self.records)?;
        // Each found subscription once, however often it is asked for (as `IN` does).
        let keys: BTreeSet<(String, String)> = keys.iter().map(|(a, i)| key(a, i)).collect();
        Ok(keys
            .into_iter()
            .filter_map(|k| records.get(&k).cloned())
            .collect())
    }

    async fn list(
        &self,
        account_id: &AccountId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Subscription>> {
        let records = lock(&self.records)?;
        let after = after.unwrap_or("");
        Ok(of_account(&records, account_id)
            .filter(|s| s.id.as_str() > after)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn list_all(&self, account_id: &AccountId) -> Result<Vec<Subscription>> {
        let records = lock(&self.records)?;
        Ok(of_account(&records, account_id).cloned().collect())
    }

    async fn delete(&self, account_id: &AccountId, id: &SubscriptionId) -> Result<bool> {
        Ok(lock(&self.records)?.remove(&key(account_id, id)).is_some())
    }
}
