use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};

use super::columns::{ms, Columns};
use super::{decode_cursor, from_json, page, placeholders, to_json, Db, DbResult};
use app::ports::DeliveryLog;
use app::ports::Page;
use app::{Error, Result};
use domain::delivery::{Attempt, Delivery, DeliveryStatus, DeliveryUpdate, FailureCause};
use domain::ids::{AccountId, DeliveryId, EventId, SubscriptionId};
use domain::stats::{
    deltas_by, slot_deltas, CauseStats, LatencyHistogram, SlotStats, StatsGrain, StatsSlot,
};
use domain::time::Timestamp;

pub struct SqliteDeliveryLog {
    db: Db,
}

impl SqliteDeliveryLog {
    pub fn new(db: Db) -> Self {
        SqliteDeliveryLog { db }
    }
}

const DELIVERY_COLUMNS: &str = "id, account_id, subscription_id, event_id, event_type, status,
    attempt_count, created_at, updated_at, next_attempt_at, last_error, last_latency_ms";

fn delivery_from_row(r: &Row) -> rusqlite::Result<Delivery> {
    let status: String = r.get(5)?;
    Ok(Delivery {
        id: r.id(0)?,
        account_id: r.id(1)?,
        subscription_id: r.id(2)?,
        event_id: r.id(3)?,
        event_type: r.event_type(4)?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                5,
                rusqlite::types::Type::Text,
                format!("unknown delivery status {status}").into(),
            )
        })?,
        attempt_count: r.get(6)?,
        created_at: r.time(7)?,
        updated_at: r.time(8)?,
        next_attempt_at: r.time_opt(9)?,
        last_error: r.get(10)?,
        last_latency_ms: r.get(11)?,
    })
}

#[async_trait]
impl DeliveryLog for SqliteDeliveryLog {
    async fn create_batch(&self, deliveries: &[Delivery]) -> Result<Vec<bool>> {
        let deliveries = deliveries.to_vec();
        self.db
            .call(move |c| {
                let tx = c.savepoint()?;
                let mut created = Vec::with_capacity(deliveries.len());
                {
                    let mut stmt = tx.prepare_cached(&format!(
                        "INSERT INTO deliveries ({DELIVERY_COLUMNS})
                         VALUES ({}) ON CONFLICT DO NOTHING",
                        placeholders(12)
                    ))?;
                    for d in &deliveries {
                        let n = stmt.execute(params![
                            d.id.as_str(),
                            d.account_id.as_str(),
                            d.subscription_id.as_str(),
                            d.event_id.as_str(),
                            d.event_type.as_str(),
                            d.status.as_str(),
                            d.attempt_count,
                            d.created_at.as_millis(),
                            d.updated_at.as_millis(),
                            ms(d.next_attempt_at),
                            d.last_error,
                            d.last_latency_ms
                        ])?;
                        created.push(n == 1);
                    }
                }
                tx.commit()?;
                Ok(created)
            })
            .await
    }

