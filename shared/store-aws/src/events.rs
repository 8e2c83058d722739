use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use super::attributes::{decode_cursor, expired, get_s, n, now_secs, s, Item};
use app::ports::Page;

pub const BY_TIME_INDEX: &str = "by_time";
/// An event's attribute listing the subscriptions ingest fanned it out to.
const FANNED_OUT_TO: &str = "fanned_out_to";
const BY_TIME_KEYS: &[&str] = &["account_id", "id", "received_at"];
use super::listing::{
    decode_cursor_json, encode_cursor_json, is_listing_key, listing_column, listing_key, Candidate,
    ListingPosition, Listings, LISTED_IN,
};
use super::paging::{batch_get_items, page_of_items};
use super::storage_error;
use app::ports::{EventInsert, EventStore};
use app::{Error, Result};
use domain::event::Event;
use domain::ids::{AccountId, EventId, SubscriptionId};

/// Table `events`: partition `account_id`, sort `id`; the event's JSON deflated in `docz`
/// (items written before layout 2 hold it as text in `doc`, and may carry `enqueued`,
/// which nothing reads now), the subscriptions ingest fanned it out to in
/// `fanned_out_to` (a string set; absent when none, or fanned out by the fan-out function)
/// and a TTL in `expires_at`, written once.
///
/// **Listings, not an index entry per event** (see `listing`). An account's events are
/// listed newest first from listings in its partition, one per account and millisecond of
/// each stored batch (so one per request: a request's events share their time), naming
/// its events (`ids`) and their types (`types`). A batch of 100 events of an account costs
/// one listing of a few write units instead of 100 index writes; a lone event costs the
/// same one unit as before.
///
/// Events written before listings carry `received_at` and sit in the index `by_time`
/// (`account_id`, by `received_at`): they are listed after every listed event, being older
/// (while an older version still runs beside this one in a deployment, the few events it
/// writes are listed after the new ones). New events leave `received_at` out and are not in
/// the index. Once the retention has passed since the upgrade and DynamoDB has deleted the
/// expired events, the index is empty; dropping it then needs a version that no longer
/// reads it first ([`Self::indexed_page`]). A rollback to the version before would not list
/// the events written since (it reads only the index); `get` still finds them.
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

    fn expires_at_secs(&self, received_at: domain::time::Timestamp) -> i64 {
        received_at.as_millis() / 1000 + self.retention.as_secs() as i64
    }

    /// A conditional put: the event is written only if absent (or expired), naming the
    /// listing it is listed in and the subscriptions ingest fans it out to, if any (see
    /// `listed_subscriptions`).
    async fn insert(
        &self,
        event: &Event,
        listing: &str,
        listed: Option<&[SubscriptionId]>,
    ) -> Result<EventInsert> {
        let doc = serde_json::to_string(event).map_err(|e| Error::storage(e.to_string()))?;
        let now_secs = event.received_at.as_millis() / 1000;
        let mut item = Self::key(&event.account_id, &event.id);
        item.insert("type".into(), s(event.event_type.as_str()));
        item.insert(LISTED_IN.into(), s(listing));
        item.insert(
            "expires_at".into(),
            n(self.expires_at_secs(event.received_at)),
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

    /// Writes the listing of `events` (one account's, of one millisecond, in the batch's
    /// order) and says its sort key, which hashes their ids and types: the same request
    /// retried rewrites it, one that differs gets its own.
    async fn write_listing(&self, events: &[&Event]) -> Result<String> {
        let first = events[0];
        let key = listing_key(
            first.received_at.as_millis(),
            events
                .iter()
                .flat_map(|e| [e.id.as_str(), e.event_type.as_str()]),
        );
        let column = |f: fn(&Event) -> &str| events.iter().map(|e| f(e).to_string()).collect();
        self.listings(&first.account_id)
            .write(
                &key,
                vec![
                    ("ids", column(|e| e.id.as_str())),
                    ("types", column(|e| e.event_type.as_str())),
                ],
                self.expires_at_secs(first.received_at),
            )
            .await?;
        Ok(key)
    }

    fn listings(&self, account_id: &str) -> Listings<'_> {
        Listings {
            client: &self.client,
            table: &self.table,
            partition: ("account_id", account_id.to_string()),
            sort: "id",
        }
    }

    /// Up to `limit` listed events of an account (of `event_type`, if given), newest first,
    /// from the position `from` or from the newest; and where the next page starts when
    /// more listings follow. None: the listings are done, and what follows is in the
    /// `by_time` index. A page that looked through `listing::MOST_LISTINGS_PER_PAGE`
    /// listings ends there, short (even empty), with its position.
    async fn listed_page(
        &self,
        account_id: &AccountId,
        event_type: Option<&str>,
        from: Option<ListingPosition>,
        limit: usize,
    ) -> Result<(Vec<Event>, Option<ListingPosition>)> {
        // A listing older than the retention has expired: it is not read at all, though
        // DynamoDB may not have deleted it yet.
        let oldest_ms = (now_secs() - self.retention.as_secs() as i64) * 1000;
        let walk = self
            .listings(account_id)
            .walk(
                from,
                oldest_ms,
                limit + 1,
                |listing| {
                    let ids = listing_column(listing, "ids")?;
                    let types = listing_column(listing, "types")?;
                    if ids.len() != types.len() {
                        return Err(Error::storage("corrupt listing of events"));
                    }
                    Ok(ids
                        .into_iter()
                        .zip(types)
                        .map(|(id, ty)| (id, event_type.is_none_or(|t| t == ty)))
                        .collect())
                },
                |run| self.shown_of(account_id, event_type, run),
            )
            .await?;
        let mut found = walk.found;
        let next = match found.len() > limit {
            true => {
                found.truncate(limit);
                found.last().map(|(p, _)| p.clone())
            }
            false => walk.stopped_at,
        };
        Ok((found.into_iter().map(|(_, e)| e).collect(), next))
    }

    /// The candidates' events that are shown, in the candidates' order: stored, live, of
    /// the type asked for (the event's own, which a listing rewritten by a retry cannot
    /// change), and listed in the candidate's listing (not another's).
    async fn shown_of(
        &self,
        account_id: &AccountId,
        event_type: Option<&str>,
        candidates: Vec<Candidate>,
    ) -> Result<Vec<(ListingPosition, Event)>> {
        let now = now_secs();
        let ids: HashSet<&str> = candidates.iter().map(|c| c.id.as_str()).collect();
        let keys = ids
            .into_iter()
            .map(|id| Self::key(account_id, id))
            .collect();
        let items = batch_get_items(&self.client, &self.table, keys).await?;
        let by_id: HashMap<String, &Item> = items
            .iter()
            .filter(|i| !expired(i, now))
            .filter_map(|i| Some((get_s(i, "id").ok()?, i)))
            .collect();
        let mut shown = Vec::new();
        for candidate in candidates {
            let Some(item) = by_id.get(&candidate.id) else {
                continue;
            };
            let listed_here = item
                .get(LISTED_IN)
                .and_then(|v| v.as_s().ok())
                .is_some_and(|l| *l == candidate.position.listing);
            let of_type = event_type.is_none_or(|t| {
                item.get("type")
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|x| x == t)
            });
            if listed_here && of_type {
                shown.push((candidate.position, event_of(item)?));
            }
        }
        Ok(shown)
    }

    /// A page of the events written before listings, from the `by_time` index.
    async fn indexed_page(
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

/// Where the next page of an account's events starts: in the listings, or in the index of
/// the events written before them (`None`: at its newest).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum ListCursor {
    #[serde(rename = "l")]
    Listed(ListingPosition),
    #[serde(rename = "i")]
    Indexed(Option<String>),
}

