use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, ReturnValue, WriteRequest};
use futures::{StreamExt, TryStreamExt};

use super::attributes::{
    decode_cursor, encode_cursor, expired, get_id, get_ms, get_n, get_s, ms, n, now_secs, opt_ms,
    opt_n, opt_s, s, Item,
};
use super::listing::{
    decode_cursor_json, encode_cursor_json, is_listing_key, listing_column, listing_key,
    ordered_listing_key, Candidate, ListingPosition, Listings, LISTED_IN,
};
use super::paging::{all_items, batch_get_items, page_of_items};
use super::{storage_error, UNPROCESSED_BACKOFF};
use app::ports::DeliveryLog;
use app::ports::OsRandom;
use app::ports::Page;
use app::{Error, Result};
use domain::catalog::EventType;
use domain::delivery::{Attempt, Delivery, DeliveryStatus, DeliveryUpdate, FailureCause};
use domain::ids::{AccountId, DeliveryId, EventId, SubscriptionId};
use domain::random::Random;
use domain::stats::{
    roll_up, slot_deltas, CauseStats, LatencyHistogram, SlotKey, SlotStats, StatsGrain, StatsSlot,
};
use domain::time::Timestamp;

mod listed;

/// Deliveries logged at once by one `record` call (see there).
const MAX_WRITES_AT_ONCE: usize = 25;

/// The parts the sweep's scan reads the deliveries table in (see `overdue`).
const OVERDUE_SEGMENTS: u32 = 16;

/// The `by_status` partitions pending deliveries are spread over (see `pending_key`): an
/// index partition takes about 1 000 writes a second, and every failed attempt writes one.
const PENDING_SHARDS: u32 = 16;

/// Begins a cursor of the sweep's index queries (a scan's starts with a digit).
const INDEXED_CURSOR: &str = "q.";

/// The sweep's record of its scans (`sk` is not `delivery`: no scan or index sees it).
/// While a scan pass is under way it holds the pass's cursor (`cursor`), so a pass cut
/// short by the sweep's time budget goes on at the next sweep; a whole pass sets
/// `scanned_at`. A sweep queries the index while the last whole pass is less than
/// [`RESCAN_AFTER_MS`] old.
const PENDING_INDEXED_PK: &str = "sweep#pending-indexed";

/// How often the sweep scans the whole table again even though every pending delivery it
/// writes carries its key: a pending delivery left without one by an older version (a
/// rollback, instances still running during a deploy) is found within a week, for a
/// seventh of what a daily scan cost.
const RESCAN_AFTER_MS: i64 = 7 * 86_400_000;

/// Where a round of the sweep over `parts` partitions (the scan's segments, the index's
/// shards) stands: the partition being read, how many are left including it, and the key
/// to go on from within it. A round starts at a random partition and goes round, so a
/// sweep cut short by its time budget reaches the others next time. As text:
/// `<part>.<parts left>.<last key, or nothing at a part's start>`.
struct Round {
    part: u32,
    left: u32,
    start: Option<Item>,
}

impl Round {
    fn starting(parts: u32) -> Round {
        Round {
            part: (OsRandom.unit() * f64::from(parts)) as u32 % parts,
            left: parts,
            start: None,
        }
    }

    /// The round `text` names, its keys named `key_names`.
    fn decode(text: &str, parts: u32, key_names: &[&str]) -> Result<Round> {
        let mut pieces = text.splitn(3, '.');
        let mut number = |below: u32| {
            pieces
                .next()
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n < below)
                .ok_or(Error::InvalidCursor)
        };
        let part = number(parts)?;
        let left = number(parts + 1)?;
        let start = match pieces.next() {
            Some("") => None,
            Some(k) => Some(decode_cursor(k, key_names)?),
            None => return Err(Error::InvalidCursor),
        };
        if left == 0 {
            return Err(Error::InvalidCursor);
        }
        Ok(Round { part, left, start })
    }

    fn encode(&self, key_names: &[&str]) -> String {
        let key = self
            .start
            .as_ref()
            .map_or(String::new(), |k| encode_cursor(k, key_names));
        format!("{}.{}.{key}", self.part, self.left)
    }

    /// After a page of the current partition that ended at `last` (none: its end). Says
    /// whether the round is over.
    fn advance(&mut self, last: Option<&Item>, parts: u32) -> bool {
        match last {
            Some(k) if !k.is_empty() => {
                self.start = Some(k.clone());
                false
            }
            _ => {
                self.left -= 1;
                self.part = (self.part + 1) % parts;
                self.left == 0
            }
        }
    }
}

/// The table key of the delivery item of `id`.
fn delivery_key(id: &DeliveryId) -> Item {
    HashMap::from([
        ("pk".to_string(), s(id.as_str())),
        ("sk".to_string(), s(DELIVERY_SK)),
    ])
}

/// The partition of the listings of a subscription's first-try successes (see the type).
fn listing_partition(account_id: &AccountId, subscription_id: &SubscriptionId) -> String {
    format!("subscription#{account_id}#{subscription_id}")
}

/// The `by_subscription` key of a delivery to `subscription_id`.
fn sub_key(account_id: &AccountId, subscription_id: &SubscriptionId) -> String {
    format!("{account_id}#{subscription_id}")
}

/// The `by_event` key of a delivery of `event_id`.
fn event_key(account_id: &AccountId, event_id: &EventId) -> String {
    format!("{account_id}#{event_id}")
}

/// Gives a delivery item its `by_event` key (`:ek`) if it has none; the key kept otherwise.
const SET_EVENT_KEY_IF_NONE: &str = ", #ek = if_not_exists(#ek, :ek)";

/// The `by_event` key an outcome whose task is not listed on its event writes
/// ([`SET_EVENT_KEY_IF_NONE`]). A delivery first logged as listed is found from its
/// event's list, but its item outlives the event (each outcome and redrive extends it):
/// should the same event id be stored again later without that list (posted again after
/// it expired), its next unlisted outcome puts it back in the index.
fn event_key_unless_listed(u: &DeliveryUpdate) -> Option<AttributeValue> {
    (!u.listed_on_event).then(|| s(event_key(&u.account_id, &u.event_id)))
}

/// One of the two places a subscription's deliveries are read from, in a cursor: not
/// started, at a position, or done.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum Side<P> {
    #[serde(rename = "s")]
    Start,
    #[serde(rename = "a")]
    At(P),
    #[serde(rename = "d")]
    Done,
}

/// Where the next page of a subscription's deliveries starts: in its listings (see
/// `DynamoDeliveryLog`) and in `by_subscription`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct SubscriptionCursor {
    #[serde(rename = "l")]
    listed: Side<ListingPosition>,
    #[serde(rename = "i")]
    indexed: Side<String>,
}

impl SubscriptionCursor {
    fn encode(&self) -> String {
        encode_cursor_json(self)
    }

    fn decode(cursor: &str) -> Result<Self> {
        let Some(decoded) = decode_cursor_json::<SubscriptionCursor>(cursor)? else {
            // A cursor of the version before listings, still in a client's hands across the
            // upgrade: a place in the index. What is listed (first-try successes logged
            // since) is mostly newer, and left out: a few successes logged after the
            // upgrade but created before that place are not shown on those pages.
            decode_cursor(cursor, BY_SUBSCRIPTION_KEYS)?;
            return Ok(SubscriptionCursor {
                listed: Side::Done,
                indexed: Side::At(cursor.to_string()),
            });
        };
        match &decoded.listed {
            Side::At(p) if !is_listing_key(&p.listing) => Err(Error::InvalidCursor),
            _ => Ok(decoded),
        }
    }
}

/// What a sweep starting afresh does (see `DynamoDeliveryLog::scan_state`).
enum ScanState {
    Query,
    /// Scan, going on with the pass under way at this cursor, or starting one.
    Scan(Option<String>),
}

/// DynamoDB's limit on requests per `BatchWriteItem`.
const MAX_BATCH_WRITE: usize = 25;
const DELIVERY_SK: &str = "delivery";
/// The latency of a first try kept in short (`first_*`), once another attempt has made
/// `last_latency_ms` that one's; until then the first's latency is `last_latency_ms`.
pub(super) const FIRST_LATENCY: &str = "first_latency_ms";
pub const BY_EVENT_INDEX: &str = "by_event";
pub const BY_SUBSCRIPTION_INDEX: &str = "by_subscription";
pub const BY_STATUS_INDEX: &str = "by_status";
const BY_SUBSCRIPTION_KEYS: &[&str] = &["pk", "sk", "sub_key", "created_at"];
const BY_STATUS_KEYS: &[&str] = &["pk", "sk", "status_key", "updated_at"];
/// The keys of the table itself, as a scan's cursor holds them.
const SCAN_KEYS: &[&str] = &["pk", "sk"];

/// How a first-try success listed for its subscription is kept.
#[derive(Debug, Clone)]
enum Listed {
    /// In its listing alone, with no item (see `listed`).
    Only,
    /// In an item of its own, which names the listing (`listed_in`).
    InItem(String),
}

