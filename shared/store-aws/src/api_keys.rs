use std::collections::HashMap;

use async_trait::async_trait;

use super::attributes::{get_n, get_s, n, s};
use super::storage_error;
use app::ports::ApiKeyStore;
use app::Result;
use domain::api_key::ApiKeyRecord;

/// Table `api_keys`: partition `key_hash`.
pub struct DynamoApiKeyStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoApiKeyStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoApiKeyStore {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl ApiKeyStore for DynamoApiKeyStore {
    async fn create(&self, record: &ApiKeyRecord) -> Result<()> {
        let item = HashMap::from([
            ("key_hash".to_string(), s(&record.key_hash)),
            ("id".to_string(), s(&record.id)),
            ("account_id".to_string(), s(&record.account_id)),
            ("created_at".to_string(), n(record.created_at)),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    async fn find_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("key_hash", s(key_hash))
            .consistent_read(true)
            .send()
            .await
            .map_err(storage_error)?;
        out.item()
            .map(|item| {
                Ok(ApiKeyRecord {
                    key_hash: get_s(item, "key_hash")?,
                    id: get_s(item, "id")?,
                    account_id: get_s(item, "account_id")?,
                    created_at: get_n(item, "created_at")?,
                })
            })
            .transpose()
    }
}
