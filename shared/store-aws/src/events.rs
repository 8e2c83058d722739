use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use super::attributes::{expired, get_s, ms, n, now_secs, s, Item};
use app::ports::Page;

pub const BY_TIME_INDEX: &str = "by_time";
/// An event's attribute listing the subscriptions ingest fanned it out to.
const FANNED_OUT_TO: &str = "fanned_out_to";
const BY_TIME_KEYS: &[&str] = &["account_id", "id", "received_at"];
use super::paging::page_of_items;
use super::storage_error;
use app::ports::{EventInsert, EventStore};
use app::{Error, Result};
use domain::event::Event;
use domain::ids::{AccountId, EventId, SubscriptionId};

/// Table `events`: partition `account_id`, sort `id`; the event's JSON deflated in `docz`
/// (items written before layout 2 hold it as text in `doc`, and may carry `enqueued`,
/// which nothing reads now), the subscriptions ingest fanned it out to in
/// `fanned_out_to` (a string set; absent when none, or fanned out by the fan-out function)
/// and a TTL in `expires_at`, written once. The index `by_time`
/// (`account_id`, by `received_at`) lists an account's events newest first.
pub struct DynamoEventStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    retention: Duration,
}

impl DynamoEventStore {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        retention: Duration,
    ) -> Self {
        DynamoEventStore {
            client,
            table: table.into(),
            retention,
        }
    }

    fn key(account_id: &str, id: &str) -> Item {
        HashMap::from([
            ("account_id".to_string(), s(account_id)),
            ("id".to_string(), s(id)),
        ])
    }

    /// A conditional put: the event is written only if absent (or expired), with the
    /// subscriptions ingest fans it out to, if any (see `listed_subscriptions`).
    async fn insert(
        &self,
        event: &Event,
        listed: Option<&[SubscriptionId]>,
    ) -> Result<EventInsert> {
        let doc = serde_json::to_string(event).map_err(|e| Error::storage(e.to_string()))?;
        let now_secs = event.received_at.as_millis() / 1000;
        let mut item = Self::key(&event.account_id, &event.id);
        item.insert("type".into(), s(event.event_type.as_str()));
        item.insert("received_at".into(), ms(event.received_at));
        item.insert(
            "expires_at".into(),
            n(now_secs + self.retention.as_secs() as i64),
        );
        item.insert("docz".into(), AttributeValue::B(Blob::new(compress(&doc))));
        // A string set cannot be empty: no attribute lists none.
        if let Some(subs) = listed.filter(|l| !l.is_empty()) {
            item.insert(
                FANNED_OUT_TO.into(),
                AttributeValue::Ss(subs.iter().map(|s| s.to_string()).collect()),
            );
        }
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(id) OR expires_at <= :now")
            .expression_attribute_values(":now", n(now_secs))
            .send()
            .await;
        match result {
            Ok(_) => Ok(EventInsert::Created),
            Err(err) => match err.into_service_error() {
                PutItemError::ConditionalCheckFailedException(_) => Ok(EventInsert::Exists),
                other => Err(storage_error(other)),
            },
        }
    }

    async fn read(&self, account_id: &str, id: &str) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(account_id, id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(storage_error)?;
        Ok(out.item().filter(|i| !expired(i, now_secs())).cloned())
    }
}

/// The events' JSON, deflated: a 1.5 KB event of prose compresses to well under the 1 KB
/// of one write unit, for the item and again for its `by_time` entry (which projects it).
/// Level 6 costs ingest some tens of microseconds per event.
fn compress(json: &str) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec(json.as_bytes(), 6)
}