/// Table `deliveries`, one item collection per delivery: partition `pk` (the delivery id);
/// sort `sk` = `delivery` for the delivery, `attempt#<start ms, 13 digits>#<random>` for its
/// attempts (numbered by their order when read). Sparse
/// indexes over the delivery items: `by_event` (`event_key` = account#event) lists an
/// event's deliveries, except those of an event ingest fanned out itself, which lists their
/// subscriptions on the event (`fanned_out_to`, see `events`) and whose deliveries leave
/// the key out (`DeliveryUpdate::listed_on_event`: one index write fewer at each of their
/// writes); `by_subscription` (`sub_key` = account#subscription, by
/// `created_at`) a subscription's, `by_status` (by `updated_at`) an account's dead letters
/// (`status_key` = account#dead) and the pending deliveries the sweep asks about
/// (`status_key` = `pending#<shard>`). Only dead and pending deliveries carry `status_key`:
/// each index write costs a write unit. A delivery is logged from its first outcome, so
/// one is pending there once it has failed (or when created pending: a test send, a
/// redrive); a first-try success never touches the index. Every item carries a TTL in
/// `expires_at`.
///
/// **A first-try success is not in `by_subscription`** either: the deliveries of one
/// subscription that a deliver batch logs as first-try successes, created in the same
/// millisecond (one request's), are named by one listing (see `listing`) in the partition
/// `subscription#<account>#<subscription>`, and each names it in `listed_in`. A
/// subscription's deliveries are its listings' and its index entries, merged newest first
/// by `created_at`. A listed delivery that changes later (a retry asked for, a late
/// attempt counted) moves into the index: it is given `sub_key` and loses `listed_in`, so it is found in
/// one place only, and a list of failed or pending deliveries reads the index alone.
///
/// **Nor has it an item**, when its id says its event's receipt (`DeliveryId::receipt_ms`,
/// every id made since that version): its listing holds its record, and a pointer in the
/// partition `receipts#<account>#<ms>` names the listing (see `listed`). A listing of ids
/// alone, whose successes have items naming it, is one written before.
pub struct DynamoDeliveryLog {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// The events table: an event ingest fanned out lists its subscriptions there.
    events_table: String,
    retention: Duration,
}

