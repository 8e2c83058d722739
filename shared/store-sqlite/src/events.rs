use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::{decode_cursor, from_json, page, to_json, Db};
use app::ports::Page;
use app::ports::{EventInsert, EventStore};
use app::Result;
use domain::event::Event;
use domain::ids::{AccountId, EventId, SubscriptionId};

pub struct SqliteEventStore {
    db: Db,
}

impl SqliteEventStore {
    pub fn new(db: Db) -> Self {
        SqliteEventStore { db }
    }
}

#[async_trait]
impl EventStore for SqliteEventStore {
    /// The lists are not kept: this store indexes deliveries by event.
    async fn insert_batch_listing(
        &self,
        events: &[Event],
        _listed: &[Option<Vec<SubscriptionId>>],
    ) -> Result<Vec<EventInsert>> {
        self.insert_batch(events).await
    }

    async fn insert_batch(&self, events: &[Event]) -> Result<Vec<EventInsert>> {
        let rows = events
            .iter()
            .map(|e| {
                Ok((
                    e.account_id.to_string(),
                    e.id.to_string(),
                    e.event_type.to_string(),
                    e.received_at.as_millis(),
                    to_json(e)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        self.db
            .call(move |c| {
                let tx = c.savepoint()?;
                let mut out = Vec::with_capacity(rows.len());
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO events (account_id, id, type, received_at, doc)
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                    )?;
                    for (account, id, ty, at, doc) in rows {
                        out.push(match insert.execute(params![account, id, ty, at, doc])? {
                            1 => EventInsert::Created,
                            _ => EventInsert::Exists,
                        });
                    }
                }
                tx.commit()?;
                Ok(out)
            })
            .await
    }

    async fn get(&self, account_id: &AccountId, id: &EventId) -> Result<Option<Event>> {
        let (account, id) = (account_id.to_string(), id.to_string());
        let doc: Option<String> = self
            .db
            .read(move |c| {
                Ok(
                    c.prepare_cached("SELECT doc FROM events WHERE account_id = ?1 AND id = ?2")?
                        .query_row(params![account, id], |r| r.get(0))
                        .optional()?,
                )
            })
            .await?;
        doc.map(|d| from_json(&d)).transpose()
    }

    async fn list(
        &self,
        account_id: &AccountId,
        event_type: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Event>> {
        let (before_at, before_id) = decode_cursor(cursor)?;
        let (account, ty) = (account_id.to_string(), event_type.map(str::to_string));
        let docs: Vec<String> = self
            .db
            .read(move |c| {
                let rows = c
                    .prepare_cached(
                        "SELECT doc FROM events WHERE account_id = ?1 AND (?2 IS NULL OR type = ?2)
                         AND (received_at < ?3 OR (received_at = ?3 AND id < ?4))
                         ORDER BY received_at DESC, id DESC LIMIT ?5",
                    )?
                    .query_map(
                        params![account, ty, before_at, before_id, limit as i64 + 1],
                        |r| r.get(0),
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await?;
        let events = docs
            .iter()
            .map(|d| from_json(d))
            .collect::<Result<Vec<Event>>>()?;
        Ok(page(events, limit, |e| {
            (e.received_at.as_millis(), e.id.as_str())
        }))
    }
}
