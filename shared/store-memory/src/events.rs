//! Events, deduplicated on (account, id).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use super::paging::{newest_first, Before};
use app::ports::{EventInsert, EventStore, Page};
use app::Result;
use domain::event::Event;
use domain::ids::{AccountId, EventId, SubscriptionId};

struct Stored {
    event: Event,
}

/// Events by (account, id): the first stored under a key stays.
#[derive(Default)]
pub struct MemoryEventStore {
    records: Mutex<BTreeMap<(String, String), Stored>>,
}

impl MemoryEventStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl EventStore for MemoryEventStore {
    /// The lists are not kept: this store indexes deliveries by event.
    async fn insert_batch_listing(
        &self,
        events: &[Event],
        _listed: &[Option<Vec<SubscriptionId>>],
    ) -> Result<Vec<EventInsert>> {
        self.insert_batch(events).await
    }

    async fn insert_batch(&self, events: &[Event]) -> Result<Vec<EventInsert>> {
        let mut records = lock(&self.records)?;
        Ok(events
            .iter()
            .map(|e| {
                let key = (e.account_id.to_string(), e.id.to_string());
                match records.get(&key) {
                    Some(_) => EventInsert::Exists,
                    None => {
                        records.insert(key, Stored { event: e.clone() });
                        EventInsert::Created
                    }
                }
            })
            .collect())
    }

    async fn get(&self, account_id: &AccountId, id: &EventId) -> Result<Option<Event>> {
        let key = (account_id.to_string(), id.to_string());
        Ok(lock(&self.records)?.get(&key).map(|s| s.event.clone()))
    }

    async fn list(
        &self,
        account_id: &AccountId,
        event_type: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Event>> {
        let before = Before::parse(cursor)?;
        let records = lock(&self.records)?;
        let of_account = records
            .range((account_id.to_string(), String::new())..)
            .take_while(|((account, _), _)| account == account_id.as_str())
            .map(|(_, s)| &s.event)
            .filter(|e| event_type.is_none_or(|t| e.event_type.as_str() == t));
        let page = newest_first(of_account, &before, limit, |e| {
            (e.received_at.as_millis(), e.id.as_str())
        });
        Ok(Page {
            items: page.items.into_iter().cloned().collect(),
            next_cursor: page.next_cursor,
        })
    }
}