impl DynamoDeliveryLog {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        events_table: impl Into<String>,
        retention: Duration,
    ) -> Self {
        DynamoDeliveryLog {
            client,
            table: table.into(),
            events_table: events_table.into(),
            retention,
        }
    }

    fn expires_at(&self, at: Timestamp) -> i64 {
        at.as_millis() / 1000 + self.retention.as_secs() as i64
    }

    /// The delivery item of `d`.
    fn delivery_item(&self, d: &Delivery) -> Item {
        let mut item: Item = HashMap::from([
            ("pk".to_string(), s(d.id.as_str())),
            ("sk".to_string(), s(DELIVERY_SK)),
            ("account_id".to_string(), s(d.account_id.as_str())),
            ("subscription_id".to_string(), s(d.subscription_id.as_str())),
            ("event_id".to_string(), s(d.event_id.as_str())),
            ("event_type".to_string(), s(d.event_type.as_str())),
            (
                "event_key".to_string(),
                s(event_key(&d.account_id, &d.event_id)),
            ),
            (
                "sub_key".to_string(),
                s(sub_key(&d.account_id, &d.subscription_id)),
            ),
            ("status".to_string(), s(d.status.as_str())),
            ("attempt_count".to_string(), n(d.attempt_count)),
            ("created_at".to_string(), ms(d.created_at)),
            ("updated_at".to_string(), ms(d.updated_at)),
            ("expires_at".to_string(), n(self.expires_at(d.created_at))),
        ]);
        if let Some(at) = d.next_attempt_at {
            item.insert("next_attempt_at".into(), ms(at));
        }
        if let Some(e) = &d.last_error {
            item.insert("last_error".into(), s(e));
        }
        if let Some(latency) = d.last_latency_ms {
            item.insert("last_latency_ms".into(), n(latency));
        }
        if let Some(key) = status_key(d.status, &d.account_id, &d.id) {
            item.insert("status_key".into(), s(key));
        }
        item
    }

    /// The live delivery items at `ids`, in any order; an id with none is left out.
    async fn get_deliveries(&self, ids: &[DeliveryId]) -> Result<Vec<Delivery>> {
        let keys = ids.iter().map(delivery_key).collect();
        let now = now_secs();
        batch_get_items(&self.client, &self.table, keys)
            .await?
            .iter()
            .filter(|i| !expired(i, now))
            .map(delivery_from_item)
            .collect()
    }

    async fn create(&self, d: &Delivery) -> Result<bool> {
        // A success kept in its listing alone exists as much as one with an item.
        if self.listed_success(&d.account_id, &d.id).await?.is_some() {
            return Ok(false);
        }
        let item = self.delivery_item(d);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match e.into_service_error() {
                PutItemError::ConditionalCheckFailedException(_) => Ok(false),
                other => Err(storage_error(other)),
            },
        }
    }

    /// Writes `u` as its delivery's first outcome, creating the delivery item: an update
    /// whose condition is that the item is absent (so deliver needs no `PutItem`). One kept
    /// in short carries its attempt in `first_*`; one named by its subscription's `listing`
    /// says so instead of carrying `sub_key`. Says whether it was the first.
    async fn create_first(&self, u: &DeliveryUpdate, listing: Option<&str>) -> Result<bool> {
        let first = u.first_of_its_delivery();
        let mut item = self.delivery_item(&first);
        item.remove("pk");
        item.remove("sk");
        if let Some(key) = listing {
            // Out of `by_subscription`: an index write saved.
            item.remove("sub_key");
            item.insert(LISTED_IN.into(), s(key));
        }
        if u.listed_on_event {
            // Found from its event's list (`list_for_event`): an index entry saved, a write
            // unit at each of the delivery's writes.
            item.remove("event_key");
        }
        item.insert("expires_at".into(), n(self.expires_at(u.at)));
        if let Some(a) = u.attempt.as_ref().filter(|_| u.kept_short_if_first()) {
            item.insert("first_at".into(), ms(a.at));
            item.insert("first_url".into(), s(&a.url));
            item.insert(
                "first_request_headers".into(),
                s(serde_json::to_string(&a.request_headers)
                    .map_err(|e| Error::storage(e.to_string()))?),
            );
            if let Some(code) = a.status_code {
                item.insert("first_status".into(), n(code));
            }
        }
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(u.delivery_id.as_str()))
            .key("sk", s(DELIVERY_SK))
            .condition_expression("attribute_not_exists(pk)");
        let mut set = Vec::with_capacity(item.len());
        for (i, (name, value)) in item.into_iter().enumerate() {
            set.push(format!("#a{i} = :v{i}"));
            request = request
                .expression_attribute_names(format!("#a{i}"), name)
                .expression_attribute_values(format!(":v{i}"), value);
        }
        match request
            .update_expression(format!("SET {}", set.join(", ")))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(_) => Ok(false),
                other => Err(storage_error(other)),
            },
        }
    }

    /// Applies one outcome to the delivery item. An outcome that applies only while the
    /// delivery is pending and finds it finished still counts its attempt.
    async fn apply(&self, u: &DeliveryUpdate) -> Result<()> {
        if !u.applies_only_while_pending() {
            return self.apply_outcome(u, false).await;
        }
        match self.apply_outcome(u, true).await {
            Err(Error::Conflict(_)) => self.count_attempt(u).await,
            other => other,
        }
    }

    /// Counts an attempt whose outcome came too late to change the delivery's status.
    async fn count_attempt(&self, u: &DeliveryUpdate) -> Result<()> {
        let latency = u.attempt.as_ref().map_or(0, |a| a.latency_ms);
        let event_key = event_key_unless_listed(u);
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(u.delivery_id.as_str()))
            .key("sk", s(DELIVERY_SK))
            .condition_expression("attribute_exists(pk) AND #acct = :acct")
            // A listed delivery moves into the index (see the type): its TTL is extended
            // here, past its listing's.
            .update_expression(format!(
                "SET #ua = :ua, #ll = :ll, #ex = :exp, #subk = :subk{} ADD #ac :one REMOVE #li",
                if event_key.is_some() {
                    SET_EVENT_KEY_IF_NONE
                } else {
                    ""
                }
            ))
            .expression_attribute_names("#subk", "sub_key")
            .expression_attribute_values(":subk", s(sub_key(&u.account_id, &u.subscription_id)))
            .expression_attribute_names("#li", LISTED_IN);
        if let Some(key) = event_key {
            request = request
                .expression_attribute_names("#ek", "event_key")
                .expression_attribute_values(":ek", key);
        }
        let out = request
            .expression_attribute_names("#ex", "expires_at")
            .expression_attribute_values(":exp", n(self.expires_at(u.at)))
            .expression_attribute_names("#acct", "account_id")
            .expression_attribute_names("#ua", "updated_at")
            .expression_attribute_names("#ll", "last_latency_ms")
            .expression_attribute_names("#ac", "attempt_count")
            .expression_attribute_values(":acct", s(u.account_id.as_str()))
            .expression_attribute_values(":ua", ms(u.at))
            .expression_attribute_values(":ll", n(latency))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(_) => Error::NotFound,
                other => storage_error(other),
            })?;
        self.keep_first_latency(u, out.attributes()).await
    }

    /// After an attempt logged on `before` (the item as it was): a first try kept in short
    /// whose latency was `last_latency_ms` keeps it in [`FIRST_LATENCY`], since the new
    /// attempt's latency has taken that place. One more write, only when a first-try
    /// success gets its second attempt (a message handled twice, a retry asked for): the
    /// update that saw one attempt before it is the one that holds the first's latency,
    /// whichever of two concurrent updates lands first; an item that had more (logged by a
    /// version before this one) lost it already. Until the write lands, a reader sees the
    /// new latency on the first attempt too. A failure is logged, not returned: the outcome
    /// is logged, and taking the batch again would send the delivery again for a figure.
    async fn keep_first_latency(&self, u: &DeliveryUpdate, before: Option<&Item>) -> Result<()> {
        let Some(before) = before.filter(|b| {
            u.attempt.is_some()
                && b.contains_key("first_at")
                && !b.contains_key(FIRST_LATENCY)
                && opt_n::<u32>(b, "attempt_count") == Some(1)
        }) else {
            return Ok(());
        };
        let Some(latency) = opt_n::<u64>(before, "last_latency_ms") else {
            return Ok(());
        };
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(u.delivery_id.as_str()))
            .key("sk", s(DELIVERY_SK))
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(#fl)")
            .update_expression("SET #fl = :fl")
            .expression_attribute_names("#fl", FIRST_LATENCY)
            .expression_attribute_values(":fl", n(latency))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                match e.into_service_error() {
                    // Kept already, or the item is gone: nothing to keep.
                    UpdateItemError::ConditionalCheckFailedException(_) => {}
                    other => tracing::warn!(
                        error = %storage_error(other),
                        delivery_id = %u.delivery_id,
                        "could not keep a first attempt's latency; it shows the latest"
                    ),
                }
                Ok(())
            }
        }
    }

    /// Writes the outcome; with `only_while_pending`, a delivery found in another status is a
    /// `Conflict` (a missing one is still `NotFound`).
    async fn apply_outcome(&self, u: &DeliveryUpdate, only_while_pending: bool) -> Result<()> {
        // A delivery still being worked on is kept the table's retention from its last
        // change, not from its creation: a long retry schedule never outlives its row.
        // A listed delivery that changes moves into the index (see the type); one there
        // already is given the key it has.
        let mut set = vec!["#st = :st", "#ua = :ua", "#ex = :exp", "#subk = :subk"];
        let mut remove = vec!["#li"];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(u.delivery_id.as_str()))
            .key("sk", s(DELIVERY_SK))
            .expression_attribute_names("#subk", "sub_key")
            .expression_attribute_values(":subk", s(sub_key(&u.account_id, &u.subscription_id)))
            .expression_attribute_names("#li", LISTED_IN)
            .condition_expression(if only_while_pending {
                "attribute_exists(pk) AND #acct = :acct AND #st = :pending"
            } else {
                "attribute_exists(pk) AND #acct = :acct"
            })
            .expression_attribute_names("#acct", "account_id")
            .expression_attribute_names("#st", "status")
            .expression_attribute_names("#ua", "updated_at")
            .expression_attribute_names("#na", "next_attempt_at")
            .expression_attribute_names("#le", "last_error")
            .expression_attribute_names("#sk", "status_key")
            .expression_attribute_values(":acct", s(u.account_id.as_str()))
            .expression_attribute_values(":st", s(u.status.as_str()))
            .expression_attribute_values(":ua", ms(u.at))
            .expression_attribute_names("#ex", "expires_at")
            .expression_attribute_values(":exp", n(self.expires_at(u.at)));
        if only_while_pending {
            request = request
                .expression_attribute_values(":pending", s(DeliveryStatus::Pending.as_str()));
        }
        if let Some(key) = event_key_unless_listed(u) {
            set.push(SET_EVENT_KEY_IF_NONE.trim_start_matches(", "));
            request = request
                .expression_attribute_names("#ek", "event_key")
                .expression_attribute_values(":ek", key);
        }
        match status_key(u.status, &u.account_id, &u.delivery_id) {
            Some(key) => {
                set.push("#sk = :sk");
                request = request.expression_attribute_values(":sk", s(key));
            }
            None => remove.push("#sk"),
        }
        match u.next_attempt_at {
            Some(at) => {
                set.push("#na = :na");
                request = request.expression_attribute_values(":na", ms(at));
            }
            None => remove.push("#na"),
        }
        match &u.error {
            Some(e) => {
                set.push("#le = :le");
                request = request.expression_attribute_values(":le", s(e));
            }
            None => remove.push("#le"),
        }
        if let Some(a) = &u.attempt {
            set.push("#ll = :ll");
            request = request
                .expression_attribute_names("#ll", "last_latency_ms")
                .expression_attribute_values(":ll", n(a.latency_ms));
        }
        let mut expression = format!("SET {}", set.join(", "));
        if u.attempt.is_some() {
            expression.push_str(" ADD #ac :one");
            request = request
                .expression_attribute_names("#ac", "attempt_count")
                .expression_attribute_values(":one", n(1));
        }
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        // The item as it was costs no read units: whether its first try was kept in short.
        let out = request
            .update_expression(expression)
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| match e.into_service_error() {
                // Which part of the condition failed is not said; the caller's fallback
                // tells a missing delivery from a finished one.
                UpdateItemError::ConditionalCheckFailedException(_) if only_while_pending => {
                    Error::Conflict("a finished outcome".into())
                }
                UpdateItemError::ConditionalCheckFailedException(_) => Error::NotFound,
                other => storage_error(other),
            })?;
        self.keep_first_latency(u, out.attributes()).await
    }

    /// The sweep's question as a filtered, segmented `Scan`, until the first whole pass:
    /// it reads (and is billed for) the whole table, about $0.016 a stored GB with
    /// eventually consistent reads. Every pending delivery it meets without its `by_status`
    /// key (one written by layout 1) is given it, and a pass that reaches the end records
    /// so (`PENDING_INDEXED_PK`): later sweeps query the index. The table is read in
    /// [`OVERDUE_SEGMENTS`] segments, starting at a random one and going round: a sweep cut
    /// short by its time budget on a large table reaches another part of it next time. A
    /// page is what one or more reads of up to 1 000 items found, so it may hold somewhat
    /// more than `limit`.
    async fn overdue_scanned(
        &self,
        before: Timestamp,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        let mut round = match cursor {
            None => Round::starting(OVERDUE_SEGMENTS),
            Some(c) => Round::decode(c, OVERDUE_SEGMENTS, SCAN_KEYS)?,
        };
        let now = now_secs();
        let mut found = Vec::new();
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .segment(round.part as i32)
                .total_segments(OVERDUE_SEGMENTS as i32)
                .limit(1000)
                // Every pending delivery, overdue or not: those without their key get it.
                .filter_expression("#sk = :delivery AND #st = :pending")
                .expression_attribute_names("#sk", "sk")
                .expression_attribute_names("#st", "status")
                .expression_attribute_values(":delivery", s(DELIVERY_SK))
                .expression_attribute_values(":pending", s(DeliveryStatus::Pending.as_str()))
                .set_exclusive_start_key(round.start.take())
                .send()
                .await
                .map_err(storage_error)?;
            for item in out.items().iter().filter(|i| !expired(i, now)) {
                let delivery = delivery_from_item(item)?;
                if !item.contains_key("status_key") {
                    self.give_pending_key(&delivery).await?;
                }
                if delivery.next_attempt_at.unwrap_or(delivery.updated_at) < before {
                    found.push(delivery);
                }
            }
            if round.advance(out.last_evaluated_key(), OVERDUE_SEGMENTS) {
                // A whole pass: every pending delivery has its key now.
                self.record_scan(None).await?;
                return Ok(Page {
                    items: found,
                    next_cursor: None,
                });
            }
            if found.len() >= limit {
                let cursor = round.encode(SCAN_KEYS);
                // Where the pass stands, should the sweep stop here.
                self.record_scan(Some(&cursor)).await?;
                return Ok(Page {
                    items: found,
                    next_cursor: Some(cursor),
                });
            }
        }
    }

    /// The sweep's question as queries of the `by_status` index's pending shards, each
    /// read whole and filtered: due (its `next_attempt_at`, or its last change when none is
    /// set) before `before`. Only deliveries that failed are there, so the whole of it is
    /// small. (Not a range of `updated_at`: an outcome logged at the end of a long attempt
    /// may be later than the retry it schedules.) A sweep starts at a random shard and goes
    /// round, so one cut short by its time budget reaches the others next time. Cursor:
    /// `<shard>.<shards left>.<last key, or nothing at a shard's start>` (after
    /// `INDEXED_CURSOR`).
    async fn overdue_indexed(
        &self,
        before: Timestamp,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        let mut round = match cursor {
            None => Round::starting(PENDING_SHARDS),
            Some(c) => Round::decode(c, PENDING_SHARDS, BY_STATUS_KEYS)?,
        };
        let now = now_secs();
        let mut found = Vec::new();
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(BY_STATUS_INDEX)
                .key_condition_expression("#sk = :k")
                .filter_expression("#na < :before OR (attribute_not_exists(#na) AND #ua < :before)")
                .expression_attribute_names("#sk", "status_key")
                .expression_attribute_names("#ua", "updated_at")
                .expression_attribute_names("#na", "next_attempt_at")
                .expression_attribute_values(":k", s(pending_key_of_shard(round.part)))
                .expression_attribute_values(":before", ms(before))
                .limit(1000)
                .set_exclusive_start_key(round.start.take())
                .send()
                .await
                .map_err(storage_error)?;
            for item in out.items().iter().filter(|i| !expired(i, now)) {
                found.push(delivery_from_item(item)?);
            }
            if round.advance(out.last_evaluated_key(), PENDING_SHARDS) {
                return Ok(Page {
                    items: found,
                    next_cursor: None,
                });
            }
            if found.len() >= limit {
                return Ok(Page {
                    items: found,
                    next_cursor: Some(format!("{INDEXED_CURSOR}{}", round.encode(BY_STATUS_KEYS))),
                });
            }
        }
    }

    /// What a sweep starting afresh does: query the index, or scan (going on with a pass
    /// under way, or starting one).
    async fn scan_state(&self) -> Result<ScanState> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(PENDING_INDEXED_PK))
            .key("sk", s(PENDING_INDEXED_PK))
            .send()
            .await
            .map_err(storage_error)?;
        let Some(item) = out.item() else {
            return Ok(ScanState::Scan(None));
        };
        // A cursor that no longer reads starts the pass over rather than stop every sweep.
        if let Some(cursor) =
            opt_s(item, "cursor").filter(|c| Round::decode(c, OVERDUE_SEGMENTS, SCAN_KEYS).is_ok())
        {
            return Ok(ScanState::Scan(Some(cursor)));
        }
        let now_ms = now_secs() * 1000;
        Ok(match opt_n::<i64>(item, "scanned_at") {
            Some(at) if now_ms - at < RESCAN_AFTER_MS => ScanState::Query,
            _ => ScanState::Scan(None),
        })
    }

    /// Records where a scan pass stands (`Some(cursor)`), or that one has ended.
    async fn record_scan(&self, cursor: Option<&str>) -> Result<()> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(PENDING_INDEXED_PK))
            .key("sk", s(PENDING_INDEXED_PK))
            .expression_attribute_names("#c", "cursor");
        let request = match cursor {
            Some(c) => request
                .update_expression("SET #c = :c")
                .expression_attribute_values(":c", s(c)),
            None => request
                .update_expression("SET #at = :at REMOVE #c")
                .expression_attribute_names("#at", "scanned_at")
                .expression_attribute_values(":at", n(now_secs() * 1000)),
        };
        request.send().await.map_err(storage_error)?;
        Ok(())
    }

    /// Gives a pending delivery written without it (layout 1) its `by_status` key, unless
    /// it has changed since it was read.
    async fn give_pending_key(&self, d: &Delivery) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(d.id.as_str()))
            .key("sk", s(DELIVERY_SK))
            .condition_expression("#st = :pending AND attribute_not_exists(#sk)")
            .update_expression("SET #sk = :k")
            .expression_attribute_names("#st", "status")
            .expression_attribute_names("#sk", "status_key")
            .expression_attribute_values(":pending", s(DeliveryStatus::Pending.as_str()))
            .expression_attribute_values(":k", s(pending_key(&d.id)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(_) => Ok(()),
                other => Err(storage_error(other)),
            },
        }
    }

    /// The attempt's item. Its sort key orders attempts by start time; the random part keeps
    /// two sends of one delivery in the same millisecond (a message handed to two receivers)
    /// as two attempts.
    fn attempt_item(&self, u: &DeliveryUpdate, a: &Attempt) -> Result<Item> {
        self.attempt_item_of(&u.delivery_id, &u.account_id, a)
    }

    /// The attempt item of `a`, an attempt of the delivery `id` of `account_id`.
    fn attempt_item_of(
        &self,
        id: &DeliveryId,
        account_id: &AccountId,
        a: &Attempt,
    ) -> Result<Item> {
        let headers =
            serde_json::to_string(&a.request_headers).map_err(|e| Error::storage(e.to_string()))?;
        let mut item: Item = HashMap::from([
            ("pk".to_string(), s(id.as_str())),
            ("sk".to_string(), s(attempt_sort_key(a.at))),
            ("account_id".to_string(), s(account_id.as_str())),
            ("at".to_string(), ms(a.at)),
            ("url".to_string(), s(&a.url)),
            ("request_headers".to_string(), s(headers)),
            ("latency_ms".to_string(), n(a.latency_ms)),
            ("expires_at".to_string(), n(self.expires_at(a.at))),
        ]);
        if let Some(code) = a.status_code {
            item.insert("status_code".into(), n(code));
        }
        // Response bodies are already cut to a few KiB: items stay far below 400 KB.
        if let Some(body) = &a.response_body {
            item.insert("response_body".into(), s(body));
        }
        if let Some(e) = &a.error {
            item.insert("error".into(), s(e));
        }
        if !a.response_headers.is_empty() {
            let json = serde_json::to_string(&a.response_headers)
                .map_err(|e| Error::storage(e.to_string()))?;
            item.insert("response_headers".into(), s(json));
        }
        Ok(item)
    }

    /// A newest-first page of deliveries from an index, optionally filtered by status.
    async fn index_page(
        &self,
        index: &str,
        key_names: &[&str],
        key_condition: (&str, &str, String),
        status: Option<DeliveryStatus>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        let (items, next_cursor) = self
            .index_items(index, key_names, key_condition, status, cursor, limit)
            .await?;
        Ok(Page {
            items: items
                .iter()
                .map(delivery_from_item)
                .collect::<Result<_>>()?,
            next_cursor,
        })
    }

    /// Up to `limit` delivery items from an index (of `status`, if given), newest first,
    /// from `cursor`; and the cursor after them when more follow.
    async fn index_items(
        &self,
        index: &str,
        key_names: &[&str],
        key_condition: (&str, &str, String),
        status: Option<DeliveryStatus>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Item>, Option<String>)> {
        let (condition, name, value) = key_condition;
        page_of_items(
            |start| {
                let query = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(index)
                    .key_condition_expression(condition)
                    .expression_attribute_values(name, s(value.clone()))
                    .scan_index_forward(false)
                    .set_exclusive_start_key(start);
                match status {
                    Some(st) => query
                        .filter_expression("#st = :st")
                        .expression_attribute_names("#st", "status")
                        .expression_attribute_values(":st", s(st.as_str())),
                    None => query,
                }
            },
            key_names,
            cursor,
            limit,
        )
        .await
    }

    /// The listings of a subscription's first-try successes (see the type).
    fn subscription_listings(
        &self,
        account_id: &AccountId,
        subscription_id: &SubscriptionId,
    ) -> Listings<'_> {
        Listings {
            client: &self.client,
            table: &self.table,
            partition: ("pk", listing_partition(account_id, subscription_id)),
            sort: "sk",
        }
    }

    /// The oldest millisecond a live listing can be of. A listing is of its deliveries'
    /// creation, and kept the retention from their first outcome, which may come up to the
    /// retry horizon later (a delivery parked or held is not tried meanwhile). A listing
    /// past its TTL within that margin is looked through, not shown.
    fn oldest_listing_ms(&self) -> i64 {
        let margin = domain::retry::MAX_RETRY_HORIZON.as_secs() as i64 + 86_400;
        (now_secs() - self.retention.as_secs() as i64 - margin) * 1000
    }

    /// Writes the listings of the first-try successes among `updates` that may be kept
    /// short: one per subscription and millisecond of creation and of their events'
    /// receipt (of a request, so one per subscription in a deliver batch of a request's
    /// deliveries). Says how each listed delivery is kept. A group of one is not listed:
    /// its listing would cost the write unit its item does, and a round trip before the
    /// delivery is logged.
    async fn list_first_successes<'u>(
        &self,
        updates: &'u [DeliveryUpdate],
    ) -> Result<HashMap<&'u DeliveryId, Listed>> {
        type GroupKey<'u> = (&'u AccountId, &'u SubscriptionId, i64, Option<i64>);
        let mut groups: BTreeMap<GroupKey<'u>, Vec<&'u DeliveryUpdate>> = BTreeMap::new();
        for u in updates.iter().filter(|u| u.kept_short_if_first()) {
            let group = groups
                .entry((
                    &u.account_id,
                    &u.subscription_id,
                    u.created_at.as_millis(),
                    u.delivery_id.receipt_ms(),
                ))
                .or_default();
            // The same message twice in a batch is named once.
            if group.iter().all(|g| g.delivery_id != u.delivery_id) {
                group.push(u);
            }
        }
        // A delivery that has an item already (a copy of its message handled first, a
        // redrive queued before `DeliveryTask::logged`) is logged there, not listed: its
        // item would hide the listing. One consistent read each, of the groups to list.
        let to_list: Vec<&DeliveryId> = groups
            .iter()
            .filter(|((.., receipt), group)| receipt.is_some() && group.len() > 1)
            .flat_map(|(_, group)| group.iter().map(|u| &u.delivery_id))
            .collect();
        if !to_list.is_empty() {
            let existing: Vec<String> = self
                .get_items(to_list.iter().map(|id| delivery_key(id)).collect())
                .await?
                .iter()
                .filter_map(|i| get_s(i, "pk").ok())
                .collect();
            for group in groups.values_mut() {
                group.retain(|u| !existing.iter().any(|e| e == u.delivery_id.as_str()));
            }
        }
        let writes = groups.into_iter().filter(|(_, group)| group.len() > 1).map(
            |((account_id, subscription_id, at, receipt_ms), group)| async move {
                // Kept in the listing alone, found from its id (see `listed`).
                if let Some(receipt_ms) = receipt_ms {
                    // Named by when each was sent too: a copy of the message handled as
                    // a first try again (SQS may hand out a copy twice) is a second
                    // listing, a second attempt of each, where a key of the ids alone
                    // would write over the first's records. Ordered by when they were
                    // sent, so the first handling's stays in front.
                    let sent: Vec<i64> = group
                        .iter()
                        .map(|u| u.attempt.as_ref().map_or(0, |a| a.at.as_millis()))
                        .collect();
                    let sent_text: Vec<String> = sent.iter().map(i64::to_string).collect();
                    let first_sent = sent.iter().copied().min().unwrap_or(at);
                    let key = ordered_listing_key(
                        at,
                        first_sent - at,
                        group
                            .iter()
                            .map(|u| u.delivery_id.as_str())
                            .chain(sent_text.iter().map(String::as_str)),
                    );
                    let group = listed::Group {
                        account_id,
                        subscription_id,
                        receipt_ms,
                        listing: key,
                        updates: group,
                    };
                    self.batch_put(self.listed_success_items(&group)?).await?;
                    return Ok::<_, Error>(
                        group
                            .updates
                            .into_iter()
                            .map(|u| (&u.delivery_id, Listed::Only))
                            .collect::<Vec<_>>(),
                    );
                }
                // An id that does not say its event's receipt (none made here): named by
                // the listing, kept in an item of its own.
                let key = listing_key(at, group.iter().map(|u| u.delivery_id.as_str()));
                let how = Listed::InItem(key.clone());
                let expires_at = group.iter().map(|u| self.expires_at(u.at)).max();
                self.subscription_listings(account_id, subscription_id)
                    .write(
                        &key,
                        vec![(
                            "ids",
                            group.iter().map(|u| u.delivery_id.to_string()).collect(),
                        )],
                        expires_at.unwrap_or_default(),
                    )
                    .await?;
                Ok(group
                    .into_iter()
                    .map(|u| (&u.delivery_id, how.clone()))
                    .collect())
            },
        );
        Ok(futures::future::try_join_all(writes)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    /// The candidates' deliveries that are shown from their listing, in order: live, of
    /// this account and subscription, still naming that listing (not moved into the
    /// index, nor named first by another) and still succeeded (a version before this one,
    /// rolled back to, could change one without moving it).
    async fn listed_deliveries(
        &self,
        account_id: &AccountId,
        subscription_id: &SubscriptionId,
        run: Vec<Candidate>,
    ) -> Result<Vec<(ListingPosition, Delivery)>> {
        let ids = run
            .iter()
            .map(|c| DeliveryId::parse(c.id.as_str()))
            .collect::<std::result::Result<std::collections::BTreeSet<_>, _>>()
            .map_err(|_| Error::storage("corrupt listing of deliveries"))?;
        let now = now_secs();
        let keys = ids.iter().map(delivery_key).collect();
        let items = batch_get_items(&self.client, &self.table, keys).await?;
        // Those without an item may be kept in a listing alone (see `listed`).
        let without_item: Vec<DeliveryId> = ids
            .into_iter()
            .filter(|id| {
                !items
                    .iter()
                    .any(|i| get_s(i, "pk").is_ok_and(|pk| pk == id.as_str()))
            })
            .collect();
        let kept_in_listings = self.listed_successes(account_id, &without_item).await?;
        let kept_in_listings: HashMap<String, (listed::FirstListing, Delivery)> = kept_in_listings
            .into_iter()
            .filter(|(first, _, _)| &first.subscription_id == subscription_id)
            .map(|(first, delivery, _)| (delivery.id.to_string(), (first, delivery)))
            .collect();
        let by_id: HashMap<String, &Item> = items
            .iter()
            .filter(|i| !expired(i, now))
            .filter(|i| get_s(i, "account_id").is_ok_and(|a| a == account_id.as_str()))
            .filter(|i| get_s(i, "subscription_id").is_ok_and(|a| a == subscription_id.as_str()))
            .filter_map(|i| Some((get_s(i, "pk").ok()?, i)))
            .collect();
        let mut shown = Vec::new();
        for candidate in run {
            let Some(item) = by_id.get(&candidate.id) else {
                // Kept in a listing alone: shown from the first listing naming it.
                if let Some((first, delivery)) = kept_in_listings.get(&candidate.id) {
                    if first.listing == candidate.position.listing {
                        shown.push((candidate.position, delivery.clone()));
                    }
                }
                continue;
            };
            let listed_here = get_s(item, LISTED_IN).is_ok_and(|l| l == candidate.position.listing);
            let succeeded =
                get_s(item, "status").is_ok_and(|st| st == DeliveryStatus::Succeeded.as_str());
            if listed_here && succeeded {
                shown.push((candidate.position, delivery_from_item(item)?));
            }
        }
        Ok(shown)
    }

    /// The subscription of the delivery `id` if it is listed (see the type).
    async fn listed_subscription(&self, id: &DeliveryId) -> Result<Option<SubscriptionId>> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(id.as_str()))
            .key("sk", s(DELIVERY_SK))
            .projection_expression("#li, subscription_id")
            .expression_attribute_names("#li", LISTED_IN)
            .consistent_read(true)
            .send()
            .await
            .map_err(storage_error)?
            .item
            .filter(|i| i.contains_key(LISTED_IN))
            .map(|i| get_id::<SubscriptionId>(&i, "subscription_id"))
            .transpose()
    }

    /// Writes items 25 at a time, retrying what DynamoDB leaves unprocessed.
    async fn batch_put(&self, items: Vec<Item>) -> Result<()> {
        for chunk in items.chunks(MAX_BATCH_WRITE) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|item| {
                    Ok(WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(item.clone()))
                                .build()
                                .map_err(storage_error)?,
                        )
                        .build())
                })
                .collect::<Result<_>>()?;
            let mut delays = UNPROCESSED_BACKOFF;
            loop {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, std::mem::take(&mut pending))
                    .send()
                    .await
                    .map_err(storage_error)?;
                pending = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                let Some(delay) = delays.next() else {
                    return Err(Error::storage(format!(
                        "{} writes stayed unprocessed",
                        pending.len()
                    )));
                };
                tokio::time::sleep(delay).await;
            }
        }
        Ok(())
    }
}

