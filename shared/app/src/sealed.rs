//! A subscription store that seals secrets on the way in and opens them on the way out
//! (see `domain::sealing`), around any backend's store: the use cases see plaintext, the
//! backend never does.

use std::sync::Arc;

use async_trait::async_trait;

use crate::ports::SubscriptionStore;
use crate::{Error, Result};
use domain::ids::{AccountId, SubscriptionId};
use domain::random::Random;
use domain::sealing::Sealer;
use domain::subscription::Subscription;

pub struct SealedSubscriptions {
    inner: Arc<dyn SubscriptionStore>,
    sealer: Arc<Sealer>,
    random: Arc<dyn Random>,
}

impl SealedSubscriptions {
    pub fn new(
        inner: Arc<dyn SubscriptionStore>,
        sealer: Arc<Sealer>,
        random: Arc<dyn Random>,
    ) -> Self {
        SealedSubscriptions {
            inner,
            sealer,
            random,
        }
    }

    fn seal(&self, sub: &Subscription) -> Subscription {
        self.sealer.seal_subscription(sub, &*self.random)
    }

    /// A value that does not open is a stored row that was changed or sealed with another
    /// key: a permanent failure of that row, named, never a subscription with garbage for a
    /// secret.
    fn open(&self, sub: Subscription) -> Result<Subscription> {
        let (account, id) = (sub.account_id.clone(), sub.id.clone());
        self.sealer.open_subscription(sub).map_err(|e| {
            Error::Config(format!(
                "subscription {id} of account {account}: {e} (was the sealing key changed?)"
            ))
        })
    }

    fn open_all(&self, subs: Vec<Subscription>) -> Result<Vec<Subscription>> {
        subs.into_iter().map(|s| self.open(s)).collect()
    }
}

#[async_trait]
impl SubscriptionStore for SealedSubscriptions {
    async fn put(&self, subscription: &Subscription) -> Result<()> {
        self.inner.put(&self.seal(subscription)).await
    }

    async fn put_if_version(
        &self,
        subscription: &Subscription,
        expected_version: u64,
    ) -> Result<bool> {
        self.inner
            .put_if_version(&self.seal(subscription), expected_version)
            .await
    }

    async fn get(
        &self,
        account_id: &AccountId,
        id: &SubscriptionId,
    ) -> Result<Option<Subscription>> {
        self.inner
            .get(account_id, id)
            .await?
            .map(|s| self.open(s))
            .transpose()
    }

    async fn get_many(&self, keys: &[(AccountId, SubscriptionId)]) -> Result<Vec<Subscription>> {
        self.open_all(self.inner.get_many(keys).await?)
    }

    async fn list(
        &self,
        account_id: &AccountId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Subscription>> {
        self.open_all(self.inner.list(account_id, after, limit).await?)
    }

    async fn list_all(&self, account_id: &AccountId) -> Result<Vec<Subscription>> {
        self.open_all(self.inner.list_all(account_id).await?)
    }

    async fn delete(&self, account_id: &AccountId, id: &SubscriptionId) -> Result<bool> {
        self.inner.delete(account_id, id).await
    }
}
