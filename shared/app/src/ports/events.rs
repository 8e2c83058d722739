use async_trait::async_trait;

use super::Page;
use crate::Result;
use domain::event::Event;
use domain::ids::{AccountId, EventId, SubscriptionId};

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
    /// As `insert_batch`, given for each event the subscriptions it is about to be fanned
    /// out to by the same caller (`None`: fanned out later, by another step). A store that
    /// indexes deliveries by event needs nothing more and may ignore the lists. One that
    /// pays for each index entry (DynamoDB) keeps a created event's list with it, so that
    /// `DeliveryLog::list_for_event` finds those deliveries from the event, and their tasks
    /// say so (`DeliveryTask::listed_on_event`). An event that exists keeps its own. No
    /// default: a wrapper that forwarded only `insert_batch` would drop the lists while the
    /// tasks still said they were kept.
    async fn insert_batch_listing(
        &self,
        events: &[Event],
        listed: &[Option<Vec<SubscriptionId>>],
    ) -> Result<Vec<EventInsert>>;
    async fn get(&self, account_id: &AccountId, id: &EventId) -> Result<Option<Event>>;
    /// An account's events, newest first, optionally of one type. A page may hold fewer
    /// than `limit` (even none) and still have a next: a backend may bound what one page
    /// reads.
    async fn list(
        &self,
        account_id: &AccountId,
        event_type: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Event>>;
}
