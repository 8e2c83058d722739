use async_trait::async_trait;

use crate::domain::delivery::{Attempt, Delivery, DeliveryUpdate};
use crate::Result;

#[async_trait]
pub trait DeliveryLog: Send + Sync {
    /// Creates each delivery unless its id exists; says which were created.
    async fn create_batch(&self, deliveries: &[Delivery]) -> Result<Vec<bool>>;
    /// Applies a batch of outcomes. An update's attempt is appended with the next attempt
    /// number (the number it carries is ignored) and counted on the delivery.
    async fn record(&self, updates: &[DeliveryUpdate]) -> Result<()>;
    async fn get(&self, account_id: &str, id: &str) -> Result<Option<Delivery>>;
    /// Oldest first.
    async fn attempts(&self, account_id: &str, id: &str) -> Result<Vec<Attempt>>;
    async fn list_for_event(&self, account_id: &str, event_id: &str) -> Result<Vec<Delivery>>;
}
