//! First-try successes kept only in their listing: no delivery item, no attempt item.
//!
//! A deliver batch's first-try successes to one subscription, of one request (the same
//! creation and receipt millisecond), are written as one listing that holds each one's
//! record ([`ListedSuccess`]: event, times, status, latency, the signature sent) beside
//! its id, and the URL and request headers they share once. A *pointer* in the partition
//! `receipts#<account>#<receipt ms>` names the listing and its ids: a delivery id begins
//! with its event's receipt millisecond (`DeliveryId::receipt_ms`), so a read by id finds
//! the listing from the id alone. About 200 bytes a success and one pointer per listing,
//! against a write unit each for an item of its own.
//!
//! A success is shown from the *first* listing naming it (the pointers of its millisecond,
//! sorted by subscription and listing key, say which): a message handled twice and listed
//! twice is one delivery. It is not shown from a listing once it has an item: a later
//! change (a retry asked for) gives it one, which wins (see `move_listed_success`).

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::super::attributes::{expired, get_s, n, now_secs, s, Item};
use super::super::listing::listing_column;
use super::super::paging::{all_items, batch_get_items};
use super::super::storage_error;
use super::{delivery_key, listing_partition, DynamoDeliveryLog, FIRST_LATENCY};
use app::{Error, Result};
use domain::catalog::EventType;
use domain::delivery::{Attempt, Delivery, DeliveryStatus, DeliveryUpdate};
use domain::ids::{AccountId, DeliveryId, EventId, SubscriptionId};
use domain::time::Timestamp;

/// The listing's column of records, one per id (the `ids` column), in the same order.
pub(super) const RECORDS: &str = "records";
/// The listing's URL and request headers (as logged, the per-delivery values left out)
/// that its records share.
const URL: &str = "url";
const HEADERS: &str = "headers";

/// Request headers whose values differ from one delivery to the next: `webhook-id` is the
/// delivery id itself; the others are kept in each record (`v`), in this order.
const WEBHOOK_ID: &str = "webhook-id";
const PER_DELIVERY: [&str; 2] = ["webhook-timestamp", "webhook-signature"];

/// One first-try success as its listing keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct ListedSuccess {
    #[serde(rename = "e")]
    event_id: String,
    #[serde(rename = "t")]
    event_type: String,
    /// When fan-out made the delivery, when its attempt was sent, and its outcome logged.
    #[serde(rename = "c")]
    created_ms: i64,
    #[serde(rename = "a")]
    sent_ms: i64,
    #[serde(rename = "o")]
    logged_ms: i64,
    #[serde(rename = "s")]
    status_code: u16,
    #[serde(rename = "l")]
    latency_ms: u64,
    /// The values of [`PER_DELIVERY`] sent, when the rest of its headers are the listing's.
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    values: Option<Vec<String>>,
    /// Its headers in full, when they are not the listing's (the subscription changed
    /// between two of its deliveries in a batch).
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    headers: Option<Vec<(String, String)>>,
    /// Its URL, when it is not the listing's.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

/// Request headers, as logged: name and value.
type Headers = Vec<(String, String)>;

/// `headers` with the per-delivery values left out (empty), and those values in order;
/// `None` if its `webhook-id` is not `id` (it always is: then it is kept in full).
fn split_headers(headers: &[(String, String)], id: &DeliveryId) -> Option<(Headers, Vec<String>)> {
    let mut shared = Vec::with_capacity(headers.len());
    let mut values = Vec::new();
    for (name, value) in headers {
        if name == WEBHOOK_ID {
            if value != id.as_str() {
                return None;
            }
            shared.push((name.clone(), String::new()));
        } else if PER_DELIVERY.contains(&name.as_str()) {
            values.push(value.clone());
            shared.push((name.clone(), String::new()));
        } else {
            shared.push((name.clone(), value.clone()));
        }
    }
    Some((shared, values))
}