fn delivery_from_item(item: &Item) -> Result<Delivery> {
    let status = get_s(item, "status")?;
    Ok(Delivery {
        id: get_id(item, "pk")?,
        account_id: get_id(item, "account_id")?,
        subscription_id: get_id(item, "subscription_id")?,
        event_id: get_id(item, "event_id")?,
        event_type: EventType::from_stored(get_s(item, "event_type")?),
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| Error::storage(format!("unknown delivery status {status}")))?,
        attempt_count: get_n(item, "attempt_count")?,
        created_at: get_ms(item, "created_at")?,
        updated_at: get_ms(item, "updated_at")?,
        next_attempt_at: opt_ms(item, "next_attempt_at"),
        last_error: opt_s(item, "last_error"),
        last_latency_ms: opt_n(item, "last_latency_ms"),
    })
}

/// The first-try success a delivery item keeps in short, if it does.
fn short_attempt(delivery: &Item) -> Result<Option<Attempt>> {
    let (Some(at), Some(url), Some(status)) = (
        opt_ms(delivery, "first_at"),
        opt_s(delivery, "first_url"),
        opt_n(delivery, "first_status"),
    ) else {
        return Ok(None);
    };
    let headers = opt_s(delivery, "first_request_headers")
        .map(|json| serde_json::from_str(&json))
        .transpose()
        .map_err(|e| Error::storage(format!("corrupt delivery: {e}")))?
        .unwrap_or_default();
    Ok(Some(Attempt::first_success(
        at,
        url,
        headers,
        status,
        opt_n(delivery, FIRST_LATENCY)
            .or_else(|| opt_n(delivery, "last_latency_ms"))
            .unwrap_or(0),
    )))
}

