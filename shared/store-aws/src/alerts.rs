//! Alert settings and throttles (`domain::alerts`) in the deliveries table, beside the
//! stats: partition `alerts#<account>`, sort `settings` or `throttle#<topic key>`, the
//! value as JSON. A topic holding alerts also has a marker in the partition `alertdue`,
//! sorted by its digest's due time, so one query finds every due digest.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::de::DeserializeOwned;

use super::attributes::{get_id, get_s, n, s, Item};
use super::storage_error;
use app::ports::AlertStore;
use app::{Error, Result};
use domain::alerts::{AlertSettings, ThrottleState};
use domain::ids::AccountId;
use domain::time::Timestamp;

const DUE_PARTITION: &str = "alertdue";
const SETTINGS_SK: &str = "settings";
/// A throttle outlives its window by far: a topic quiet this long starts afresh.
const THROTTLE_KEPT: Duration = Duration::from_secs(7 * 86_400);

pub struct DynamoAlertStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoAlertStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str) -> Self {
        DynamoAlertStore {
            client,
            table: table.to_string(),
        }
    }

    async fn get(&self, pk: String, sk: String) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(storage_error)?;
        Ok(out.item)
    }

    /// The marker of a digest due at `due`.
    fn due_key(due: Timestamp, account_id: &AccountId, key: &str) -> (String, String) {
        (
            DUE_PARTITION.to_string(),
            format!("{:013}#{account_id}#{key}", due.as_millis().max(0)),
        )
    }
}

fn partition(account_id: &AccountId) -> String {
    format!("alerts#{account_id}")
}

fn throttle_sk(key: &str) -> String {
    format!("throttle#{key}")
}

fn from_json<T: DeserializeOwned>(item: &Item, name: &str) -> Result<T> {
    serde_json::from_str(&get_s(item, name)?)
        .map_err(|e| Error::storage_caused_by("stored alert JSON", e))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("alert settings and states serialise")
}

/// DynamoDB's TTL attribute: seconds since the epoch.
fn expires_at(t: Timestamp) -> AttributeValue {
    n((t + THROTTLE_KEPT).as_millis() / 1000)
}

#[async_trait]
impl AlertStore for DynamoAlertStore {
    async fn settings(&self, account_id: &AccountId) -> Result<Option<AlertSettings>> {
        self.get(partition(account_id), SETTINGS_SK.into())
            .await?
            .map(|item| from_json(&item, "settings"))
            .transpose()
    }

    async fn put_settings(&self, account_id: &AccountId, settings: &AlertSettings) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(partition(account_id)))
            .item("sk", s(SETTINGS_SK))
            .item("settings", s(to_json(settings)))
            .send()
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    async fn throttle(&self, account_id: &AccountId, key: &str) -> Result<Option<ThrottleState>> {
        self.get(partition(account_id), throttle_sk(key))
            .await?
            .map(|item| from_json(&item, "state"))
            .transpose()
    }

    async fn put_throttle(
        &self,
        account_id: &AccountId,
        key: &str,
        prior: Option<&ThrottleState>,
        next: &ThrottleState,
    ) -> Result<bool> {
        let prior_due = prior.and_then(ThrottleState::digest_due);
        let next_due = next.digest_due();
        // The marker first: one left behind by a failed write below points at a state
        // with nothing due at its time, and `due_digests` removes it.
        if let (Some(due), None) = (next_due, prior_due) {
            let (pk, sk) = Self::due_key(due, account_id, key);
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(pk))
                .item("sk", s(sk))
                .item("account_id", s(account_id.as_str()))
                .item("topic", s(key))
                .item("expires_at", expires_at(due))
                .send()
                .await
                .map_err(storage_error)?;
        }
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(partition(account_id)))
            .item("sk", s(throttle_sk(key)))
            .item("version", n(next.version))
            .item("state", s(to_json(next)))
            .item("expires_at", expires_at(next.last_sent_at));
        let request = match prior {
            None => request.condition_expression("attribute_not_exists(pk)"),
            Some(p) => request
                .condition_expression("version = :v")
                .expression_attribute_values(":v", n(p.version)),
        };
        match request.send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(storage_error(e)),
        }
        if let (Some(due), None) = (prior_due, next_due) {
            let (pk, sk) = Self::due_key(due, account_id, key);
            // Best effort: a marker left behind is removed by `due_digests` (nothing is
            // due on the state it points at at its time).
            if let Err(e) = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(pk))
                .key("sk", s(sk))
                .send()
                .await
            {
                tracing::warn!(error = %storage_error(e), topic = key, "could not remove a digest marker");
            }
        }
        Ok(true)
    }

    async fn due_digests(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(AccountId, ThrottleState)>> {
        let mut due = Vec::new();
        let mut start = None;
        let upper = format!("{:013}~", now.as_millis().max(0));
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk <= :upper")
                .expression_attribute_values(":pk", s(DUE_PARTITION))
                .expression_attribute_values(":upper", s(&upper))
                .consistent_read(true)
                .limit((limit - due.len()).min(1000) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(storage_error)?;
            for item in out.items() {
                let (account, topic): (AccountId, String) =
                    (get_id(item, "account_id")?, get_s(item, "topic")?);
                // A marker whose state holds nothing due at its time is left over (a
                // best-effort delete that failed, a write that lost its condition): it
                // goes now, so leftovers never crowd out the digests that are due.
                let marker_due = get_s(item, "sk")?
                    .get(..13)
                    .and_then(|ms| ms.parse::<i64>().ok());
                let live = self
                    .throttle(&account, &topic)
                    .await?
                    .filter(|s| s.digest_due().map(|d| d.as_millis()) == marker_due);
                if let Some(state) = live {
                    due.push((account, state));
                } else {
                    self.client
                        .delete_item()
                        .table_name(&self.table)
                        .key("pk", s(DUE_PARTITION))
                        .key("sk", item["sk"].clone())
                        .send()
                        .await
                        .map_err(storage_error)?;
                }
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() && due.len() < limit => start = Some(k.clone()),
                _ => return Ok(due),
            }
        }
    }
}