    async fn record(&self, updates: &[DeliveryUpdate]) -> Result<Vec<bool>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let rows = updates
            .iter()
            .map(|u| {
                let headers = u
                    .attempt
                    .as_ref()
                    .map(|a| to_json(&a.request_headers))
                    .transpose()?;
                // NULL for none: most attempts' rows stay as small as before.
                let response_headers = u
                    .attempt
                    .as_ref()
                    .filter(|a| !a.response_headers.is_empty())
                    .map(|a| to_json(&a.response_headers))
                    .transpose()?;
                Ok((u.clone(), headers, response_headers))
            })
            .collect::<Result<Vec<_>>>()?;
        let deltas = slot_deltas(updates);
        let hour_deltas = deltas_by(updates, StatsGrain::Hour);
        self.db
            .call(move |c| {
                let tx = c.savepoint()?;
                add_to(&tx, StatsGrain::FiveMinutes, deltas)?;
                add_to(&tx, StatsGrain::Hour, hour_deltas)?;
                let mut found = Vec::with_capacity(rows.len());
                {
                    // A delivery's first outcome creates its row; one kept in short carries
                    // its attempt in `first_*` (?13–?16) and writes no `attempts` row.
                    let mut create = tx.prepare_cached(&format!(
                        "INSERT INTO deliveries ({DELIVERY_COLUMNS}, first_at, first_status,
                         first_url, first_request_headers) VALUES ({}) ON CONFLICT DO NOTHING",
                        placeholders(16)
                    ))?;
                    let mut update = tx.prepare_cached(
                        // ?9: the outcome applies only while the delivery is pending (see
                        // `DeliveryUpdate::applies_only_while_pending`); otherwise only its
                        // attempt is counted.
                        "UPDATE deliveries SET
                         status = CASE WHEN ?9 AND status <> 'pending' THEN status ELSE ?3 END,
                         next_attempt_at = CASE WHEN ?9 AND status <> 'pending'
                           THEN next_attempt_at ELSE ?6 END,
                         last_error = CASE WHEN ?9 AND status <> 'pending'
                           THEN last_error ELSE ?7 END,
                         attempt_count = attempt_count + ?4, updated_at = ?5,
                         last_latency_ms = COALESCE(?8, last_latency_ms)
                         WHERE id = ?1 AND account_id = ?2 RETURNING attempt_count",
                    )?;
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO attempts (delivery_id, attempt, at, url, request_headers,
                         status_code, latency_ms, response_body, error, response_headers)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    )?;
                    // Another attempt of a delivery kept in short gives its first attempt a
                    // row of its own first: the short form's latency is the delivery's
                    // latest, which the new attempt is about to change. (A row that got a
                    // second attempt before this version has lost its first's latency
                    // already; its first attempt's row gets the latest.)
                    let mut first_attempt_to_row = tx.prepare_cached(
                        "INSERT INTO attempts (delivery_id, attempt, at, url, request_headers,
                         status_code, latency_ms)
                         SELECT id, 1, first_at, first_url, COALESCE(first_request_headers, '[]'),
                         first_status, COALESCE(last_latency_ms, 0) FROM deliveries
                         WHERE id = ?1 AND account_id = ?2 AND first_at IS NOT NULL",
                    )?;
                    let mut no_longer_short = tx.prepare_cached(
                        "UPDATE deliveries SET first_at = NULL, first_status = NULL,
                         first_url = NULL, first_request_headers = NULL
                         WHERE id = ?1 AND account_id = ?2",
                    )?;
                    for (u, headers, response_headers) in rows {
                        let first = u.first_of_its_delivery();
                        let short = u.attempt.as_ref().filter(|_| u.kept_short_if_first());
                        let created = create.execute(params![
                            first.id.as_str(),
                            first.account_id.as_str(),
                            first.subscription_id.as_str(),
                            first.event_id.as_str(),
                            first.event_type.as_str(),
                            first.status.as_str(),
                            first.attempt_count,
                            first.created_at.as_millis(),
                            first.updated_at.as_millis(),
                            ms(first.next_attempt_at),
                            first.last_error,
                            first.last_latency_ms.map(|l| l as i64),
                            short.map(|a| a.at.as_millis()),
                            short.and_then(|a| a.status_code),
                            short.map(|a| a.url.as_str()),
                            short.and(headers.as_deref()),
                        ])? == 1;
                        let attempt_number = if created {
                            Some(first.attempt_count)
                        } else {
                            if u.attempt.is_some()
                                && first_attempt_to_row.execute(params![
                                    u.delivery_id.as_str(),
                                    u.account_id.as_str()
                                ])? == 1
                            {
                                no_longer_short.execute(params![
                                    u.delivery_id.as_str(),
                                    u.account_id.as_str()
                                ])?;
                            }
                            update
                                .query_row(
                                    params![
                                        u.delivery_id.as_str(),
                                        u.account_id.as_str(),
                                        u.status.as_str(),
                                        u.attempt.is_some() as i64,
                                        u.at.as_millis(),
                                        ms(u.next_attempt_at),
                                        u.error,
                                        u.attempt.as_ref().map(|a| a.latency_ms as i64),
                                        u.applies_only_while_pending()
                                    ],
                                    |r| r.get::<_, u32>(0),
                                )
                                .optional()?
                        };
                        found.push(attempt_number.is_some());
                        let Some(number) = attempt_number else {
                            continue;
                        };
                        if let Some(a) =
                            u.attempt.as_ref().filter(|_| !(created && short.is_some()))
                        {
                            insert.execute(params![
                                u.delivery_id.as_str(),
                                number,
                                a.at.as_millis(),
                                a.url,
                                headers,
                                a.status_code,
                                a.latency_ms as i64,
                                a.response_body,
                                a.error,
                                response_headers
                            ])?;
                        }
                    }
                }
                tx.commit()?;
                Ok(found)
            })
            .await
    }

    async fn move_status(
        &self,
        account_id: &AccountId,
        id: &DeliveryId,
        from: (DeliveryStatus, u32),
        to: DeliveryStatus,
        at: Timestamp,
    ) -> Result<bool> {
        let (account, id) = (account_id.to_string(), id.to_string());
        let at = at.as_millis();
        let next_attempt_at = (to == DeliveryStatus::Pending).then_some(at);
        self.db
            .call(move |c| {
                let moved = c
                    .prepare_cached(
                        "UPDATE deliveries SET status = ?5, updated_at = ?6, next_attempt_at = ?7
                         WHERE id = ?1 AND account_id = ?2 AND status = ?3 AND attempt_count = ?4",
                    )?
                    .execute(params![
                        id,
                        account,
                        from.0.as_str(),
                        from.1,
                        to.as_str(),
                        at,
                        next_attempt_at
                    ])?;
                Ok(moved == 1)
            })
            .await
    }

    async fn get(&self, account_id: &AccountId, id: &DeliveryId) -> Result<Option<Delivery>> {
        let (account, id) = (account_id.to_string(), id.to_string());
        self.db
            .read(move |c| {
                Ok(c.prepare_cached(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1 AND account_id = ?2"
                ))?
                .query_row(params![id, account], delivery_from_row)
                .optional()?)
            })
            .await
    }

    async fn attempts(&self, account_id: &AccountId, id: &DeliveryId) -> Result<Vec<Attempt>> {
        let (account, id) = (account_id.to_string(), id.to_string());
        let (short, rows) = self
            .db
            .read(move |c| {
                // A first-try success kept in short (see `SCHEMA`): its one attempt.
                let short = c
                    .prepare_cached(
                        "SELECT first_at, first_url, first_request_headers, first_status,
                         last_latency_ms FROM deliveries WHERE id = ?1 AND account_id = ?2
                         AND first_at IS NOT NULL",
                    )?
                    .query_row(params![id, account], |r| {
                        Ok((
                            r.time(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Option<String>>(2)?,
                            r.get::<_, u16>(3)?,
                            r.get::<_, i64>(4)? as u64,
                        ))
                    })
                    .optional()?;
                let rows = c
                    .prepare_cached(
                        "SELECT a.attempt, a.at, a.url, a.request_headers, a.status_code,
                         a.latency_ms, a.response_body, a.error, a.response_headers
                         FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
                         WHERE a.delivery_id = ?1 AND d.account_id = ?2 ORDER BY a.attempt",
                    )?
                    .query_map(params![id, account], |r| {
                        Ok((
                            r.get::<_, u32>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, Option<u16>>(4)?,
                            r.get::<_, i64>(5)?,
                            r.get::<_, Option<String>>(6)?,
                            r.get::<_, Option<String>>(7)?,
                            r.get::<_, Option<String>>(8)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok((short, rows))
            })
            .await?;
        short
            .into_iter()
            .map(|(at, url, headers, status, latency)| {
                let headers = headers.as_deref().map(from_json).transpose()?;
                Ok(Attempt::first_success(
                    at,
                    url,
                    headers.unwrap_or_default(),
                    status,
                    latency,
                ))
            })
            .chain(rows.into_iter().map(
                |(attempt, at, url, headers, status_code, latency, body, error, response)| {
                    Ok(Attempt {
                        attempt,
                        at: Timestamp::from_millis(at),
                        url,
                        request_headers: from_json(&headers)?,
                        status_code,
                        response_headers: response
                            .as_deref()
                            .map(from_json)
                            .transpose()?
                            .unwrap_or_default(),
                        latency_ms: latency as u64,
                        response_body: body,
                        error,
                    })
                },
            ))
            .collect()
    }

    async fn list_for_event(
        &self,
        account_id: &AccountId,
        event_id: &EventId,
    ) -> Result<Vec<Delivery>> {
        let (account, event) = (account_id.to_string(), event_id.to_string());
        self.db
            .call(move |c| {
                let rows = c
                    .prepare_cached(&format!(
                        "SELECT {DELIVERY_COLUMNS} FROM deliveries
                         WHERE account_id = ?1 AND event_id = ?2 ORDER BY created_at, id"
                    ))?
                    .query_map(params![account, event], delivery_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await
    }

    async fn list_for_subscription(
        &self,
        account_id: &AccountId,
        subscription_id: &SubscriptionId,
        status: Option<DeliveryStatus>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        let (before_at, before_id) = decode_cursor(cursor)?;
        let (account, sub) = (account_id.to_string(), subscription_id.to_string());
        let status = status.map(|s| s.as_str());
        let rows = self
            .db
            .read(move |c| {
                let rows = c
                    .prepare_cached(&format!(
                        "SELECT {DELIVERY_COLUMNS} FROM deliveries
                         WHERE account_id = ?1 AND subscription_id = ?2
                         AND (?3 IS NULL OR status = ?3)
                         AND (created_at < ?4 OR (created_at = ?4 AND id < ?5))
                         ORDER BY created_at DESC, id DESC LIMIT ?6"
                    ))?
                    .query_map(
                        params![account, sub, status, before_at, before_id, limit as i64 + 1],
                        delivery_from_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await?;
        Ok(page(rows, limit, |d| {
            (d.created_at.as_millis(), d.id.as_str())
        }))
    }

    async fn list_dead(
        &self,
        account_id: &AccountId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        let (before_at, before_id) = decode_cursor(cursor)?;
        let account = account_id.to_string();
        let rows = self
            .db
            .read(move |c| {
                let rows = c
                    // `status = 'dead'` written out, so the planner uses the partial index.
                    .prepare_cached(&format!(
                        "SELECT {DELIVERY_COLUMNS} FROM deliveries
                         WHERE account_id = ?1 AND status = 'dead'
                         AND (updated_at < ?2 OR (updated_at = ?2 AND id < ?3))
                         ORDER BY updated_at DESC, id DESC LIMIT ?4"
                    ))?
                    .query_map(
                        params![account, before_at, before_id, limit as i64 + 1],
                        delivery_from_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await?;
        Ok(page(rows, limit, |d| {
            (d.updated_at.as_millis(), d.id.as_str())
        }))
    }

    /// A scan on a reader connection: no index for it, as each one would cost every
    /// delivery two more B-tree writes (pending in, then out) for a question asked every
    /// few minutes, off the writer.
    async fn overdue(
        &self,
        before: Timestamp,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        let (before, after) = (before.as_millis(), cursor.unwrap_or("").to_string());
        let mut rows = self
            .db
            .read(move |c| {
                let rows = c
                    .prepare_cached(&format!(
                        "SELECT {DELIVERY_COLUMNS} FROM deliveries
                         WHERE id > ?2 AND status = 'pending'
                         AND COALESCE(next_attempt_at, updated_at) < ?1
                         ORDER BY id LIMIT ?3"
                    ))?
                    .query_map(params![before, after, limit as i64 + 1], delivery_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = more
            .then(|| rows.last().map(|d| d.id.to_string()))
            .flatten();
        Ok(Page {
            items: rows,
            next_cursor,
        })
    }

    async fn stats_slots(
        &self,
        account_id: &AccountId,
        subscription_id: Option<&SubscriptionId>,
        since: Timestamp,
        grain: StatsGrain,
    ) -> Result<Vec<StatsSlot>> {
        let account = account_id.to_string();
        let sub = subscription_id.map(ToString::to_string);
        let since = since.as_millis();
        self.db
            .read(move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT subscription_id, slot, succeeded, failed, dead, latency, causes
                     FROM {}
                     WHERE account_id = ?1 AND (?2 IS NULL OR subscription_id = ?2)
                       AND slot >= ?3",
                    stats_table(grain)
                ))?;
                let rows = stmt
                    .query_map(params![account, sub, since], |r| {
                        Ok((
                            r.id(0)?,
                            r.time(1)?,
                            SlotCounts(r.get(2)?, r.get(3)?, r.get(4)?),
                            r.get::<_, String>(5)?,
                            r.get::<_, String>(6)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await?
            .into_iter()
            .map(|(subscription_id, start, counts, latency, causes)| {
                Ok(StatsSlot {
                    subscription_id,
                    start,
                    stats: decode_slot(counts, &latency, &causes)?,
                })
            })
            .collect()
    }
}

/// The three counters of a stored slot: succeeded, failed, dead.
struct SlotCounts(i64, i64, i64);

/// The table of a grain's sums: five-minute slots, and hours beside them (see `SCHEMA`).
fn stats_table(grain: StatsGrain) -> &'static str {
    match grain {
        StatsGrain::FiveMinutes => "delivery_stats",
        StatsGrain::Hour => "delivery_stats_hours",
    }
}

/// Adds each delta to its stored sum of `grain` (read, merged, written back: the writer is
/// the only one, so nothing changes the row in between).
fn add_to(
    tx: &rusqlite::Connection,
    grain: StatsGrain,
    deltas: std::collections::BTreeMap<domain::stats::SlotKey, SlotStats>,
) -> DbResult<()> {
    let table = stats_table(grain);
    let mut read = tx.prepare_cached(&format!(
        "SELECT succeeded, failed, dead, latency, causes FROM {table}
         WHERE account_id = ?1 AND subscription_id = ?2 AND slot = ?3"
    ))?;
    let mut write = tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {table}
         (account_id, subscription_id, slot, succeeded, failed, dead, latency, causes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))?;
    for (key, delta) in deltas {
        let keys = params![
            key.account_id.as_str(),
            key.subscription_id.as_str(),
            key.start.as_millis()
        ];
        let stored = read
            .query_row(keys, |r| {
                Ok((
                    SlotCounts(r.get(0)?, r.get(1)?, r.get(2)?),
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .optional()?;
        let mut slot = match stored {
            Some((counts, latency, causes)) => decode_slot(counts, &latency, &causes)?,
            None => SlotStats::default(),
        };
        slot.merge(&delta);
        let (latency, causes) = encode_slot(&slot)?;
        write.execute(params![
            key.account_id.as_str(),
            key.subscription_id.as_str(),
            key.start.as_millis(),
            slot.succeeded as i64,
            slot.failed as i64,
            slot.dead as i64,
            latency,
            causes
        ])?;
    }
    Ok(())
}

/// A stored cause: how many, when last, and example deliveries.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredCause {
    count: u64,
    last_seen: i64,
    examples: Vec<String>,
}

fn encode_slot(slot: &SlotStats) -> Result<(String, String)> {
    let latency = slot
        .latency
        .bins()
        .map(|(bin, count)| format!("{bin}:{count}"))
        .collect::<Vec<_>>()
        .join(",");
    let causes: std::collections::BTreeMap<String, StoredCause> = slot
        .causes
        .iter()
        .map(|(cause, c)| {
            (
                cause.key(),
                StoredCause {
                    count: c.count,
                    last_seen: c.last_seen.as_millis(),
                    examples: c.examples.iter().map(ToString::to_string).collect(),
                },
            )
        })
        .collect();
    Ok((latency, to_json(&causes)?))
}

fn decode_slot(counts: SlotCounts, latency: &str, causes: &str) -> Result<SlotStats> {
    let corrupt = |what: &str| Error::storage(format!("corrupt stats slot: {what}"));
    let mut histogram = LatencyHistogram::default();
    for pair in latency.split(',').filter(|p| !p.is_empty()) {
        let (bin, count) = pair.split_once(':').ok_or_else(|| corrupt(pair))?;
        let bin: u16 = bin
            .parse()
            .ok()
            .filter(|b| *b <= LatencyHistogram::MAX_BIN)
            .ok_or_else(|| corrupt(pair))?;
        histogram.add_count(bin, count.parse().map_err(|_| corrupt(pair))?);
    }
    // Most slots had no failure: no JSON to read (a 30-day report reads tens of thousands).
    let stored: std::collections::BTreeMap<String, StoredCause> = if causes == "{}" {
        Default::default()
    } else {
        from_json(causes)?
    };
    let mut decoded = std::collections::BTreeMap::new();
    for (key, c) in stored {
        let cause = FailureCause::parse(&key).ok_or_else(|| corrupt(&key))?;
        let examples = c
            .examples
            .into_iter()
            .map(|id| DeliveryId::parse(id).map_err(|_| corrupt("an example id")))
            .collect::<Result<Vec<_>>>()?;
        decoded.insert(
            cause,
            CauseStats {
                count: c.count,
                last_seen: Timestamp::from_millis(c.last_seen),
                examples,
            },
        );
    }
    let count = |n: i64| u64::try_from(n).map_err(|_| corrupt("a negative count"));
    Ok(SlotStats {
        succeeded: count(counts.0)?,
        failed: count(counts.1)?,
        dead: count(counts.2)?,
        latency: histogram,
        causes: decoded,
    })
}

/// Sums the five-minute slots into the hour table, replacing what it held: how a file of
/// layout 2 or older gets the hours that layout 3 keeps beside its slots. One pass in key
/// order, one hour in memory at a time.
pub(crate) fn rebuild_hours(conn: &rusqlite::Connection) -> DbResult<()> {
    conn.execute("DELETE FROM delivery_stats_hours", [])?;
    let mut read = conn.prepare(
        "SELECT account_id, subscription_id, slot, succeeded, failed, dead, latency, causes
         FROM delivery_stats ORDER BY account_id, subscription_id, slot",
    )?;
    let mut write = conn.prepare(
        "INSERT INTO delivery_stats_hours
         (account_id, subscription_id, slot, succeeded, failed, dead, latency, causes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut flush = |key: &(String, String, i64), sum: &SlotStats| -> DbResult<()> {
        let (latency, causes) = encode_slot(sum)?;
        write.execute(params![
            key.0,
            key.1,
            key.2,
            sum.succeeded as i64,
            sum.failed as i64,
            sum.dead as i64,
            latency,
            causes
        ])?;
        Ok(())
    };
    let mut current: Option<((String, String, i64), SlotStats)> = None;
    let mut rows = read.query([])?;
    while let Some(r) = rows.next()? {
        let hour = StatsGrain::Hour
            .start_of(Timestamp::from_millis(r.get(2)?))
            .as_millis();
        let key = (r.get::<_, String>(0)?, r.get::<_, String>(1)?, hour);
        let slot = decode_slot(
            SlotCounts(r.get(3)?, r.get(4)?, r.get(5)?),
            &r.get::<_, String>(6)?,
            &r.get::<_, String>(7)?,
        )?;
        match &mut current {
            Some((k, sum)) if *k == key => sum.merge(&slot),
            _ => {
                if let Some((k, sum)) = current.replace((key, slot)) {
                    flush(&k, &sum)?;
                }
            }
        }
    }
    if let Some((k, sum)) = current {
        flush(&k, &sum)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::delivery::FailureCause;

    /// A database file whose attempts were logged before response headers were kept opens,
    /// reads its old attempts without headers, and keeps the headers of new ones.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn attempts_logged_before_response_headers_read_back_and_new_ones_keep_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let old = rusqlite::Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE deliveries (
                     id TEXT PRIMARY KEY, account_id TEXT NOT NULL,
                     subscription_id TEXT NOT NULL, event_id TEXT NOT NULL,
                     event_type TEXT NOT NULL, status TEXT NOT NULL,
                     attempt_count INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL,
                     updated_at INTEGER NOT NULL, next_attempt_at INTEGER, last_error TEXT,
                     last_latency_ms INTEGER
                 ) WITHOUT ROWID;
                 CREATE TABLE attempts (
                     delivery_id TEXT NOT NULL, attempt INTEGER NOT NULL, at INTEGER NOT NULL,
                     url TEXT NOT NULL, request_headers TEXT NOT NULL, status_code INTEGER,
                     latency_ms INTEGER NOT NULL, response_body TEXT, error TEXT,
                     PRIMARY KEY (delivery_id, attempt)
                 ) WITHOUT ROWID;
                 INSERT INTO deliveries VALUES ('msg_1', 'acct', 'wh_1', 'evt_1', 'call.ended',
                     'pending', 1, 5, 5, NULL, 'endpoint answered 500', 3);
                 INSERT INTO attempts VALUES ('msg_1', 1, 5, 'https://example.com/', '[]', 500,
                     3, 'no', NULL);",
            )
            .unwrap();
        }
        let log = SqliteDeliveryLog::new(Db::open(&path).unwrap());
        let (account, id) = (
            AccountId::from_static("acct"),
            DeliveryId::from_static("msg_1"),
        );
        let old = log.attempts(&account, &id).await.unwrap();
        assert_eq!(old.len(), 1);
        assert!(old[0].response_headers.is_empty());
        let headers = vec![("content-type".to_string(), "text/plain".to_string())];
        log.record(&[DeliveryUpdate {
            delivery_id: id.clone(),
            account_id: account.clone(),
            subscription_id: SubscriptionId::from_static("wh_1"),
            event_id: domain::ids::EventId::parse("evt_1").unwrap(),
            event_type: domain::catalog::EventType::known("call.ended").unwrap(),
            created_at: Timestamp::from_millis(5),
            first_try: true,
            status: DeliveryStatus::Succeeded,
            attempt: Some(Attempt {
                attempt: 0,
                at: Timestamp::from_millis(10),
                url: "https://example.com/".into(),
                request_headers: vec![],
                status_code: Some(200),
                response_headers: headers.clone(),
                latency_ms: 2,
                response_body: None,
                error: None,
            }),
            next_attempt_at: None,
            error: None,
            cause: None::<FailureCause>,
            at: Timestamp::from_millis(10),
            listed_on_event: false,
        }])
        .await
        .unwrap();
        let both = log.attempts(&account, &id).await.unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(both[1].response_headers, headers);
    }
}
