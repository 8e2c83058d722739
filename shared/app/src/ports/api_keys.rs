use async_trait::async_trait;

use crate::Result;
use domain::api_key::ApiKeyRecord;

#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn create(&self, record: &ApiKeyRecord) -> Result<()>;
    async fn find_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>>;
}