impl ListCursor {
    fn encode(&self) -> String {
        encode_cursor_json(self)
    }

    fn decode(cursor: &str) -> Result<Self> {
        let Some(decoded) = decode_cursor_json::<ListCursor>(cursor)? else {
            // A cursor of the version before listings, still in a client's hands across the
            // upgrade: a place in the index.
            decode_cursor(cursor, BY_TIME_KEYS)?;
            return Ok(ListCursor::Indexed(Some(cursor.to_string())));
        };
        match &decoded {
            // Only a listing's key, as this store writes them: any other would let a query
            // range over events, or fail in DynamoDB rather than as a bad cursor.
            ListCursor::Listed(p) if !is_listing_key(&p.listing) => Err(Error::InvalidCursor),
            _ => Ok(decoded),
        }
    }
}

/// The events' JSON, deflated: a 1.5 KB event of prose compresses to well under the 1 KB
/// of one write unit.
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

/// The subscriptions a stored event names as fanned out to by ingest (their deliveries are
/// not in the deliveries table's `by_event` index: see `DynamoDeliveryLog::list_for_event`;
/// none for an event fanned out by the fan-out function, or written before this list was),
/// and when the event was received (its deliveries' ids begin with it). `None`: no such
/// event, live.
pub(crate) async fn listed_subscriptions(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    account_id: &AccountId,
    event_id: &EventId,
) -> Result<Option<(Vec<SubscriptionId>, domain::time::Timestamp)>> {
    let out = client
        .get_item()
        .table_name(table)
        .set_key(Some(DynamoEventStore::key(account_id, event_id)))
        .projection_expression("#f, expires_at, #z, #d")
        .expression_attribute_names("#f", FANNED_OUT_TO)
        .expression_attribute_names("#z", "docz")
        .expression_attribute_names("#d", "doc")
        .consistent_read(true)
        .send()
        .await
        .map_err(storage_error)?;
    let Some(item) = out.item().filter(|i| !expired(i, now_secs())) else {
        return Ok(None);
    };
    let received_at = event_of(item)?.received_at;
    let subs = match item.get(FANNED_OUT_TO) {
        Some(AttributeValue::Ss(ids)) => ids
            .iter()
            .map(|id| {
                SubscriptionId::parse(id).map_err(|e| Error::storage(format!("corrupt event: {e}")))
            })
            .collect::<Result<Vec<_>>>()?,
        _ => Vec::new(),
    };
    Ok(Some((subs, received_at)))
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
        // Each account's events of each millisecond are listed first (see the type's doc).
        let mut groups: BTreeMap<(&str, i64), Vec<&Event>> = BTreeMap::new();
        for (event, _) in events.iter().zip(&firsts).filter(|(_, first)| **first) {
            groups
                .entry((event.account_id.as_str(), event.received_at.as_millis()))
                .or_default()
                .push(event);
        }
        let keys =
            futures::future::try_join_all(groups.values().map(|g| self.write_listing(g))).await?;
        let listing_of: HashMap<(&str, i64), String> = groups.into_keys().zip(keys).collect();
        let writes = events
            .iter()
            .zip(listed.iter().chain(std::iter::repeat(&None)))
            .zip(&firsts)
            .filter(|(_, first)| **first)
            .map(|((e, listed), _)| {
                let listing = &listing_of[&(e.account_id.as_str(), e.received_at.as_millis())];
                self.insert(e, listing, listed.as_deref())
            });
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

    /// Listed events first, then those of the `by_time` index (written before listings).
    async fn list(
        &self,
        account_id: &AccountId,
        event_type: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Event>> {
        let from = match cursor.map(ListCursor::decode).transpose()? {
            None => None,
            Some(ListCursor::Listed(position)) => Some(position),
            Some(ListCursor::Indexed(cursor)) => {
                let page = self
                    .indexed_page(account_id, event_type, cursor.as_deref(), limit)
                    .await?;
                return Ok(Page {
                    items: page.items,
                    next_cursor: page
                        .next_cursor
                        .map(|c| ListCursor::Indexed(Some(c)).encode()),
                });
            }
        };
        let (mut items, next) = self
            .listed_page(account_id, event_type, from, limit)
            .await?;
        if let Some(position) = next {
            return Ok(Page {
                items,
                next_cursor: Some(ListCursor::Listed(position).encode()),
            });
        }
        // The listings are done: the rest of the page, or only whether there is more, from
        // the index.
        let rest = limit - items.len().min(limit);
        let older = self
            .indexed_page(account_id, event_type, None, rest.max(1))
            .await?;
        let next_cursor = if rest == 0 {
            (!older.items.is_empty()).then(|| ListCursor::Indexed(None).encode())
        } else {
            items.extend(older.items);
            older
                .next_cursor
                .map(|c| ListCursor::Indexed(Some(c)).encode())
        };
        Ok(Page { items, next_cursor })
    }
}
