//! API keys, found by the hash of the key (the key itself is never stored).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use app::ports::ApiKeyStore;
use app::{Error, Result};
use domain::api_key::ApiKeyRecord;

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
}
