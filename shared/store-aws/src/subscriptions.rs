use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;

use super::attributes::{get_s, n, s, Item};
use super::paging::{all_items, batch_get_items};
use super::storage_error;
use app::ports::SubscriptionStore;
use app::{Error, Result};
use domain::ids::{AccountId, SubscriptionId};
use domain::subscription::Subscription;

/// Table `subscriptions`: partition `account_id`, sort `id`, the subscription as JSON in `doc`.
pub struct DynamoSubscriptionStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoSubscriptionStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoSubscriptionStore {
            client,
            table: table.into(),
        }
    }
}

fn decode(item: &Item) -> Result<Subscription> {
    serde_json::from_str(&get_s(item, "doc")?)
        .map_err(|e| Error::storage(format!("corrupt subscription: {e}")))
}

fn key(account_id: &str, id: &str) -> Item {
    HashMap::from([
        ("account_id".to_string(), s(account_id)),
        ("id".to_string(), s(id)),
    ])
}

/// The subscription as JSON in `doc`, and its version as a number a condition can compare.
fn item(sub: &Subscription) -> Result<Item> {
    let doc = serde_json::to_string(sub).map_err(|e| Error::storage(e.to_string()))?;
    let mut item = key(&sub.account_id, &sub.id);
    item.insert("doc".into(), s(doc));
    item.insert("version".into(), n(sub.version));
    Ok(item)
}

#[async_trait]
impl SubscriptionStore for DynamoSubscriptionStore {
    async fn put(&self, sub: &Subscription) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(sub)?))
            .send()
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    async fn put_if_version(&self, sub: &Subscription, expected: u64) -> Result<bool> {
        // Items written before versions existed have no `version`: they count as 0.
        let condition = if expected == 0 {
            "attribute_exists(#id) AND (attribute_not_exists(#v) OR #v = :expected)"
        } else {
            "attribute_exists(#id) AND #v = :expected"
        };
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(sub)?))
            .condition_expression(condition)
            .expression_attribute_names("#id", "id")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":expected", n(expected))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(storage_error(e)),
        }
    }

    async fn get(
        &self,
        account_id: &AccountId,
        id: &SubscriptionId,
    ) -> Result<Option<Subscription>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(account_id, id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(storage_error)?;
        out.item().map(decode).transpose()
    }

    async fn get_many(&self, keys: &[(AccountId, SubscriptionId)]) -> Result<Vec<Subscription>> {
        let mut unique: Vec<&(AccountId, SubscriptionId)> = keys.iter().collect();
        unique.sort();
        unique.dedup();
        let keys = unique.iter().map(|(a, i)| key(a, i)).collect();
        batch_get_items(&self.client, &self.table, keys)
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    async fn list(
        &self,
        account_id: &AccountId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Subscription>> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_values(":a", s(account_id.as_str()))
            .consistent_read(true)
            .limit(limit as i32);
        query = match after {
            Some(cursor) => query
                .key_condition_expression("account_id = :a AND id > :after")
                .expression_attribute_values(":after", s(cursor)),
            None => query.key_condition_expression("account_id = :a"),
        };
        let out = query.send().await.map_err(storage_error)?;
        out.items().iter().map(decode).collect()
    }

    async fn list_all(&self, account_id: &AccountId) -> Result<Vec<Subscription>> {
        // Subscriptions have no TTL; `all_items` leaves them all in.
        let items = all_items(|start| {
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("account_id = :a")
                .expression_attribute_values(":a", s(account_id.as_str()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
        })
        .await?;
        items.iter().map(decode).collect()
    }

    async fn delete(&self, account_id: &AccountId, id: &SubscriptionId) -> Result<bool> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(account_id, id)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(storage_error)?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }
}