fn attempt_from_item(item: &Item, number: u32) -> Result<Attempt> {
    Ok(Attempt {
        attempt: number,
        at: get_ms(item, "at")?,
        url: get_s(item, "url")?,
        request_headers: serde_json::from_str(&get_s(item, "request_headers")?)
            .map_err(|e| Error::storage(format!("corrupt attempt: {e}")))?,
        status_code: opt_n(item, "status_code"),
        response_headers: opt_s(item, "response_headers")
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|e| Error::storage(format!("corrupt attempt: {e}")))?
            .unwrap_or_default(),
        latency_ms: get_n(item, "latency_ms")?,
        response_body: opt_s(item, "response_body"),
        error: opt_s(item, "error"),
    })
}

/// An attempt's sort key: `attempt#`, its start in milliseconds (13 digits: sorts by time
/// until the year 2286), `#` and 8 random bytes in hex.
fn attempt_sort_key(started_at: Timestamp) -> String {
    let mut random = [0u8; 8];
    OsRandom.fill(&mut random);
    format!(
        "attempt#{:013}#{:016x}",
        started_at.as_millis().max(0),
        u64::from_be_bytes(random)
    )
}

/// The `by_status` key of an account's dead deliveries.
fn dead_key(account_id: &str) -> String {
    format!("{account_id}#dead")
}

