//! Alert settings and throttles (`domain::alerts`), each kept as JSON: they are read and
//! written whole, never queried by a field but the digest's due time, which has a column.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use serde::de::DeserializeOwned;

use super::{Db, DbError, DbResult};
use app::ports::AlertStore;
use app::{Error, Result};
use domain::alerts::{AlertSettings, ThrottleState};
use domain::ids::AccountId;
use domain::time::Timestamp;

pub struct SqliteAlertStore {
    db: Db,
}

impl SqliteAlertStore {
    pub fn new(db: Db) -> Self {
        SqliteAlertStore { db }
    }
}

fn from_json<T: DeserializeOwned>(text: &str) -> DbResult<T> {
    serde_json::from_str(text)
        .map_err(|e| DbError::Port(Error::storage_caused_by("stored alert JSON", e)))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("alert settings and states serialise")
}

#[async_trait]
impl AlertStore for SqliteAlertStore {
    async fn settings(&self, account_id: &AccountId) -> Result<Option<AlertSettings>> {
        let account = account_id.to_string();
        self.db
            .read(move |c| {
                let text: Option<String> = c
                    .prepare_cached("SELECT settings FROM alert_settings WHERE account_id = ?1")?
                    .query_row([account], |r| r.get(0))
                    .optional()?;
                text.map(|t| from_json(&t)).transpose()
            })
            .await
    }

    async fn put_settings(&self, account_id: &AccountId, settings: &AlertSettings) -> Result<()> {
        let (account, text) = (account_id.to_string(), to_json(settings));
        self.db
            .call(move |c| {
                c.prepare_cached(
                    "INSERT INTO alert_settings (account_id, settings) VALUES (?1, ?2)
                     ON CONFLICT (account_id) DO UPDATE SET settings = excluded.settings",
                )?
                .execute(params![account, text])?;
                Ok(())
            })
            .await
    }

    async fn throttle(&self, account_id: &AccountId, key: &str) -> Result<Option<ThrottleState>> {
        let (account, key) = (account_id.to_string(), key.to_string());
        self.db
            .read(move |c| {
                let text: Option<String> = c
                    .prepare_cached(
                        "SELECT state FROM alert_throttles WHERE account_id = ?1 AND topic = ?2",
                    )?
                    .query_row([account, key], |r| r.get(0))
                    .optional()?;
                text.map(|t| from_json(&t)).transpose()
            })
            .await
    }

    async fn put_throttle(
        &self,
        account_id: &AccountId,
        key: &str,
        prior: Option<&ThrottleState>,
        next: &ThrottleState,
    ) -> Result<bool> {
        let (account, key) = (account_id.to_string(), key.to_string());
        let prior_version = prior.map(|s| s.version as i64);
        let (version, due, text) = (
            next.version as i64,
            next.digest_due().map(Timestamp::as_millis),
            to_json(next),
        );
        self.db
            .call(move |c| {
                let changed = match prior_version {
                    None => c
                        .prepare_cached(
                            "INSERT INTO alert_throttles (account_id, topic, version, digest_due, state)
                             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                        )?
                        .execute(params![account, key, version, due, text])?,
                    Some(expected) => c
                        .prepare_cached(
                            "UPDATE alert_throttles SET version = ?3, digest_due = ?4, state = ?5
                             WHERE account_id = ?1 AND topic = ?2 AND version = ?6",
                        )?
                        .execute(params![account, key, version, due, text, expected])?,
                };
                Ok(changed == 1)
            })
            .await
    }

    async fn due_digests(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(AccountId, ThrottleState)>> {
        self.db
            .read(move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT account_id, state FROM alert_throttles
                     WHERE digest_due IS NOT NULL AND digest_due <= ?1
                     ORDER BY digest_due, account_id, topic LIMIT ?2",
                )?;
                let rows = statement.query_map(params![now.as_millis(), limit as i64], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?;
                let mut due = Vec::new();
                for row in rows {
                    let (account, state) = row?;
                    let account = AccountId::parse(&account).map_err(|e| {
                        DbError::Port(Error::storage_caused_by("a stored account id", e))
                    })?;
                    due.push((account, from_json(&state)?));
                }
                Ok(due)
            })
            .await
    }
}
