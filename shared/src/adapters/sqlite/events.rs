use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::{from_json, to_json, Db};
use crate::domain::event::Event;
use crate::ports::{EventInsert, EventStore};
use crate::Result;

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
    async fn insert_batch(&self, events: &[Event]) -> Result<Vec<EventInsert>> {
        let rows = events
            .iter()
            .map(|e| {
                Ok((
                    e.account_id.clone(),
                    e.id.clone(),
                    e.event_type.clone(),
                    e.received_at,
                    to_json(e)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        self.db
            .call(move |c| {
                let tx = c.transaction()?;
                let mut out = Vec::with_capacity(rows.len());
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO events (account_id, id, type, received_at, doc)
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                    )?;
                    let mut existing = tx.prepare_cached(
                        "SELECT enqueued FROM events WHERE account_id = ?1 AND id = ?2",
                    )?;
                    for (account, id, ty, at, doc) in rows {
                        if insert.execute(params![account, id, ty, at, doc])? == 1 {
                            out.push(EventInsert::Created);
                        } else {
                            let enqueued: bool =
                                existing.query_row(params![account, id], |r| r.get(0))?;
                            out.push(EventInsert::Exists { enqueued });
                        }
                    }
                }
                tx.commit()?;
                Ok(out)
            })
            .await
    }

    async fn mark_enqueued(&self, keys: &[(String, String)]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let keys = keys.to_vec();
        self.db
            .call(move |c| {
                let tx = c.transaction()?;
                {
                    let mut stmt = tx.prepare_cached(
                        "UPDATE events SET enqueued = 1 WHERE account_id = ?1 AND id = ?2",
                    )?;
                    for (account, id) in &keys {
                        stmt.execute(params![account, id])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn get(&self, account_id: &str, id: &str) -> Result<Option<Event>> {
        let (account, id) = (account_id.to_string(), id.to_string());
        let doc: Option<String> = self
            .db
            .call(move |c| {
                Ok(
                    c.prepare_cached("SELECT doc FROM events WHERE account_id = ?1 AND id = ?2")?
                        .query_row(params![account, id], |r| r.get(0))
                        .optional()?,
                )
            })
            .await?;
        doc.map(|d| from_json(&d)).transpose()
    }
}
