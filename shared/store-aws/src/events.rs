use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
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
/// An event's attribute naming the listing (see [`DynamoEventStore`]) it is listed in.
const LISTED_IN: &str = "listed_in";
const BY_TIME_KEYS: &[&str] = &["account_id", "id", "received_at"];
/// What every listing's sort key starts with. No event id holds `#` (the id rule), so no
/// event sorts among them.
const LISTING_PREFIX: &str = "#list#";
/// Just past every listing's sort key (`$` follows `#`).
const LISTINGS_END: &str = "#list$";
/// Listings read by a page's first query (each names up to 100 events); each further
/// query of the page reads twice as many, up to [`MOST_LISTINGS_PER_QUERY`].
const FIRST_LISTINGS_PER_QUERY: i32 = 8;
const MOST_LISTINGS_PER_QUERY: i32 = 128;
/// Listings one page may look through. A filter on a rare type could otherwise read every
/// listing of the retention; past this many, the page ends short, with a cursor.
const MOST_LISTINGS_PER_PAGE: usize = 1_000;
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
/// **Listings, not an index entry per event.** An account's events are listed newest first
/// from *listings*: items of the same table, sorted `#list#<received_at ms>#<hash>`, one per
/// account and millisecond of each stored batch (so one per request: a request's events
/// share their time), naming its events (`ids`) and their types (`types`), in the batch's
/// order. A batch of 100 events of an account costs one listing of a few write units
/// instead of 100 index writes; a lone event costs the same one unit as before. A listing
/// is written *before* its events, and each event names its listing in `listed_in`: a
/// listed event is shown only if it exists and names that listing, so an event a failed
/// request never stored is not shown, and one posted again (a duplicate, listed again by
/// the retry) is shown once, where it was first stored.
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

    fn expires_at(&self, received_at: domain::time::Timestamp) -> AttributeValue {
        n(received_at.as_millis() / 1000 + self.retention.as_secs() as i64)
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
        item.insert("expires_at".into(), self.expires_at(event.received_at));
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
    /// order) and says its sort key. The key's hash is of the ids and types, so the same
    /// request sent again in the same millisecond rewrites the same listing, and one that
    /// differs gets its own. The hash is only ever compared with the stored key, so it
    /// need not be stable across versions.
    async fn write_listing(&self, events: &[&Event]) -> Result<String> {
        let first = events[0];
        let mut hasher = DefaultHasher::new();
        for event in events {
            event.id.as_str().hash(&mut hasher);
            event.event_type.as_str().hash(&mut hasher);
        }
        let key = format!(
            "{LISTING_PREFIX}{:013}#{:016x}",
            first.received_at.as_millis(),
            hasher.finish()
        );
        let list =
            |f: fn(&Event) -> &str| AttributeValue::L(events.iter().map(|e| s(f(e))).collect());
        let mut item = Self::key(&first.account_id, &key);
        item.insert("ids".into(), list(|e| e.id.as_str()));
        item.insert("types".into(), list(|e| e.event_type.as_str()));
        item.insert("expires_at".into(), self.expires_at(first.received_at));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(storage_error)?;
        Ok(key)
    }

    /// Up to `limit` listed events of an account (of `event_type`, if given), newest first,
    /// from the position `from` (a listing's key, and how many of its events, newest first,
    /// were already looked at) or from the newest; and the position after the last event
    /// looked at when more listings follow. None: the listings are done, and what follows
    /// is in the `by_time` index. A page that looked through [`MOST_LISTINGS_PER_PAGE`]
    /// listings ends there, short (even empty), with its position.
    async fn listed_page(
        &self,
        account_id: &AccountId,
        event_type: Option<&str>,
        from: Option<ListingPosition>,
        limit: usize,
    ) -> Result<(Vec<Event>, Option<ListingPosition>)> {
        let now = now_secs();
        // A listing older than the retention has expired: it is not read at all, though
        // DynamoDB may not have deleted it yet.
        let oldest_live = (now - self.retention.as_secs() as i64).max(0) * 1000;
        let lower = format!("{LISTING_PREFIX}{oldest_live:013}");
        let upper = from
            .as_ref()
            .map_or(LISTINGS_END.to_string(), |p| p.listing.clone());
        let mut skip = from;
        let mut start = None;
        let mut per_query = FIRST_LISTINGS_PER_QUERY;
        let mut looked_through = 0;
        let mut listings_done = upper < lower;
        // The position after the last listing looked through, all of its events included.
        let mut last_looked_at: Option<ListingPosition> = None;
        let mut candidates: VecDeque<Candidate> = VecDeque::new();
        let mut found: Vec<(ListingPosition, Event)> = Vec::new();
        while found.len() <= limit {
            // As many as the page still needs, and one more to know if there is a next.
            let needed = limit + 1 - found.len();
            if candidates.len() < needed
                && !listings_done
                && looked_through < MOST_LISTINGS_PER_PAGE
            {
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("account_id = :a AND id BETWEEN :lo AND :hi")
                    .expression_attribute_values(":a", s(account_id.as_str()))
                    .expression_attribute_values(":lo", s(&lower))
                    .expression_attribute_values(":hi", s(&upper))
                    .scan_index_forward(false)
                    .limit(per_query)
                    .consistent_read(true)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(storage_error)?;
                per_query = (per_query * 2).min(MOST_LISTINGS_PER_QUERY);
                looked_through += out.items().len();
                for listing in out.items().iter().filter(|i| !expired(i, now)) {
                    let key = get_s(listing, "id")?;
                    // The position's own listing (the first read, unless it expired since)
                    // resumes after the events already looked at.
                    let behind = match skip.take() {
                        Some(p) if p.listing == key => p.shown,
                        _ => 0,
                    };
                    let entries = listing_entries(listing)?;
                    last_looked_at = Some(ListingPosition {
                        listing: key.clone(),
                        shown: entries.len(),
                    });
                    for (newest_first, (id, ty)) in entries.into_iter().rev().enumerate() {
                        if newest_first < behind || event_type.is_some_and(|t| t != ty) {
                            continue;
                        }
                        candidates.push_back(Candidate {
                            position: ListingPosition {
                                listing: key.clone(),
                                shown: newest_first + 1,
                            },
                            id,
                        });
                    }
                }
                match out.last_evaluated_key() {
                    Some(k) if !k.is_empty() => start = Some(k.clone()),
                    _ => listings_done = true,
                }
                continue;
            }
            if candidates.is_empty() {
                break;
            }
            let take = needed.min(candidates.len());
            let batch: Vec<Candidate> = candidates.drain(..take).collect();
            found.extend(self.shown_of(account_id, event_type, batch).await?);
        }
        let next = if found.len() > limit {
            found.truncate(limit);
            found.last().map(|(p, _)| p.clone())
        } else if listings_done {
            None
        } else {
            // Stopped at the page's bound: every candidate was looked at, so the next page
            // starts after the last listing read.
            last_looked_at.or(skip)
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

/// Where a listing of events is read from: a listing, and how many of its events (newest
/// first, of any type) are behind.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct ListingPosition {
    listing: String,
    shown: usize,
}

/// An event named by a listing, not yet read.
struct Candidate {
    position: ListingPosition,
    id: String,
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
        use base64::Engine;
        let json = serde_json::to_vec(self).expect("a cursor serializes");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    fn decode(cursor: &str) -> Result<Self> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| Error::InvalidCursor)?;
        let Ok(decoded) = serde_json::from_slice::<ListCursor>(&bytes) else {
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

/// Whether `key` is a listing's sort key as [`DynamoEventStore::write_listing`] writes it:
/// the prefix, 13 digits of milliseconds, `#`, 16 hex digits.
fn is_listing_key(key: &str) -> bool {
    let Some(rest) = key.strip_prefix(LISTING_PREFIX) else {
        return false;
    };
    let bytes = rest.as_bytes();
    bytes.len() == 30
        && bytes[..13].iter().all(u8::is_ascii_digit)
        && bytes[13] == b'#'
        && bytes[14..].iter().all(u8::is_ascii_hexdigit)
}

/// A listing's events, in the batch's order: (id, type).
fn listing_entries(listing: &Item) -> Result<Vec<(String, String)>> {
    let corrupt = || Error::storage("corrupt listing of events");
    let strings = |name: &str| -> Result<Vec<String>> {
        match listing.get(name) {
            Some(AttributeValue::L(values)) => values
                .iter()
                .map(|v| v.as_s().cloned().map_err(|_| corrupt()))
                .collect(),
            _ => Err(corrupt()),
        }
    };
    let (ids, types) = (strings("ids")?, strings("types")?);
    if ids.len() != types.len() {
        return Err(corrupt());
    }
    Ok(ids.into_iter().zip(types).collect())
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