/// The `by_status` key of a pending delivery: `pending#<shard>`, the shard drawn from its id
/// (FNV-1a), so the index's writes spread over [`PENDING_SHARDS`] partitions. No account's
/// dead key has this form (it ends in `#dead`).
fn pending_key(id: &DeliveryId) -> String {
    pending_key_of_shard(shard_of(id.as_str()))
}

/// The `by_status` key of the pending deliveries of `shard`.
fn pending_key_of_shard(shard: u32) -> String {
    format!("pending#{shard:02}")
}

fn shard_of(id: &str) -> u32 {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % u64::from(PENDING_SHARDS)) as u32
}

/// The `by_status` key of a delivery in `status`, if that status is on the index.
fn status_key(status: DeliveryStatus, account_id: &AccountId, id: &DeliveryId) -> Option<String> {
    match status {
        DeliveryStatus::Dead => Some(dead_key(account_id)),
        DeliveryStatus::Pending => Some(pending_key(id)),
        _ => None,
    }
}

#[async_trait]
impl DeliveryLog for DynamoDeliveryLog {
    async fn create_batch(&self, deliveries: &[Delivery]) -> Result<Vec<bool>> {
        // Conditional writes cannot be batched; they go out concurrently instead.
        futures::future::try_join_all(deliveries.iter().map(|d| self.create(d))).await
    }

