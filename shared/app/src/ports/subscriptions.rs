use async_trait::async_trait;

use crate::Result;
use domain::ids::{AccountId, SubscriptionId};
use domain::subscription::Subscription;

#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Creates or replaces.
    async fn put(&self, subscription: &Subscription) -> Result<()>;
    /// Replaces the stored subscription only if its `version` is still `expected_version`
    /// (the caller bumps `subscription.version`); false when it changed meanwhile or is gone.
    async fn put_if_version(
        &self,
        subscription: &Subscription,
        expected_version: u64,
    ) -> Result<bool>;
    async fn get(
        &self,
        account_id: &AccountId,
        id: &SubscriptionId,
    ) -> Result<Option<Subscription>>;
    /// Many by (account_id, id), in no particular order; missing ones are left out.
    async fn get_many(&self, keys: &[(AccountId, SubscriptionId)]) -> Result<Vec<Subscription>>;
    /// A page of an account's subscriptions in id order, after the cursor id.
    async fn list(
        &self,
        account_id: &AccountId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Subscription>>;
    /// Every subscription of an account, for fan-out.
    async fn list_all(&self, account_id: &AccountId) -> Result<Vec<Subscription>>;
    /// Whether it existed.
    async fn delete(&self, account_id: &AccountId, id: &SubscriptionId) -> Result<bool>;
}