/// The headers `split_headers` split, put back together.
fn join_headers(
    shared: &[(String, String)],
    values: &[String],
    id: &DeliveryId,
) -> Vec<(String, String)> {
    let mut values = values.iter();
    shared
        .iter()
        .map(|(name, value)| {
            let value = if name == WEBHOOK_ID {
                id.to_string()
            } else if PER_DELIVERY.contains(&name.as_str()) {
                values.next().cloned().unwrap_or_default()
            } else {
                value.clone()
            };
            (name.clone(), value)
        })
        .collect()
}

/// The partition of the pointers to the listings of deliveries whose event was received
/// at `ms`.
fn pointers_pk(account_id: &AccountId, ms: i64) -> String {
    format!("receipts#{account_id}#{ms}")
}

/// A pointer's sort key: its listing's subscription and key. No id holds `#`, so the
/// first `#` ends the subscription.
fn pointer_sk(subscription_id: &SubscriptionId, listing: &str) -> String {
    format!("{subscription_id}#{listing}")
}

/// Where a listed success is shown from: its subscription and its first listing.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FirstListing {
    pub subscription_id: SubscriptionId,
    pub listing: String,
}

/// The listings (and their records) of a group of first-try successes, ready to write.
pub(super) struct Group<'u> {
    pub account_id: &'u AccountId,
    pub subscription_id: &'u SubscriptionId,
    pub receipt_ms: i64,
    pub listing: String,
    pub updates: Vec<&'u DeliveryUpdate>,
}

impl DynamoDeliveryLog {
    /// The listing and its pointer of `group`, as items to write together.
    pub(super) fn listed_success_items(&self, group: &Group<'_>) -> Result<Vec<Item>> {
        let first = group
            .updates
            .first()
            .and_then(|u| u.attempt.as_ref())
            .ok_or_else(|| Error::storage("an empty group of listed successes"))?;
        let shared_url = first.url.clone();
        let shared_headers = split_headers(&first.request_headers, &group.updates[0].delivery_id)
            .map(|(shared, _)| shared)
            .unwrap_or_default();
        let mut ids = Vec::with_capacity(group.updates.len());
        let mut records = Vec::with_capacity(group.updates.len());
        for u in &group.updates {
            let a = u
                .attempt
                .as_ref()
                .ok_or_else(|| Error::storage("a listed success without its attempt"))?;
            let (values, headers) = match split_headers(&a.request_headers, &u.delivery_id) {
                Some((shared, values)) if shared == shared_headers => (Some(values), None),
                _ => (None, Some(a.request_headers.clone())),
            };
            let record = ListedSuccess {
                event_id: u.event_id.to_string(),
                event_type: u.event_type.to_string(),
                created_ms: u.created_at.as_millis(),
                sent_ms: a.at.as_millis(),
                logged_ms: u.at.as_millis(),
                status_code: a.status_code.unwrap_or_default(),
                latency_ms: a.latency_ms,
                values,
                headers,
                url: (a.url != shared_url).then(|| a.url.clone()),
            };
            ids.push(s(u.delivery_id.as_str()));
            records.push(s(
                serde_json::to_string(&record).map_err(|e| Error::storage(e.to_string()))?
            ));
        }
        let expires_at = group
            .updates
            .iter()
            .map(|u| self.expires_at(u.at))
            .max()
            .unwrap_or_default();
        let listing = Item::from([
            (
                "pk".to_string(),
                s(listing_partition(group.account_id, group.subscription_id)),
            ),
            ("sk".to_string(), s(&group.listing)),
            ("ids".to_string(), AttributeValue::L(ids.clone())),
            (RECORDS.to_string(), AttributeValue::L(records)),
            (URL.to_string(), s(shared_url)),
            (
                HEADERS.to_string(),
                s(serde_json::to_string(&shared_headers)
                    .map_err(|e| Error::storage(e.to_string()))?),
            ),
            ("expires_at".to_string(), n(expires_at)),
        ]);
        let pointer = Item::from([
            (
                "pk".to_string(),
                s(pointers_pk(group.account_id, group.receipt_ms)),
            ),
            (
                "sk".to_string(),
                s(pointer_sk(group.subscription_id, &group.listing)),
            ),
            ("ids".to_string(), AttributeValue::L(ids)),
            ("expires_at".to_string(), n(expires_at)),
        ]);
        Ok(vec![listing, pointer])
    }

