use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::Db;
use app::ports::ApiKeyStore;
use app::Result;
use domain::api_key::ApiKeyRecord;

pub struct SqliteApiKeyStore {
    db: Db,
}

impl SqliteApiKeyStore {
    pub fn new(db: Db) -> Self {
        SqliteApiKeyStore { db }
    }
}

#[async_trait]
impl ApiKeyStore for SqliteApiKeyStore {
    async fn create(&self, record: &ApiKeyRecord) -> Result<()> {
        let r = record.clone();
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO api_keys (key_hash, id, account_id, created_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![r.key_hash, r.id, r.account_id, r.created_at],
                )?;
                Ok(())
            })
            .await
    }

    async fn find_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        let hash = key_hash.to_string();
        self.db
            .call(move |c| {
                Ok(c.prepare_cached(
                    "SELECT key_hash, id, account_id, created_at FROM api_keys WHERE key_hash = ?1",
                )?
                .query_row([hash], |r| {
                    Ok(ApiKeyRecord {
                        key_hash: r.get(0)?,
                        id: r.get(1)?,
                        account_id: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                })
                .optional()?)
            })
            .await
    }
}