/// The event an item holds, deflated (`docz`) or, written before layout 2, as text (`doc`).
fn event_of(item: &Item) -> Result<Event> {
    let corrupt = |e: String| Error::storage(format!("corrupt event: {e}"));
    match item.get("docz") {
        Some(AttributeValue::B(blob)) => {
            // Never more than an event can be: a corrupt item cannot inflate without end.
            let json = miniz_oxide::inflate::decompress_to_vec_with_limit(
                blob.as_ref(),
                2 * domain::event::MAX_EVENT_BYTES,
            )
            .map_err(|e| corrupt(format!("{e:?}")))?;
            serde_json::from_slice(&json).map_err(|e| corrupt(e.to_string()))
        }
        _ => serde_json::from_str(&get_s(item, "doc")?).map_err(|e| corrupt(e.to_string())),
    }
}

/// The subscriptions a stored event names as fanned out to by ingest: their deliveries are
/// not in the deliveries table's `by_event` index (see `DynamoDeliveryLog::list_for_event`).
/// None for an event fanned out by the fan-out function, or written before this list was.
pub(crate) async fn listed_subscriptions(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    account_id: &AccountId,
    event_id: &EventId,
) -> Result<Vec<SubscriptionId>> {
    let out = client
        .get_item()
        .table_name(table)
        .set_key(Some(DynamoEventStore::key(account_id, event_id)))
        .projection_expression("#f, expires_at")
        .expression_attribute_names("#f", FANNED_OUT_TO)
        .consistent_read(true)
        .send()
        .await
        .map_err(storage_error)?;
    let Some(item) = out.item().filter(|i| !expired(i, now_secs())) else {
        return Ok(Vec::new());
    };
    match item.get(FANNED_OUT_TO) {
        Some(AttributeValue::Ss(ids)) => ids
            .iter()
            .map(|id| {
                SubscriptionId::parse(id).map_err(|e| Error::storage(format!("corrupt event: {e}")))
            })
            .collect(),
        _ => Ok(Vec::new()),
    }
}

#[async_trait]
impl EventStore for DynamoEventStore {
    async fn insert_batch(&self, events: &[Event]) -> Result<Vec<EventInsert>> {
        self.insert_batch_listing(events, &vec![None; events.len()])
            .await
    }

    /// Keeps a created event's list in `fanned_out_to`.
    async fn insert_batch_listing(
        &self,
        events: &[Event],
        listed: &[Option<Vec<SubscriptionId>>],
    ) -> Result<Vec<EventInsert>> {
        // A key repeated within the batch is written once; its later copies are duplicates.
        let mut seen = HashSet::new();
        let firsts: Vec<bool> = events
            .iter()
            .map(|e| seen.insert((e.account_id.as_str(), e.id.as_str())))
            .collect();
        let writes = events
            .iter()
            .zip(listed.iter().chain(std::iter::repeat(&None)))
            .zip(&firsts)
            .filter(|(_, first)| **first)
            .map(|((e, listed), _)| self.insert(e, listed.as_deref()));
        let mut written = futures::future::try_join_all(writes).await?.into_iter();
        Ok(firsts
            .into_iter()
            .map(|first| match first {
                true => written.next().expect("one result per first occurrence"),
                false => EventInsert::Exists,
            })
            .collect())
    }

    async fn get(&self, account_id: &AccountId, id: &EventId) -> Result<Option<Event>> {
        self.read(account_id, id)
            .await?
            .map(|item| event_of(&item))
            .transpose()
    }

    async fn list(
        &self,
        account_id: &AccountId,
        event_type: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Event>> {
        let (items, next_cursor) = page_of_items(
            |start| {
                let query = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(BY_TIME_INDEX)
                    .key_condition_expression("account_id = :a")
                    .expression_attribute_values(":a", s(account_id.as_str()))
                    .scan_index_forward(false)
                    .set_exclusive_start_key(start);
                match event_type {
                    Some(t) => query
                        .filter_expression("#ty = :ty")
                        .expression_attribute_names("#ty", "type")
                        .expression_attribute_values(":ty", s(t)),
                    None => query,
                }
            },
            BY_TIME_KEYS,
            cursor,
            limit,
        )
        .await?;
        let events = items.iter().map(event_of).collect::<Result<_>>()?;
        Ok(Page {
            items: events,
            next_cursor,
        })
    }
}