    async fn move_status(
        &self,
        account_id: &AccountId,
        id: &DeliveryId,
        from: (DeliveryStatus, u32),
        to: DeliveryStatus,
        at: Timestamp,
    ) -> Result<bool> {
        // A success kept in its listing alone gets its item (see `listed`).
        if from.0 == DeliveryStatus::Succeeded {
            if let Some(moved) = self
                .move_listed_success(account_id, id, from, to, at)
                .await?
            {
                return Ok(moved);
            }
        }
        // A listed delivery moves into the index (see the type): its subscription is read
        // for the key. Only a success is listed, and a move of one is rare (a retry asked
        // for); a redrive or the sweep moves a failed or pending one, never listed.
        let listed = match from.0 {
            DeliveryStatus::Succeeded => self.listed_subscription(id).await?,
            _ => None,
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(id.as_str()))
            .key("sk", s(DELIVERY_SK))
            .condition_expression(
                "attribute_exists(pk) AND #acct = :acct AND #st = :from AND #ac = :count",
            )
            .expression_attribute_names("#acct", "account_id")
            .expression_attribute_names("#st", "status")
            .expression_attribute_names("#ac", "attempt_count")
            .expression_attribute_names("#ua", "updated_at")
            .expression_attribute_names("#na", "next_attempt_at")
            .expression_attribute_names("#sk", "status_key")
            .expression_attribute_values(":acct", s(account_id.as_str()))
            .expression_attribute_names("#ex", "expires_at")
            .expression_attribute_values(":from", s(from.0.as_str()))
            .expression_attribute_values(":count", n(from.1))
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":ua", ms(at))
            // A moved delivery lives on: it keeps the table's retention from now.
            .expression_attribute_values(":exp", n(self.expires_at(at)));
        let mut set = vec!["#st = :to", "#ua = :ua", "#ex = :exp"];
        let mut remove = Vec::new();
        if let Some(subscription_id) = listed {
            set.push("#subk = :subk");
            remove.push("#li");
            request = request
                .expression_attribute_names("#subk", "sub_key")
                .expression_attribute_values(":subk", s(sub_key(account_id, &subscription_id)))
                .expression_attribute_names("#li", LISTED_IN);
        }
        if to == DeliveryStatus::Pending {
            set.push("#na = :na");
            request = request.expression_attribute_values(":na", ms(at));
        } else {
            remove.push("#na");
        }
        match status_key(to, account_id, id) {
            Some(key) => {
                set.push("#sk = :sk");
                request = request.expression_attribute_values(":sk", s(key));
            }
            None => remove.push("#sk"),
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        match request.update_expression(expression).send().await {
            Ok(_) => Ok(true),
            Err(e) => match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(_) => Ok(false),
                other => Err(storage_error(other)),
            },
        }
    }

    async fn record(&self, updates: &[DeliveryUpdate]) -> Result<Vec<bool>> {
        // Attempts first, outcomes after: a reader that sees a delivery's outcome (or its
        // attempt count) always finds every attempt behind it. The reverse order left a
        // window in which a delivery read `succeeded` with its last attempt missing. A crash
        // between the two leaves an attempt whose outcome is not applied yet; the message is
        // then not acknowledged and comes back, as for any failed write.
        //
        // A delivery is logged from its first outcome on (see the port). A first try is
        // written as the delivery's creation, and only if its delivery exists already as an
        // update of it; any other outcome the other way round. Each wrong guess costs a
        // refused conditional write: a write unit. A first-try success that may be kept
        // short writes no attempt item unless its delivery exists.
        //
        // The first-try successes are listed for their subscriptions before they are
        // created (see the type); those whose ids say their event's receipt are kept in
        // their listing alone, with no item (see `listed`).
        let items = updates
            .iter()
            .filter(|u| !u.kept_short_if_first())
            .filter_map(|u| u.attempt.as_ref().map(|a| self.attempt_item(u, a)))
            .collect::<Result<Vec<_>>>()?;
        let (listed, ()) =
            futures::future::try_join(self.list_first_successes(updates), self.batch_put(items))
                .await?;
        let listed = &listed;
        // At most so many writes at once, in order: a batch of packs logs up to 200
        // outcomes, and a small function opening that many connections at once spends
        // seconds on TLS handshakes. (Made first, then run: a stream mapping a closure over
        // borrowed updates trips the compiler's `Send` inference.)
        let writes: Vec<_> = updates
            .iter()
            .map(|u| async move {
                if u.first_try {
                    let listing = match listed.get(&u.delivery_id) {
                        Some(Listed::Only) if u.kept_short_if_first() => return Ok(true),
                        Some(Listed::InItem(key)) => Some(key.as_str()),
                        _ => None,
                    };
                    if self.create_first(u, listing).await? {
                        return Ok(true);
                    }
                    if let Some(a) = u.attempt.as_ref().filter(|_| u.kept_short_if_first()) {
                        self.batch_put(vec![self.attempt_item(u, a)?]).await?;
                    }
                }
                match self.apply(u).await {
                    Ok(()) => Ok(true),
                    // Not logged (a later try whose delivery expired, a skip or a dead letter
                    // without an attempt before), or another account's.
                    Err(Error::NotFound) if !u.first_try => {
                        // A success kept in its listing alone gets its item first, which
                        // this outcome then updates (see `listed`).
                        if self
                            .give_listed_success_its_item(&u.account_id, &u.delivery_id)
                            .await?
                        {
                            self.apply(u).await.map(|()| true)
                        } else {
                            self.create_first(u, None).await
                        }
                    }
                    Err(Error::NotFound) => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .collect();
        let found: Vec<bool> = futures::stream::iter(writes)
            .buffered(MAX_WRITES_AT_ONCE)
            .try_collect()
            .await?;
        self.add_to_slots(slot_deltas(updates)).await;
        Ok(found)
    }

    async fn get(&self, account_id: &AccountId, id: &DeliveryId) -> Result<Option<Delivery>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(id.as_str()))
            .key("sk", s(DELIVERY_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(storage_error)?;
        match out.item() {
            Some(item) => Ok(Some(item)
                .filter(|i| !expired(i, now_secs()))
                .filter(|i| get_s(i, "account_id").is_ok_and(|a| a == account_id.as_str()))
                .map(delivery_from_item)
                .transpose()?),
            // A first-try success kept in its listing alone.
            None => Ok(self
                .listed_success(account_id, id)
                .await?
                .map(|(delivery, _)| delivery)),
        }
    }

    async fn attempts(&self, account_id: &AccountId, id: &DeliveryId) -> Result<Vec<Attempt>> {
        // The delivery's whole item collection: its attempts sort before the delivery item
        // (`attempt#…` < `delivery`), which may hold a first-try success kept in short.
        let items = all_items(|start| {
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(id.as_str()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
        })
        .await?;
        if items.is_empty() {
            // A first-try success kept in its listing alone.
            return Ok(self
                .listed_success(account_id, id)
                .await?
                .map(|(_, attempts)| attempts)
                .unwrap_or_default());
        }
        let ours: Vec<&Item> = items
            .iter()
            .filter(|i| get_s(i, "account_id").is_ok_and(|a| a == account_id.as_str()))
            .collect();
        let short = match ours
            .iter()
            .find(|i| get_s(i, "sk").is_ok_and(|sk| sk == DELIVERY_SK))
        {
            Some(d) => short_attempt(d)?,
            None => None,
        };
        let first_number = 1 + short.is_some() as u32;
        // Sorted by key, so oldest first; numbered in that order.
        let logged = ours
            .into_iter()
            .filter(|i| get_s(i, "sk").is_ok_and(|sk| sk.starts_with("attempt#")))
            .zip(first_number..)
            .map(|(item, number)| attempt_from_item(item, number));
        short.into_iter().map(Ok).chain(logged).collect()
    }

    async fn list_for_event(
        &self,
        account_id: &AccountId,
        event_id: &EventId,
    ) -> Result<Vec<Delivery>> {
        // Those the index has, and those of the subscriptions the event lists (ingest's
        // own fan-out, whose deliveries leave the index out): a delivery may be in both.
        let indexed = all_items(|start| {
            self.client
                .query()
                .table_name(&self.table)
                .index_name(BY_EVENT_INDEX)
                .key_condition_expression("event_key = :k")
                .expression_attribute_values(":k", s(event_key(account_id, event_id)))
                .set_exclusive_start_key(start)
        });
        let listed = async {
            let Some((subs, received_at)) = super::events::listed_subscriptions(
                &self.client,
                &self.events_table,
                account_id,
                event_id,
            )
            .await?
            else {
                return Ok((Vec::new(), Vec::new()));
            };
            // Under both id shapes: the event may have been fanned out before ids began
            // with their event's receipt.
            let ids: Vec<DeliveryId> = subs
                .iter()
                .flat_map(|sub| {
                    [
                        DeliveryId::of(account_id, event_id, received_at, sub),
                        DeliveryId::without_receipt_time(account_id, event_id, sub),
                    ]
                })
                .collect();
            futures::future::try_join(
                self.get_deliveries(&ids),
                self.listed_successes_of_event(account_id, event_id, received_at),
            )
            .await
        };
        let (indexed, (listed, kept_in_listings)) =
            futures::future::try_join(indexed, listed).await?;
        // The copy read by id is the consistent one: it replaces the index's.
        let mut by_id: HashMap<DeliveryId, Delivery> = HashMap::new();
        for d in indexed.iter().map(delivery_from_item) {
            let d = d?;
            by_id.insert(d.id.clone(), d);
        }
        for d in listed.into_iter().filter(|d| &d.account_id == account_id) {
            by_id.insert(d.id.clone(), d);
        }
        // Shown from a listing only while it has no item (`listed_successes` checks).
        for d in kept_in_listings {
            by_id.entry(d.id.clone()).or_insert(d);
        }
        let mut deliveries: Vec<Delivery> = by_id.into_values().collect();
        deliveries.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(deliveries)
    }

    async fn list_for_subscription(
        &self,
        account_id: &AccountId,
        subscription_id: &SubscriptionId,
        status: Option<DeliveryStatus>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        let cursor = match cursor {
            None => SubscriptionCursor {
                listed: Side::Start,
                indexed: Side::Start,
            },
            Some(c) => SubscriptionCursor::decode(c)?,
        };
        // Only first-try successes are listed: a list of another status is the index's
        // (and its cursor keeps the listings' side as it came, should it be used without
        // that filter).
        let bypassed = !matches!(status, None | Some(DeliveryStatus::Succeeded));
        let listed_side = match bypassed {
            true => Side::Done,
            false => cursor.listed.clone(),
        };
        let want = limit + 1;
        // Both places are read at once.
        let listed_read = async {
            Ok::<_, Error>(match &listed_side {
                Side::Done => (Vec::new(), None),
                side => {
                    let from = match side {
                        Side::At(p) => Some(p.clone()),
                        _ => None,
                    };
                    let walk = self
                        .subscription_listings(account_id, subscription_id)
                        .walk(
                            from,
                            self.oldest_listing_ms(),
                            want,
                            |listing| {
                                Ok(listing_column(listing, "ids")?
                                    .into_iter()
                                    .map(|id| (id, true))
                                    .collect())
                            },
                            |run| self.listed_deliveries(account_id, subscription_id, run),
                        )
                        .await?;
                    (walk.found, walk.stopped_at)
                }
            })
        };
        let indexed_read = async {
            Ok::<_, Error>(match &cursor.indexed {
                Side::Done => (Vec::new(), false),
                side => {
                    let from = match side {
                        Side::At(c) => Some(c.as_str()),
                        _ => None,
                    };
                    let (items, next) = self
                        .index_items(
                            BY_SUBSCRIPTION_INDEX,
                            BY_SUBSCRIPTION_KEYS,
                            ("sub_key = :k", ":k", sub_key(account_id, subscription_id)),
                            status,
                            from,
                            want,
                        )
                        .await?;
                    let deliveries = items
                        .into_iter()
                        .map(|i| Ok((delivery_from_item(&i)?, i)))
                        .collect::<Result<Vec<_>>>()?;
                    (deliveries, next.is_some())
                }
            })
        };
        let ((listed, listed_stopped), (indexed, index_has_more)) =
            futures::future::try_join(listed_read, indexed_read).await?;
        // The listings stopped at their bound before finding all they wanted: what lies
        // past where they stopped is not looked at yet, so nothing older is taken from the
        // index this time.
        let listed_bound = (listed.len() < want)
            .then(|| listed_stopped.as_ref().and_then(ListingPosition::at_ms))
            .flatten();
        // Newest first by creation, a listed one first on a tie.
        let (mut from_listed, mut from_index) = (0, 0);
        let mut items = Vec::with_capacity(limit);
        while items.len() < limit {
            let next_listed = listed.get(from_listed);
            let next_indexed = indexed
                .get(from_index)
                .filter(|(d, _)| listed_bound.is_none_or(|b| d.created_at.as_millis() > b));
            let take_listed = match (next_listed, next_indexed) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((_, l)), Some((i, _))) => l.created_at >= i.created_at,
            };
            if take_listed {
                items.push(listed[from_listed].1.clone());
                from_listed += 1;
            } else {
                items.push(indexed[from_index].0.clone());
                from_index += 1;
            }
        }
        let next = SubscriptionCursor {
            listed: match listed_side {
                _ if bypassed => cursor.listed,
                Side::Done => Side::Done,
                _ if from_listed == listed.len() => match listed_stopped {
                    // A walk that found all it wanted stopped at its last, taken here.
                    Some(p) if listed.len() < want => Side::At(p),
                    _ if listed.len() < want => Side::Done,
                    _ => Side::At(listed[from_listed - 1].0.clone()),
                },
                _ if from_listed > 0 => Side::At(listed[from_listed - 1].0.clone()),
                unchanged => unchanged,
            },
            indexed: match cursor.indexed {
                Side::Done => Side::Done,
                _ if from_index == indexed.len() && !index_has_more => Side::Done,
                _ if from_index > 0 => Side::At(encode_cursor(
                    &indexed[from_index - 1].1,
                    BY_SUBSCRIPTION_KEYS,
                )),
                unchanged => unchanged,
            },
        };
        let done =
            matches!(next.indexed, Side::Done) && (bypassed || matches!(next.listed, Side::Done));
        Ok(Page {
            items,
            next_cursor: (!done).then(|| next.encode()),
        })
    }

    async fn list_dead(
        &self,
        account_id: &AccountId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        self.index_page(
            BY_STATUS_INDEX,
            BY_STATUS_KEYS,
            ("status_key = :k", ":k", dead_key(account_id)),
            None,
            cursor,
            limit,
        )
        .await
    }

    /// A query of the `by_status` index's pending shards, keeping the deliveries due before
    /// `before`: only deliveries that failed are there (a delivery is logged from its first
    /// outcome), so a sweep reads the few that are retrying, not the table. Until a whole
    /// scan pass has given every pending delivery its key, and again once a week
    /// (`PENDING_INDEXED_PK`), the sweep scans instead (see `overdue_scanned`); a pass cut
    /// short goes on at the next sweep, which then reads only the rest of the table. A
    /// cursor says which of the two it continues.
    async fn overdue(
        &self,
        before: Timestamp,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        match cursor {
            Some(c) => match c.strip_prefix(INDEXED_CURSOR) {
                Some(rest) => self.overdue_indexed(before, Some(rest), limit).await,
                None => self.overdue_scanned(before, Some(c), limit).await,
            },
            None => match self.scan_state().await? {
                ScanState::Query => self.overdue_indexed(before, None, limit).await,
                ScanState::Scan(under_way) => {
                    self.overdue_scanned(before, under_way.as_deref(), limit)
                        .await
                }
            },
        }
    }

    async fn stats_slots(
        &self,
        account_id: &AccountId,
        subscription_id: Option<&SubscriptionId>,
        since: Timestamp,
        grain: StatsGrain,
    ) -> Result<Vec<StatsSlot>> {
        let pk = stats_pk(account_id);
        // One range of the account's partition from `since` on; a subscription's slots are
        // those of the range that name it.
        let items = all_items(|start| {
            let query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk >= :from")
                .expression_attribute_values(":pk", s(&pk))
                .expression_attribute_values(
                    ":from",
                    s(format!("{:013}", since.as_millis().max(0))),
                )
                .set_exclusive_start_key(start);
            match subscription_id {
                Some(sub) => query
                    .filter_expression("#sub = :sub")
                    .expression_attribute_names("#sub", "subscription_id")
                    .expression_attribute_values(":sub", s(sub.as_str())),
                None => query,
            }
        })
        .await?;
        let now = now_secs();
        let slots = items
            .iter()
            .filter(|i| !expired(i, now))
            .map(slot_from_item)
            .collect::<Result<Vec<_>>>()?;
        // Only slots are kept here: an hour item beside them would add a write unit to
        // every batch's outcomes, which the console's rare reads do not repay. Hours are
        // summed on read.
        Ok(roll_up(slots, grain, since))
    }
}

/// Stats items share the deliveries table: partition `stats#<account>`, sort `<slot start
/// ms, 13 digits>#<subscription>`. A report over a window is one range of the account's
/// partition, however long its history: the account's (the dashboard, the endpoint list)
/// reads just the window; a subscription's reads the window's slots of every subscription
/// and keeps its own (storage v2 may give it a range of its own). They carry none of the
/// indexes' keys, so no index sees them, and the sweep's scan skips them (`sk` is not
/// `delivery`). One item per subscription and slot takes every batch's `ADD`s for five
/// minutes: about 1 000 updates a second at most, 10 000 deliveries a second to one
/// subscription in batches of 10.
fn stats_pk(account_id: &AccountId) -> String {
    format!("stats#{account_id}")
}

fn stats_sk(subscription_id: &SubscriptionId, start: Timestamp) -> String {
    format!("{:013}#{subscription_id}", start.as_millis().max(0))
}

/// Attribute names of a stats item: `succeeded`, `failed`, `dead`; `h<bin>` per histogram
/// bin; `c_<cause>`, `l_<cause>` (last seen, ms), `x_<cause>` (example ids) per cause.
const HISTOGRAM_PREFIX: &str = "h";
const CAUSE_COUNT_PREFIX: &str = "c_";
const CAUSE_LAST_PREFIX: &str = "l_";
const CAUSE_EXAMPLES_PREFIX: &str = "x_";

impl DynamoDeliveryLog {
    /// Adds each slot's delta with one `UpdateItem` (`ADD` on counters, so concurrent
    /// batches add up). Best effort, on purpose: the outcomes are already written, and a
    /// failure here must not return the message, which would send the webhook again. A
    /// cause's last-seen time and examples are those of the latest batch to write them.
    async fn add_to_slots(&self, deltas: std::collections::BTreeMap<SlotKey, SlotStats>) {
        let writes = deltas.into_iter().map(|(key, delta)| async move {
            let result = self.add_to_slot(&key, &delta).await;
            if let Err(e) = result {
                tracing::error!(
                    error = %e,
                    account_id = %key.account_id,
                    subscription_id = %key.subscription_id,
                    "stats slot not updated; the outcomes are recorded"
                );
            }
        });
        futures::future::join_all(writes).await;
    }

    async fn add_to_slot(&self, key: &SlotKey, delta: &SlotStats) -> Result<()> {
        let mut counters: Vec<(String, u64)> = vec![
            ("succeeded".into(), delta.succeeded),
            ("failed".into(), delta.failed),
            ("dead".into(), delta.dead),
        ];
        counters.extend(
            delta
                .latency
                .bins()
                .map(|(bin, count)| (format!("{HISTOGRAM_PREFIX}{bin}"), count)),
        );
        let mut sets: Vec<(String, AttributeValue)> = vec![
            ("subscription_id".into(), s(key.subscription_id.as_str())),
            ("slot".into(), ms(key.start)),
            (
                "expires_at".into(),
                n(self.expires_at(key.start + domain::stats::SLOT)),
            ),
        ];
        for (cause, c) in &delta.causes {
            let k = cause.key();
            counters.push((format!("{CAUSE_COUNT_PREFIX}{k}"), c.count));
            sets.push((format!("{CAUSE_LAST_PREFIX}{k}"), ms(c.last_seen)));
            let examples = c.examples.iter().map(|id| s(id.as_str())).collect();
            sets.push((
                format!("{CAUSE_EXAMPLES_PREFIX}{k}"),
                AttributeValue::L(examples),
            ));
        }
        // Placeholders for every name and value: cause keys are not all valid as names.
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let mut clause = |name: String, value: AttributeValue, joiner: &str| {
            let i = names.len();
            names.insert(format!("#n{i}"), name);
            values.insert(format!(":v{i}"), value);
            format!("#n{i}{joiner}:v{i}")
        };
        let set: Vec<String> = sets
            .into_iter()
            .map(|(name, value)| clause(name, value, " = "))
            .collect();
        let add: Vec<String> = counters
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .map(|(name, count)| clause(name, n(count), " "))
            .collect();
        let mut expression = format!("SET {}", set.join(", "));
        if !add.is_empty() {
            expression.push_str(&format!(" ADD {}", add.join(", ")));
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(stats_pk(&key.account_id)))
            .key("sk", s(stats_sk(&key.subscription_id, key.start)))
            .update_expression(expression)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map_err(|e| storage_error(e.into_service_error()))?;
        Ok(())
    }
}

fn slot_from_item(item: &Item) -> Result<StatsSlot> {
    let corrupt = |what: &str| Error::storage(format!("corrupt stats item: {what}"));
    let count = |name: &str| opt_n::<u64>(item, name).unwrap_or(0);
    let mut stats = SlotStats {
        succeeded: count("succeeded"),
        failed: count("failed"),
        dead: count("dead"),
        latency: LatencyHistogram::default(),
        causes: Default::default(),
    };
    for (name, value) in item {
        if let Some(bin) = name
            .strip_prefix(HISTOGRAM_PREFIX)
            .and_then(|b| b.parse::<u16>().ok())
        {
            if bin > LatencyHistogram::MAX_BIN {
                return Err(corrupt(name));
            }
            let n = value.as_n().ok().and_then(|n| n.parse().ok());
            stats
                .latency
                .add_count(bin, n.ok_or_else(|| corrupt(name))?);
        } else if let Some(key) = name.strip_prefix(CAUSE_COUNT_PREFIX) {
            let cause = FailureCause::parse(key).ok_or_else(|| corrupt(name))?;
            let examples = item
                .get(&format!("{CAUSE_EXAMPLES_PREFIX}{key}"))
                .and_then(|v| v.as_l().ok())
                .map(|ids| {
                    ids.iter()
                        .filter_map(|id| id.as_s().ok())
                        .map(|id| DeliveryId::parse(id.as_str()).map_err(|_| corrupt(name)))
                        .collect::<Result<Vec<_>>>()
                })
                .transpose()?
                .unwrap_or_default();
            stats.causes.insert(
                cause,
                CauseStats {
                    count: count(name),
                    last_seen: opt_ms(item, &format!("{CAUSE_LAST_PREFIX}{key}"))
                        .unwrap_or_default(),
                    examples,
                },
            );
        }
    }
    Ok(StatsSlot {
        subscription_id: get_id(item, "subscription_id")?,
        start: get_ms(item, "slot")?,
        stats,
    })
}