    /// The listings naming each of `ids` that is listed, in key order (the first is where
    /// it is shown), from the pointers of their receipt milliseconds (one query each).
    async fn listings_naming(
        &self,
        account_id: &AccountId,
        ids: impl IntoIterator<Item = &DeliveryId>,
    ) -> Result<HashMap<DeliveryId, Vec<FirstListing>>> {
        let mut by_ms: BTreeMap<i64, Vec<&DeliveryId>> = BTreeMap::new();
        for id in ids {
            if let Some(ms) = id.receipt_ms() {
                by_ms.entry(ms).or_default().push(id);
            }
        }
        let reads = by_ms.into_iter().map(|(ms, wanted)| async move {
            let pointers = self.pointers(account_id, ms).await?;
            listings_named(&pointers, |id| {
                Ok(wanted
                    .iter()
                    .find(|w| w.as_str() == id)
                    .map(|w| (*w).clone()))
            })
        });
        Ok(futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    /// The pointers to the listings of deliveries whose event was received at `ms`, in key
    /// order.
    async fn pointers(&self, account_id: &AccountId, ms: i64) -> Result<Vec<Item>> {
        all_items(|start| {
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pointers_pk(account_id, ms)))
                .consistent_read(true)
                .set_exclusive_start_key(start)
        })
        .await
    }

    /// The listings at `keys` (subscription and listing key) that are live.
    async fn listings(
        &self,
        account_id: &AccountId,
        keys: impl IntoIterator<Item = &FirstListing>,
    ) -> Result<Vec<Item>> {
        let mut unique: Vec<Item> = Vec::new();
        for key in keys {
            let item = Item::from([
                (
                    "pk".to_string(),
                    s(listing_partition(account_id, &key.subscription_id)),
                ),
                ("sk".to_string(), s(&key.listing)),
            ]);
            if !unique.contains(&item) {
                unique.push(item);
            }
        }
        let now = now_secs();
        Ok(self
            .get_items(unique)
            .await?
            .into_iter()
            .filter(|i| !expired(i, now))
            .collect())
    }

