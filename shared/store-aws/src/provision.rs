//! Creates the queues and tables the way `template.yaml` declares them, for a moto server
//! in tests or a quick start against an empty account. Production uses the template.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

use super::api_keys::BY_ACCOUNT_INDEX;
use super::deliveries::{BY_EVENT_INDEX, BY_STATUS_INDEX, BY_SUBSCRIPTION_INDEX};
use super::events::BY_TIME_INDEX;
use super::{queue_error, storage_error, Clients, Resources};
use app::topology::{self, QueueSpec};
use app::Result;

/// Creates a queue as `spec` describes it, redriven to the queue at `dlq_arn` if it has one.
async fn queue(
    clients: &Clients,
    prefix: &str,
    spec: QueueSpec,
    dlq_arn: Option<&str>,
) -> Result<(String, String)> {
    let name = format!("{prefix}{}", spec.name);
    let mut attributes = HashMap::from([
        (
            QueueAttributeName::VisibilityTimeout,
            spec.visibility.as_secs().to_string(),
        ),
        (
            QueueAttributeName::MessageRetentionPeriod,
            spec.retention.as_secs().to_string(),
        ),
        (
            QueueAttributeName::MaximumMessageSize,
            spec.max_message_bytes.to_string(),
        ),
    ]);
    if let (Some(dlq_arn), Some(max)) = (dlq_arn, spec.max_receives) {
        attributes.insert(
            QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":{max}}}"#),
        );
    }
    let url = clients
        .sqs
        .create_queue()
        .queue_name(&name)
        .set_attributes(Some(attributes))
        .send()
        .await
        .map_err(queue_error)?
        .queue_url()
        .unwrap_or_default()
        .to_string();
    let arn = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(queue_error)?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
    Ok((url, arn))
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .expect("name and type are set")
}

/// Index sort keys that are numbers (milliseconds since the epoch).
const NUMERIC_KEYS: &[&str] = &["created_at", "updated_at", "received_at"];

fn attribute(name: &str) -> AttributeDefinition {
    let kind = if NUMERIC_KEYS.contains(&name) {
        ScalarAttributeType::N
    } else {
        ScalarAttributeType::S
    };
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .expect("name and type are set")
}

/// A global secondary index projecting every attribute.
fn index(name: &str, partition: &str, sort: &str) -> Result<GlobalSecondaryIndex> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(partition, KeyType::Hash))
        .key_schema(key(sort, KeyType::Range))
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(storage_error)
}

/// A table: its key, its indexes (name, partition, sort) and whether it has a TTL.
struct TableSpec<'a> {
    name: &'a str,
    partition: &'a str,
    sort: Option<&'a str>,
    indexes: &'a [(&'a str, &'a str, &'a str)],
    ttl: bool,
}

async fn table(clients: &Clients, spec: TableSpec<'_>) -> Result<()> {
    let mut request = clients
        .dynamodb
        .create_table()
        .table_name(spec.name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(spec.partition, KeyType::Hash));
    let mut defined: Vec<&str> = vec![spec.partition];
    if let Some(sort) = spec.sort {
        request = request.key_schema(key(sort, KeyType::Range));
        defined.push(sort);
    }
    for (name, partition, sort) in spec.indexes {
        for attr in [*partition, *sort] {
            if !defined.contains(&attr) {
                defined.push(attr);
            }
        }
        request = request.global_secondary_indexes(index(name, partition, sort)?);
    }
    for attr in defined {
        request = request.attribute_definitions(attribute(attr));
    }
    request.send().await.map_err(storage_error)?;
    if spec.ttl {
        clients
            .dynamodb
            .update_time_to_live()
            .table_name(spec.name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(true)
                    .build()
                    .map_err(storage_error)?,
            )
            .send()
            .await
            .map_err(storage_error)?;
    }
    Ok(())
}

/// Creates every queue and table with names starting with `prefix`, and names the sealing
/// key's parameter after it.
pub async fn create_all(clients: &Clients, prefix: &str) -> Result<Resources> {
    let (_, events_dlq_arn) = queue(clients, prefix, topology::EVENTS_DLQ, None).await?;
    let (events_queue_url, _) =
        queue(clients, prefix, topology::EVENTS, Some(&events_dlq_arn)).await?;
    let (deliveries_dlq_url, deliveries_dlq_arn) =
        queue(clients, prefix, topology::DELIVERIES_DLQ, None).await?;
    let (deliveries_stranded_queue_url, stranded_arn) = queue(
        clients,
        prefix,
        topology::DELIVERIES_STRANDED,
        Some(&deliveries_dlq_arn),
    )
    .await?;
    let (deliveries_queue_url, _) =
        queue(clients, prefix, topology::DELIVERIES, Some(&stranded_arn)).await?;
    let resources = Resources {
        events_queue_url,
        deliveries_queue_url,
        deliveries_stranded_queue_url,
        deliveries_dlq_url,
        subscriptions_table: format!("{prefix}subscriptions"),
        events_table: format!("{prefix}events"),
        deliveries_table: format!("{prefix}deliveries"),
        api_keys_table: format!("{prefix}api-keys"),
        retention: Duration::from_secs(30 * 86_400),
        // Created on first use (see `sealing_key`), as in a deployment.
        sealing_key_parameter: Some(format!("/{prefix}sealing-key")),
    };
    let tables = [
        TableSpec {
            name: &resources.subscriptions_table,
            partition: "account_id",
            sort: Some("id"),
            indexes: &[],
            ttl: false,
        },
        TableSpec {
            name: &resources.events_table,
            partition: "account_id",
            sort: Some("id"),
            indexes: &[(BY_TIME_INDEX, "account_id", "received_at")],
            ttl: true,
        },
        TableSpec {
            name: &resources.deliveries_table,
            partition: "pk",
            sort: Some("sk"),
            indexes: &[
                (BY_EVENT_INDEX, "event_key", "pk"),
                (BY_SUBSCRIPTION_INDEX, "sub_key", "created_at"),
                (BY_STATUS_INDEX, "status_key", "updated_at"),
            ],
            ttl: true,
        },
        TableSpec {
            name: &resources.api_keys_table,
            partition: "key_hash",
            sort: None,
            indexes: &[(BY_ACCOUNT_INDEX, "account_id", "id")],
            ttl: false,
        },
    ];
    for spec in tables {
        table(clients, spec).await?;
    }
    Ok(resources)
}
