//! The service's JWT signing keys, in the subscriptions table (the functions that sign, api
//! and deliver, already read and write it): partition `#service`, which no account id can
//! be (`#` is outside the id alphabet), sort `jwt-keys`, the ring as JSON (its private
//! keys sealed by the layer above) and its `version`, written only from the version before.

use async_trait::async_trait;

use super::attributes::{get_s, n, s, Item};
use super::storage_error;
use app::ports::JwtKeyStore;
use app::{Error, Result};
use domain::jwt::KeyRing;

const PARTITION: &str = "#service";
const SORT: &str = "jwt-keys";

pub struct DynamoJwtKeyStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoJwtKeyStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str) -> Self {
        DynamoJwtKeyStore {
            client,
            table: table.to_string(),
        }
    }
}

fn key() -> Item {
    [
        ("account_id".to_string(), s(PARTITION)),
        ("id".to_string(), s(SORT)),
    ]
    .into()
}

#[async_trait]
impl JwtKeyStore for DynamoJwtKeyStore {
    async fn key_ring(&self) -> Result<Option<KeyRing>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(storage_error)?;
        out.item()
            .map(|item| {
                serde_json::from_str(&get_s(item, "ring")?)
                    .map_err(|e| Error::storage_caused_by("stored JWT key ring", e))
            })
            .transpose()
    }

    async fn put_key_ring(&self, ring: &KeyRing) -> Result<bool> {
        let mut item = key();
        item.insert(
            "ring".into(),
            s(serde_json::to_string(ring).expect("a key ring serialises")),
        );
        item.insert("version".into(), n(ring.version));
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        put = if ring.version == 1 {
            put.condition_expression("attribute_not_exists(#v)")
                .expression_attribute_names("#v", "version")
        } else {
            put.condition_expression("#v = :prior")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":prior", n(ring.version - 1))
        };
        match put.send().await {
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
}