    /// The items at `keys` that exist, read consistently. A few are read one by one: a
    /// read by id (deliver's recheck) needs no `BatchGetItem`, which its role lacks.
    pub(super) async fn get_items(&self, keys: Vec<Item>) -> Result<Vec<Item>> {
        const ONE_BY_ONE: usize = 4;
        if keys.len() > ONE_BY_ONE {
            return batch_get_items(&self.client, &self.table, keys).await;
        }
        let reads = keys.into_iter().map(|key| async move {
            self.client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key))
                .consistent_read(true)
                .send()
                .await
                .map(|out| out.item)
                .map_err(storage_error)
        });
        Ok(futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    /// The listed successes among `ids` that have no delivery item: each with the listing
    /// it is shown from (the first naming it), and its attempts. One handled twice (a
    /// message received twice, each copy sent and listed) is one delivery with two
    /// attempts, as a store with an item per delivery counts it.
    pub(super) async fn listed_successes(
        &self,
        account_id: &AccountId,
        ids: &[DeliveryId],
    ) -> Result<Vec<(FirstListing, Delivery, Vec<Attempt>)>> {
        let naming = self.listings_naming(account_id, ids).await?;
        self.shown_from_listings(account_id, naming).await
    }

    /// [`Self::listed_successes`] of the ids in `naming`, with the listings naming each.
    async fn shown_from_listings(
        &self,
        account_id: &AccountId,
        naming: HashMap<DeliveryId, Vec<FirstListing>>,
    ) -> Result<Vec<(FirstListing, Delivery, Vec<Attempt>)>> {
        if naming.is_empty() {
            return Ok(Vec::new());
        }
        let (listings, items) = futures::future::try_join(
            self.listings(account_id, naming.values().flatten()),
            self.get_items(naming.keys().map(delivery_key).collect()),
        )
        .await?;
        let with_items: Vec<String> = items.iter().filter_map(|i| get_s(i, "pk").ok()).collect();
        let mut records: HashMap<DeliveryId, Vec<(Delivery, Attempt)>> = HashMap::new();
        let mut read_from: HashMap<DeliveryId, Vec<String>> = HashMap::new();
        for listing in &listings {
            let key = get_s(listing, "sk")?;
            for (id, delivery, attempt) in records_of(account_id, listing)? {
                let named_here = naming.get(&id).is_some_and(|all| {
                    all.iter()
                        .any(|l| l.listing == key && l.subscription_id == delivery.subscription_id)
                });
                if named_here && !with_items.iter().any(|i| i == id.as_str()) {
                    read_from.entry(id.clone()).or_default().push(key.clone());
                    records.entry(id).or_default().push((delivery, attempt));
                }
            }
        }
        let mut shown = Vec::new();
        for (id, mut copies) in records {
            // Shown from the first listing naming it that holds it: a pointer whose listing
            // was never written (the write failed after it, and was made again otherwise)
            // names nothing.
            let Some(home) = naming.get(&id).and_then(|all| {
                all.iter().find(|l| {
                    l.subscription_id == copies[0].0.subscription_id
                        && read_from[&id].contains(&l.listing)
                })
            }) else {
                continue;
            };
            copies.sort_by_key(|(d, a)| (a.at, d.updated_at));
            let (mut delivery, _) = copies[0].clone();
            let (last, _) = copies.last().expect("at least one copy").clone();
            delivery.attempt_count = copies.len() as u32;
            delivery.updated_at = last.updated_at;
            delivery.last_latency_ms = last.last_latency_ms;
            let attempts = copies
                .into_iter()
                .zip(1..)
                .map(|((_, a), number)| Attempt {
                    attempt: number,
                    ..a
                })
                .collect();
            shown.push((home.clone(), delivery, attempts));
        }
        Ok(shown)
    }

    /// The listed success `id`, if it is one and has no item.
    pub(super) async fn listed_success(
        &self,
        account_id: &AccountId,
        id: &DeliveryId,
    ) -> Result<Option<(Delivery, Vec<Attempt>)>> {
        Ok(self
            .listed_successes(account_id, std::slice::from_ref(id))
            .await?
            .into_iter()
            .find(|(_, d, _)| &d.id == id)
            .map(|(_, d, a)| (d, a)))
    }

    /// The listed successes of the event `event_id`, received at `received_at`: from the
    /// pointers of that millisecond.
    pub(super) async fn listed_successes_of_event(
        &self,
        account_id: &AccountId,
        event_id: &EventId,
        received_at: Timestamp,
    ) -> Result<Vec<Delivery>> {
        // The pointers are read once: every id they name is looked up in them, not in a
        // second query of the same partition (`listings_naming`).
        let pointers = self.pointers(account_id, received_at.as_millis()).await?;
        let naming = listings_named(&pointers, |id| {
            DeliveryId::parse(id)
                .map(Some)
                .map_err(|_| Error::storage("corrupt pointer to a listing"))
        })?;
        Ok(self
            .shown_from_listings(account_id, naming)
            .await?
            .into_iter()
            .map(|(_, d, _)| d)
            .filter(|d| &d.event_id == event_id)
            .collect())
    }

    /// Moves the listed success `id` (no item of its own) from `from` to `to`: its item is
    /// created, with its first try kept in short and in `by_subscription`, and wins over
    /// its listing from then on. `None`: it is not a listed success without an item (the
    /// caller updates the item, if any).
    pub(super) async fn move_listed_success(
        &self,
        account_id: &AccountId,
        id: &DeliveryId,
        from: (DeliveryStatus, u32),
        to: DeliveryStatus,
        at: Timestamp,
    ) -> Result<Option<bool>> {
        let Some((mut delivery, attempts)) = self.listed_success(account_id, id).await? else {
            return Ok(None);
        };
        let Some((attempt, later)) = attempts.split_first() else {
            return Ok(None);
        };
        if (delivery.status, delivery.attempt_count) != from {
            return Ok(Some(false));
        }
        delivery.status = to;
        delivery.updated_at = at;
        delivery.next_attempt_at = (to == DeliveryStatus::Pending).then_some(at);
        Ok(self
            .create_item_from_listing(&delivery, attempt, later, at)
            .await?
            .then_some(true))
    }

    /// Gives the listed success `id` (no item of its own) its item, as it is, before
    /// something else would create one: an item hides its listing, so one made from a
    /// later outcome alone (a copy of its message handled again, a skip of its event
    /// posted again) would hide the success. Says whether it was one.
    pub(super) async fn give_listed_success_its_item(
        &self,
        account_id: &AccountId,
        id: &DeliveryId,
    ) -> Result<bool> {
        let Some((delivery, attempts)) = self.listed_success(account_id, id).await? else {
            return Ok(false);
        };
        let Some((attempt, later)) = attempts.split_first() else {
            return Ok(false);
        };
        self.create_item_from_listing(&delivery, attempt, later, delivery.updated_at)
            .await?;
        Ok(true)
    }

    /// Creates the item of a listed success as `delivery`, its first try kept in short and
    /// the `later` ones as attempt items, kept the retention from `at`. Says whether it
    /// was created (false: an item exists already).
    async fn create_item_from_listing(
        &self,
        delivery: &Delivery,
        attempt: &Attempt,
        later: &[Attempt],
        at: Timestamp,
    ) -> Result<bool> {
        let (id, account_id) = (&delivery.id, &delivery.account_id);
        let mut item = self.delivery_item(delivery);
        // A moved delivery lives on: it keeps the table's retention from now.
        item.insert("expires_at".into(), n(self.expires_at(at)));
        item.insert("first_at".into(), super::super::attributes::ms(attempt.at));
        item.insert("first_url".into(), s(&attempt.url));
        item.insert(
            "first_request_headers".into(),
            s(serde_json::to_string(&attempt.request_headers)
                .map_err(|e| Error::storage(e.to_string()))?),
        );
        if let Some(code) = attempt.status_code {
            item.insert("first_status".into(), n(code));
        }
        if !later.is_empty() {
            // `last_latency_ms` is the latest attempt's.
            item.insert(FIRST_LATENCY.into(), n(attempt.latency_ms));
        }
        // Its other attempts (handled twice) as attempt items, before the delivery item
        // that counts them: a reader never sees a count without its attempts.
        let later = later
            .iter()
            .map(|a| self.attempt_item_of(id, account_id, a))
            .collect::<Result<Vec<_>>>()?;
        self.batch_put(later).await?;
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match e.into_service_error() {
                // Created meanwhile: the item is the caller's to update.
                aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(_) => {
                    Ok(false)
                }
                other => Err(storage_error(other)),
            },
        }
    }
}

