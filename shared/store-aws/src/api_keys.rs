use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::ReturnValue;

use super::attributes::{get_id, get_ms, get_s, ms, n, opt_ms, opt_s, s, Item};
use super::paging::all_items;
use super::storage_error;
use app::ports::ApiKeyStore;
use app::Result;
use domain::api_key::{newest_first, ApiKeyRecord, LAST_USED_RESOLUTION_MS};
use domain::ids::{AccountId, ApiKeyId};
use domain::time::Timestamp;

/// The index listing an account's keys: partition `account_id`, sort `id`.
pub const BY_ACCOUNT_INDEX: &str = "by_account";

/// Table `api_keys`: partition `key_hash`; index [`BY_ACCOUNT_INDEX`]. Times are milliseconds;
/// the expiry is `expires_at_ms`, not `expires_at`, the name the other tables give their TTL
/// (in seconds), which this table has none of: an expired key stays listed.
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

    /// The account's key `key_id`, found on the index (eventually consistent: a key created
    /// a moment ago may not be there yet).
    async fn find_by_id(
        &self,
        account_id: &AccountId,
        key_id: &ApiKeyId,
    ) -> Result<Option<ApiKeyRecord>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_ACCOUNT_INDEX)
            .key_condition_expression("account_id = :a AND id = :i")
            .expression_attribute_values(":a", s(account_id.as_str()))
            .expression_attribute_values(":i", s(key_id.as_str()))
            .send()
            .await
            .map_err(storage_error)?;
        out.items().first().map(from_item).transpose()
    }
}

fn from_item(item: &Item) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        key_hash: get_s(item, "key_hash")?,
        id: get_id(item, "id")?,
        account_id: get_id(item, "account_id")?,
        // Keys stored before prefixes were kept have none.
        prefix: opt_s(item, "prefix").unwrap_or_default(),
        created_at: get_ms(item, "created_at")?,
        last_used_at: opt_ms(item, "last_used_at"),
        revoked_at: opt_ms(item, "revoked_at"),
        expires_at: opt_ms(item, "expires_at_ms"),
    })
}

#[async_trait]
impl ApiKeyStore for DynamoApiKeyStore {
    async fn create(&self, record: &ApiKeyRecord) -> Result<()> {
        let mut item = HashMap::from([
            ("key_hash".to_string(), s(&record.key_hash)),
            ("id".to_string(), s(record.id.as_str())),
            ("account_id".to_string(), s(record.account_id.as_str())),
            ("prefix".to_string(), s(&record.prefix)),
            ("created_at".to_string(), ms(record.created_at)),
        ]);
        for (name, value) in [
            ("last_used_at", record.last_used_at),
            ("revoked_at", record.revoked_at),
            ("expires_at_ms", record.expires_at),
        ] {
            if let Some(v) = value {
                item.insert(name.to_string(), ms(v));
            }
        }
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
        out.item().map(from_item).transpose()
    }

    async fn list(&self, account_id: &AccountId) -> Result<Vec<ApiKeyRecord>> {
        let items = all_items(|start| {
            self.client
                .query()
                .table_name(&self.table)
                .index_name(BY_ACCOUNT_INDEX)
                .key_condition_expression("account_id = :a")
                .expression_attribute_values(":a", s(account_id.as_str()))
                .scan_index_forward(false)
                .set_exclusive_start_key(start)
        })
        .await?;
        let mut keys = items.iter().map(from_item).collect::<Result<Vec<_>>>()?;
        newest_first(&mut keys);
        Ok(keys)
    }

    async fn revoke(
        &self,
        account_id: &AccountId,
        key_id: &ApiKeyId,
        at: Timestamp,
    ) -> Result<Option<ApiKeyRecord>> {
        let Some(found) = self.find_by_id(account_id, key_id).await? else {
            return Ok(None);
        };
        // On the table itself, where authentication reads with strong consistency; only
        // while the item is still this account's key.
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("key_hash", s(&found.key_hash))
            .update_expression("SET revoked_at = if_not_exists(revoked_at, :at)")
            .condition_expression("account_id = :a AND id = :i")
            .expression_attribute_values(":at", ms(at))
            .expression_attribute_values(":a", s(account_id.as_str()))
            .expression_attribute_values(":i", s(key_id.as_str()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match outcome {
            Ok(out) => out.attributes().map(from_item).transpose(),
            Err(e) => match e.into_service_error() {
                // Forgotten meanwhile.
                UpdateItemError::ConditionalCheckFailedException(_) => Ok(None),
                other => Err(storage_error(other)),
            },
        }
    }

    async fn record_use(&self, key_hash: &str, at: Timestamp) -> Result<bool> {
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("key_hash", s(key_hash))
            .update_expression("SET last_used_at = :at")
            // `attribute_exists`: an update must not create an item for an unknown hash.
            .condition_expression(
                "attribute_exists(key_hash) AND \
                 (attribute_not_exists(last_used_at) OR last_used_at <= :before)",
            )
            .expression_attribute_values(":at", ms(at))
            .expression_attribute_values(":before", n(at.as_millis() - LAST_USED_RESOLUTION_MS))
            .send()
            .await;
        match outcome {
            Ok(_) => Ok(true),
            Err(e) => match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(_) => Ok(false),
                other => Err(storage_error(other)),
            },
        }
    }

    async fn delete(&self, account_id: &AccountId, key_id: &ApiKeyId) -> Result<bool> {
        let Some(found) = self.find_by_id(account_id, key_id).await? else {
            return Ok(false);
        };
        let outcome = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("key_hash", s(&found.key_hash))
            .condition_expression("account_id = :a AND id = :i")
            .expression_attribute_values(":a", s(account_id.as_str()))
            .expression_attribute_values(":i", s(key_id.as_str()))
            .send()
            .await;
        match outcome {
            Ok(_) => Ok(true),
            Err(e) => match e.into_service_error() {
                DeleteItemError::ConditionalCheckFailedException(_) => Ok(false),
                other => Err(storage_error(other)),
            },
        }
    }
}
