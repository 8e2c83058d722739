use async_trait::async_trait;

use super::Page;
use crate::Result;
use domain::event::Event;
use domain::ids::{AccountId, EventId};

#[derive(Debug, Clone, PartialEq)]
pub enum EventInsert {
    Created,
    /// An event with this (account, id) exists. Whether it reached the events queue is not
    /// kept (that would write the event twice): it is enqueued again, and fan-out's
    /// recheck (`DeliveryTask::recheck`) sends none of its deliveries twice.
    Exists,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores each event unless its (account_id, id) is already stored.
    async fn insert_batch(&self, events: &[Event]) -> Result<Vec<EventInsert>>;
    async fn get(&self, account_id: &AccountId, id: &EventId) -> Result<Option<Event>>;
    /// An account's events, newest first, optionally of one type.
    async fn list(
        &self,
        account_id: &AccountId,
        event_type: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Event>>;
}