/// The listings `pointers` (of one millisecond, in key order) name for each id `pick`
/// keeps: a subscription's listings by creation, then by when they were sent (see
/// `ordered_listing_key`), so the first is where the delivery is shown from.
fn listings_named(
    pointers: &[Item],
    mut pick: impl FnMut(&str) -> Result<Option<DeliveryId>>,
) -> Result<HashMap<DeliveryId, Vec<FirstListing>>> {
    let corrupt = || Error::storage("corrupt pointer to a listing");
    let mut found: HashMap<DeliveryId, Vec<FirstListing>> = HashMap::new();
    for pointer in pointers {
        let sk = get_s(pointer, "sk")?;
        let (subscription, listing) = sk.split_once('#').ok_or_else(corrupt)?;
        let subscription_id = SubscriptionId::parse(subscription).map_err(|_| corrupt())?;
        for id in listing_column(pointer, "ids")? {
            if let Some(id) = pick(&id)? {
                found.entry(id).or_default().push(FirstListing {
                    subscription_id: subscription_id.clone(),
                    listing: listing.to_string(),
                });
            }
        }
    }
    Ok(found)
}

/// The listed successes a listing holds (none for a listing of ids only, written before),
/// each as its delivery and its attempt.
pub(super) fn records_of(
    account_id: &AccountId,
    listing: &Item,
) -> Result<Vec<(DeliveryId, Delivery, Attempt)>> {
    if !listing.contains_key(RECORDS) {
        return Ok(Vec::new());
    }
    let corrupt = || Error::storage("corrupt listing of successes");
    let ids = listing_column(listing, "ids")?;
    let records = listing_column(listing, RECORDS)?;
    if ids.len() != records.len() {
        return Err(corrupt());
    }
    let pk = get_s(listing, "pk")?;
    let subscription = pk
        .strip_prefix(&format!("subscription#{account_id}#"))
        .ok_or_else(corrupt)?;
    let subscription_id = SubscriptionId::parse(subscription).map_err(|_| corrupt())?;
    let shared_url = get_s(listing, URL)?;
    let shared_headers: Vec<(String, String)> =
        serde_json::from_str(&get_s(listing, HEADERS)?).map_err(|_| corrupt())?;
    ids.into_iter()
        .zip(records)
        .map(|(id, record)| {
            let id = DeliveryId::parse(id).map_err(|_| corrupt())?;
            let r: ListedSuccess = serde_json::from_str(&record).map_err(|_| corrupt())?;
            let headers = match (r.headers, r.values) {
                (Some(full), _) => full,
                (None, values) => join_headers(&shared_headers, &values.unwrap_or_default(), &id),
            };
            let attempt = Attempt::first_success(
                Timestamp::from_millis(r.sent_ms),
                r.url.unwrap_or_else(|| shared_url.clone()),
                headers,
                r.status_code,
                r.latency_ms,
            );
            let delivery = Delivery {
                id: id.clone(),
                account_id: account_id.clone(),
                subscription_id: subscription_id.clone(),
                event_id: EventId::parse(r.event_id).map_err(|_| corrupt())?,
                event_type: EventType::from_stored(r.event_type),
                status: DeliveryStatus::Succeeded,
                attempt_count: 1,
                created_at: Timestamp::from_millis(r.created_ms),
                updated_at: Timestamp::from_millis(r.logged_ms),
                next_attempt_at: None,
                last_error: None,
                last_latency_ms: Some(r.latency_ms),
            };
            Ok((id, delivery, attempt))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_split_and_join_back_as_sent() {
        let id = DeliveryId::parse("msg_1").unwrap();
        let sent = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("webhook-id".to_string(), "msg_1".to_string()),
            ("webhook-timestamp".to_string(), "1764547200".to_string()),
            ("webhook-signature".to_string(), "v1,abc=".to_string()),
            ("x-tenant".to_string(), "••••".to_string()),
        ];
        let (shared, values) = split_headers(&sent, &id).unwrap();
        assert_eq!(values, ["1764547200", "v1,abc="]);
        assert!(shared.iter().all(|(_, v)| !v.contains("abc")));
        assert_eq!(join_headers(&shared, &values, &id), sent);
        // Another delivery's webhook-id: kept in full instead.
        assert!(split_headers(&sent, &DeliveryId::parse("msg_2").unwrap()).is_none());
    }
}
