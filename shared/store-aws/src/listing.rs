//! Listings: how an item is found newest first without an index entry of its own.
//!
//! A global secondary index costs a write unit for every item it holds, however small. A
//! *listing* is an item of the same table, in a partition of its own per list (an account's
//! events, a subscription's deliveries), sorted `#list#<ms, 13 digits>#<hash>`, that names
//! the ids of the items written together in one millisecond (a request's events, a deliver
//! batch's first-try successes to one subscription): one write of a few units for up to
//! hundreds of items. Each listed item names its listing (`listed_in`), and the listing is
//! written *before* its items: an entry is shown only if its item exists and names that
//! listing. So a listing whose items were never written (the write failed after it) shows
//! nothing, and an item named again by a retry's listing is shown once, where it was first
//! listed. A reader takes its items from a listing's entries newest first, reads them by
//! key, and keeps those that pass that check (and any other of its own).

use std::collections::VecDeque;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};

use aws_sdk_dynamodb::types::AttributeValue;

use super::attributes::{expired, get_s, n, now_secs, s, Item};
use super::storage_error;
use app::{Error, Result};

/// What every listing's sort key starts with. No id holds `#` (the id rule), so nothing
/// else sorts among them.
pub(crate) const LISTING_PREFIX: &str = "#list#";
/// Just past every listing's sort key (`$` follows `#`).
const LISTINGS_END: &str = "#list$";
/// The attribute of a listed item naming its listing.
pub(crate) const LISTED_IN: &str = "listed_in";
/// Listings read by a page's first query (each names up to 100 items); each further query
/// of the page reads twice as many, up to [`MOST_LISTINGS_PER_QUERY`].
const FIRST_LISTINGS_PER_QUERY: i32 = 8;
const MOST_LISTINGS_PER_QUERY: i32 = 128;
/// Listings one page may look through. A filter that keeps few entries could otherwise read
/// every listing of the retention; past this many, the page ends short, with a position.
pub(crate) const MOST_LISTINGS_PER_PAGE: usize = 1_000;

/// Where a walk through listings stands: a listing, and how many of its entries (newest
/// first, kept or not) are behind.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ListingPosition {
    pub listing: String,
    pub shown: usize,
}

impl ListingPosition {
    /// The millisecond its listing is of.
    pub fn at_ms(&self) -> Option<i64> {
        listing_ms(&self.listing)
    }
}

/// An item named by a listing, not yet read: its id, and the position just after it.
pub(crate) struct Candidate {
    pub position: ListingPosition,
    pub id: String,
}

/// What a walk found: the items kept, each with the position just after it, and where the
/// walk stopped. `None`: every listing was looked through; else what follows `stopped_at`
/// is not looked at yet (the walk found what it wanted, or reached its bound).
pub(crate) struct Walk<T> {
    pub found: Vec<(ListingPosition, T)>,
    pub stopped_at: Option<ListingPosition>,
}

/// The sort key of a listing of `at_ms` naming `parts` (ids, and whatever else tells two
/// listings of one millisecond apart). The same parts give the same key, so the same
/// request retried in the same millisecond rewrites its listing; the hash is only ever
/// compared with the stored key, so it need not be stable across versions.
pub(crate) fn listing_key<'a>(at_ms: i64, parts: impl IntoIterator<Item = &'a str>) -> String {
    format!("{LISTING_PREFIX}{at_ms:013}#{:016x}", hash_of(parts))
}

/// [`listing_key`], with the listings of one millisecond ordered by `after_ms` (how long
/// after it their deliveries were sent, in milliseconds, up to 65 535): the hash's first
/// four hex digits give way to it. Listings naming the same deliveries (a message handled
/// twice) then keep the first handling's in front, which is where a delivery is shown from.
pub(crate) fn ordered_listing_key<'a>(
    at_ms: i64,
    after_ms: i64,
    parts: impl IntoIterator<Item = &'a str>,
) -> String {
    let order = after_ms.clamp(0, 0xFFFF) as u64;
    let key = (order << 48) | (hash_of(parts) & 0xFFFF_FFFF_FFFF);
    format!("{LISTING_PREFIX}{at_ms:013}#{key:016x}")
}

fn hash_of<'a>(parts: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut hasher = DefaultHasher::new();
    for part in parts {
        part.hash(&mut hasher);
    }
    hasher.finish()
}

/// Whether `key` is a listing's sort key as [`listing_key`] makes them: a cursor naming
/// anything else could make a query range over other items, or fail in DynamoDB.
pub(crate) fn is_listing_key(key: &str) -> bool {
    let Some(rest) = key.strip_prefix(LISTING_PREFIX) else {
        return false;
    };
    let bytes = rest.as_bytes();
    bytes.len() == 30
        && bytes[..13].iter().all(u8::is_ascii_digit)
        && bytes[13] == b'#'
        && bytes[14..].iter().all(u8::is_ascii_hexdigit)
}

fn listing_ms(key: &str) -> Option<i64> {
    key.strip_prefix(LISTING_PREFIX)?.get(..13)?.parse().ok()
}

