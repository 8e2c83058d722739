//! API keys, found by the hash of the key (the key itself is never stored).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use app::ports::ApiKeyStore;
use app::{Error, Result};
use domain::api_key::{newest_first, ApiKeyRecord, LAST_USED_RESOLUTION_MS};
use domain::ids::{AccountId, ApiKeyId};
use domain::time::Timestamp;

/// API keys by the hash of the key.
#[derive(Default)]
pub struct MemoryApiKeyStore {
    records: Mutex<HashMap<String, ApiKeyRecord>>,
}

impl MemoryApiKeyStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ApiKeyStore for MemoryApiKeyStore {
    /// A hash already stored is refused, as the embedded adapter's primary key refuses it.
    async fn create(&self, record: &ApiKeyRecord) -> Result<()> {
        let mut records = lock(&self.records)?;
        if records.contains_key(&record.key_hash) {
            return Err(Error::Conflict("an API key with this hash".into()));
        }
        records.insert(record.key_hash.clone(), record.clone());
        Ok(())
    }

    async fn find_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        Ok(lock(&self.records)?.get(key_hash).cloned())
    }

    async fn list(&self, account_id: &AccountId) -> Result<Vec<ApiKeyRecord>> {
        let mut keys: Vec<ApiKeyRecord> = lock(&self.records)?
            .values()
            .filter(|r| &r.account_id == account_id)
            .cloned()
            .collect();
        newest_first(&mut keys);
        Ok(keys)
    }

    async fn revoke(
        &self,
        account_id: &AccountId,
        key_id: &ApiKeyId,
        at: Timestamp,
    ) -> Result<Option<ApiKeyRecord>> {
        let mut records = lock(&self.records)?;
        Ok(records
            .values_mut()
            .find(|r| &r.account_id == account_id && &r.id == key_id)
            .map(|r| {
                r.revoked_at.get_or_insert(at);
                r.clone()
            }))
    }

    async fn record_use(&self, key_hash: &str, at: Timestamp) -> Result<bool> {
        let mut records = lock(&self.records)?;
        match records.get_mut(key_hash) {
            Some(r)
                if r.last_used_at
                    .is_none_or(|t| t <= at.plus_millis(-LAST_USED_RESOLUTION_MS)) =>
            {
                r.last_used_at = Some(at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete(&self, account_id: &AccountId, key_id: &ApiKeyId) -> Result<bool> {
        let mut records = lock(&self.records)?;
        let before = records.len();
        records.retain(|_, r| !(&r.account_id == account_id && &r.id == key_id));
        Ok(records.len() < before)
    }
}
