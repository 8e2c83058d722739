use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};

use super::columns::{ms, Columns};
use super::Db;
use app::ports::ApiKeyStore;
use app::Result;
use domain::api_key::{ApiKeyRecord, LAST_USED_RESOLUTION_MS};
use domain::ids::{AccountId, ApiKeyId};
use domain::time::Timestamp;

pub struct SqliteApiKeyStore {
    db: Db,
}

impl SqliteApiKeyStore {
    pub fn new(db: Db) -> Self {
        SqliteApiKeyStore { db }
    }
}

/// The columns `record` reads, in its order.
const COLUMNS: &str =
    "key_hash, id, account_id, created_at, prefix, last_used_at, revoked_at, expires_at";

fn record(r: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        key_hash: r.get(0)?,
        id: r.id(1)?,
        account_id: r.id(2)?,
        created_at: r.time(3)?,
        prefix: r.get(4)?,
        last_used_at: r.time_opt(5)?,
        revoked_at: r.time_opt(6)?,
        expires_at: r.time_opt(7)?,
    })
}

#[async_trait]
impl ApiKeyStore for SqliteApiKeyStore {
    async fn create(&self, record: &ApiKeyRecord) -> Result<()> {
        let r = record.clone();
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO api_keys (key_hash, id, account_id, created_at, prefix,
                                           last_used_at, revoked_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        r.key_hash,
                        r.id.as_str(),
                        r.account_id.as_str(),
                        r.created_at.as_millis(),
                        r.prefix,
                        ms(r.last_used_at),
                        ms(r.revoked_at),
                        ms(r.expires_at)
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn find_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        let hash = key_hash.to_string();
        self.db
            .call(move |c| {
                Ok(c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM api_keys WHERE key_hash = ?1"
                ))?
                .query_row([hash], record)
                .optional()?)
            })
            .await
    }

    async fn list(&self, account_id: &AccountId) -> Result<Vec<ApiKeyRecord>> {
        let account = account_id.to_string();
        self.db
            .call(move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM api_keys WHERE account_id = ?1
                     ORDER BY created_at DESC, id DESC"
                ))?;
                let rows = stmt.query_map([account], record)?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    async fn revoke(
        &self,
        account_id: &AccountId,
        key_id: &ApiKeyId,
        at: Timestamp,
    ) -> Result<Option<ApiKeyRecord>> {
        let at = at.as_millis();
        let (account, id) = (account_id.to_string(), key_id.to_string());
        self.db
            .call(move |c| {
                Ok(c.prepare_cached(&format!(
                    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?3)
                     WHERE account_id = ?1 AND id = ?2 RETURNING {COLUMNS}"
                ))?
                .query_row(params![account, id, at], record)
                .optional()?)
            })
            .await
    }

    async fn record_use(&self, key_hash: &str, at: Timestamp) -> Result<bool> {
        let (hash, at) = (key_hash.to_string(), at.as_millis());
        self.db
            .call(move |c| {
                let changed = c
                    .prepare_cached(
                        "UPDATE api_keys SET last_used_at = ?2
                         WHERE key_hash = ?1 AND (last_used_at IS NULL OR last_used_at <= ?3)",
                    )?
                    .execute(params![hash, at, at - LAST_USED_RESOLUTION_MS])?;
                Ok(changed > 0)
            })
            .await
    }

    async fn delete(&self, account_id: &AccountId, key_id: &ApiKeyId) -> Result<bool> {
        let (account, id) = (account_id.to_string(), key_id.to_string());
        self.db
            .call(move |c| {
                let deleted = c
                    .prepare_cached("DELETE FROM api_keys WHERE account_id = ?1 AND id = ?2")?
                    .execute([account, id])?;
                Ok(deleted > 0)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database file written before keys had a prefix, a last use, a revocation or an
    /// expiry opens, keeps its keys, and takes the new fields.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_file_from_before_revocation_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let old = rusqlite::Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE api_keys (
                     key_hash TEXT PRIMARY KEY,
                     id TEXT NOT NULL,
                     account_id TEXT NOT NULL,
                     created_at INTEGER NOT NULL
                 ) WITHOUT ROWID;
                 INSERT INTO api_keys VALUES ('h1', 'key_1', 'acct', 5);",
            )
            .unwrap();
        }
        for _ in 0..2 {
            // Twice: migrating an up-to-date file changes nothing.
            let store = SqliteApiKeyStore::new(Db::open(&path).unwrap());
            let old = store.find_by_hash("h1").await.unwrap().unwrap();
            assert_eq!((old.id.as_str(), old.prefix.as_str()), ("key_1", ""));
            assert_eq!(
                store
                    .list(&AccountId::from_static("acct"))
                    .await
                    .unwrap()
                    .len(),
                1
            );
        }
        let store = SqliteApiKeyStore::new(Db::open(&path).unwrap());
        assert!(store
            .record_use("h1", Timestamp::from_millis(1_000_000))
            .await
            .unwrap());
        let revoked = store
            .revoke(
                &AccountId::from_static("acct"),
                &ApiKeyId::from_static("key_1"),
                Timestamp::from_millis(7),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (revoked.last_used_at, revoked.revoked_at),
            (
                Some(Timestamp::from_millis(1_000_000)),
                Some(Timestamp::from_millis(7))
            )
        );
        let new = ApiKeyRecord::new(
            ApiKeyId::from_static("key_2"),
            AccountId::from_static("acct"),
            "whk_abcdefghijk",
            Timestamp::from_millis(9),
            Some(Timestamp::from_millis(99)),
        );
        store.create(&new).await.unwrap();
        assert_eq!(store.find_by_hash(&new.key_hash).await.unwrap(), Some(new));
    }
}