/// A cursor of a list read from listings, as its caller hands it out: `cursor` as JSON, in
/// URL-safe base64.
pub(crate) fn encode_cursor_json(cursor: &impl serde::Serialize) -> String {
    use base64::Engine;
    let json = serde_json::to_vec(cursor).expect("a cursor serializes");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// The cursor `text` is, if it is one of `T` as [`encode_cursor_json`] makes them. `None`:
/// base64 of something else, which may be a cursor of the version before listings (a
/// place in an index) for the caller to try; not base64 at all is a bad cursor.
pub(crate) fn decode_cursor_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<Option<T>> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| Error::InvalidCursor)?;
    Ok(serde_json::from_slice(&bytes).ok())
}

/// The strings of a listing's list attribute `name`.
pub(crate) fn listing_column(listing: &Item, name: &str) -> Result<Vec<String>> {
    let corrupt = || Error::storage(format!("corrupt listing: {name}"));
    match listing.get(name) {
        Some(AttributeValue::L(values)) => values
            .iter()
            .map(|v| v.as_s().cloned().map_err(|_| corrupt()))
            .collect(),
        _ => Err(corrupt()),
    }
}

/// One list's listings: the table, and the partition they sit in.
pub(crate) struct Listings<'a> {
    pub client: &'a aws_sdk_dynamodb::Client,
    pub table: &'a str,
    /// The partition key's attribute name and value.
    pub partition: (&'a str, String),
    /// The sort key's attribute name.
    pub sort: &'a str,
}

impl Listings<'_> {
    /// Writes the listing `key`, with `columns` (list attributes of strings: `ids` first,
    /// in the order the items were written) and a TTL.
    pub async fn write(
        &self,
        key: &str,
        columns: Vec<(&str, Vec<String>)>,
        expires_at: i64,
    ) -> Result<()> {
        let mut item = Item::from([
            (self.partition.0.to_string(), s(&self.partition.1)),
            (self.sort.to_string(), s(key)),
            ("expires_at".to_string(), n(expires_at)),
        ]);
        for (name, values) in columns {
            item.insert(
                name.to_string(),
                AttributeValue::L(values.into_iter().map(s).collect()),
            );
        }
        self.client
            .put_item()
            .table_name(self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    /// Walks the listings newest first from `from` (or the newest), none of a millisecond
    /// before `oldest_ms`, until `want` items are kept or [`MOST_LISTINGS_PER_PAGE`]
    /// listings were looked through. `entries` gives a listing's entries in the order they
    /// were written, each with whether to consider it; `keep` reads a run of candidates
    /// and gives back those to show, in order, each with its position.
    pub async fn walk<T, E, K, Fut>(
        &self,
        from: Option<ListingPosition>,
        oldest_ms: i64,
        want: usize,
        entries: E,
        mut keep: K,
    ) -> Result<Walk<T>>
    where
        E: Fn(&Item) -> Result<Vec<(String, bool)>>,
        K: FnMut(Vec<Candidate>) -> Fut,
        Fut: Future<Output = Result<Vec<(ListingPosition, T)>>>,
    {
        let now = now_secs();
        let lower = format!("{LISTING_PREFIX}{:013}", oldest_ms.max(0));
        let upper = from
            .as_ref()
            .map_or(LISTINGS_END.to_string(), |p| p.listing.clone());
        let mut skip = from;
        let mut start = None;
        let mut per_query = FIRST_LISTINGS_PER_QUERY;
        let mut looked_through = 0;
        let mut listings_done = upper < lower;
        // The position after the last listing looked through, all of its entries included.
        let mut last_looked_at: Option<ListingPosition> = None;
        let mut candidates: VecDeque<Candidate> = VecDeque::new();
        let mut found: Vec<(ListingPosition, T)> = Vec::new();
        while found.len() < want {
            let needed = want - found.len();
            if candidates.len() < needed
                && !listings_done
                && looked_through < MOST_LISTINGS_PER_PAGE
            {
                let out = self
                    .client
                    .query()
                    .table_name(self.table)
                    .key_condition_expression("#p = :p AND #s BETWEEN :lo AND :hi")
                    .expression_attribute_names("#p", self.partition.0)
                    .expression_attribute_names("#s", self.sort)
                    .expression_attribute_values(":p", s(&self.partition.1))
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
                for listing in out.items() {
                    let key = get_s(listing, self.sort)?;
                    // The position's own listing (the first read, unless it is gone since)
                    // resumes after the entries already behind.
                    let behind = match skip.take() {
                        Some(p) if p.listing == key => p.shown,
                        _ => 0,
                    };
                    if expired(listing, now) {
                        // Past its TTL, not yet deleted: nothing to show, but looked
                        // through, so a walk stopped by its bound goes on after it.
                        last_looked_at = Some(ListingPosition {
                            listing: key,
                            shown: usize::MAX,
                        });
                        continue;
                    }
                    let entries = entries(listing)?;
                    last_looked_at = Some(ListingPosition {
                        listing: key.clone(),
                        shown: entries.len(),
                    });
                    for (newest_first, (id, considered)) in entries.into_iter().rev().enumerate() {
                        if newest_first < behind || !considered {
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
            // Read only as many as still wanted: a listing of 100 for a page of 10 reads 11.
            let run: Vec<Candidate> = candidates.drain(..needed.min(candidates.len())).collect();
            found.extend(keep(run).await?);
        }
        let stopped_at = if found.len() >= want {
            found.last().map(|(p, _)| p.clone())
        } else if listings_done {
            None
        } else {
            // Stopped at the bound: every candidate was read, so the walk goes on after the
            // last listing looked through.
            last_looked_at.or(skip)
        };
        Ok(Walk { found, stopped_at })
    }
}
