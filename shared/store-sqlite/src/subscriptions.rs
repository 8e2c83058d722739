use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::{from_json, to_json, Db};
use app::ports::SubscriptionStore;
use app::Result;
use domain::ids::{AccountId, SubscriptionId};
use domain::subscription::Subscription;

pub struct SqliteSubscriptionStore {
    db: Db,
}

impl SqliteSubscriptionStore {
    pub fn new(db: Db) -> Self {
        SqliteSubscriptionStore { db }
    }
}

fn decode(rows: Vec<String>) -> Result<Vec<Subscription>> {
    rows.iter().map(|d| from_json(d)).collect()
}

#[async_trait]
impl SubscriptionStore for SqliteSubscriptionStore {
    async fn put(&self, subscription: &Subscription) -> Result<()> {
        let (account, id, doc) = (
            subscription.account_id.to_string(),
            subscription.id.to_string(),
            to_json(subscription)?,
        );
        self.db
            .call(move |c| {
                c.prepare_cached(
                    "INSERT INTO subscriptions (account_id, id, doc) VALUES (?1, ?2, ?3)
                     ON CONFLICT (account_id, id) DO UPDATE SET doc = excluded.doc",
                )?
                .execute(params![account, id, doc])?;
                Ok(())
            })
            .await
    }

    async fn put_if_version(&self, subscription: &Subscription, expected: u64) -> Result<bool> {
        let (account, id, doc) = (
            subscription.account_id.to_string(),
            subscription.id.to_string(),
            to_json(subscription)?,
        );
        self.db
            .call(move |c| {
                let changed = c
                    .prepare_cached(
                        "UPDATE subscriptions SET doc = ?3 WHERE account_id = ?1 AND id = ?2
                         AND coalesce(json_extract(doc, '$.version'), 0) = ?4",
                    )?
                    .execute(params![account, id, doc, expected as i64])?;
                Ok(changed == 1)
            })
            .await
    }

    async fn get(
        &self,
        account_id: &AccountId,
        id: &SubscriptionId,
    ) -> Result<Option<Subscription>> {
        let (account, id) = (account_id.to_string(), id.to_string());
        let doc: Option<String> = self
            .db
            .read(move |c| {
                Ok(c.prepare_cached(
                    "SELECT doc FROM subscriptions WHERE account_id = ?1 AND id = ?2",
                )?
                .query_row(params![account, id], |r| r.get(0))
                .optional()?)
            })
            .await?;
        doc.map(|d| from_json(&d)).transpose()
    }

    async fn get_many(&self, keys: &[(AccountId, SubscriptionId)]) -> Result<Vec<Subscription>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys = keys.to_vec();
        let rows = self
            .db
            .call(move |c| {
                let sql = format!(
                    "SELECT doc FROM subscriptions WHERE (account_id, id) IN (VALUES {})",
                    vec!["(?, ?)"; keys.len()].join(", ")
                );
                let mut stmt = c.prepare_cached(&sql)?;
                let flat = keys.iter().flat_map(|(a, i)| [a.as_str(), i.as_str()]);
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(flat), |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                Ok(rows)
            })
            .await?;
        decode(rows)
    }

    async fn list(
        &self,
        account_id: &AccountId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Subscription>> {
        let (account, after) = (account_id.to_string(), after.unwrap_or("").to_string());
        let rows = self
            .db
            .read(move |c| {
                let rows = c
                    .prepare_cached(
                        "SELECT doc FROM subscriptions WHERE account_id = ?1 AND id > ?2
                         ORDER BY id LIMIT ?3",
                    )?
                    .query_map(params![account, after, limit as i64], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                Ok(rows)
            })
            .await?;
        decode(rows)
    }

    async fn list_all(&self, account_id: &AccountId) -> Result<Vec<Subscription>> {
        let account = account_id.to_string();
        let rows = self
            .db
            .call(move |c| {
                let rows = c
                    .prepare_cached("SELECT doc FROM subscriptions WHERE account_id = ?1")?
                    .query_map([account], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                Ok(rows)
            })
            .await?;
        decode(rows)
    }

    async fn delete(&self, account_id: &AccountId, id: &SubscriptionId) -> Result<bool> {
        let (account, id) = (account_id.to_string(), id.to_string());
        self.db
            .call(move |c| {
                Ok(c.execute(
                    "DELETE FROM subscriptions WHERE account_id = ?1 AND id = ?2",
                    params![account, id],
                )? > 0)
            })
            .await
    }
}
