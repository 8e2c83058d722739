//! The AWS adapters: SQS queues and DynamoDB tables behind the same ports as the embedded
//! default, and the sealing key in SSM Parameter Store. Built once per process from
//! `aws-config` (region, credentials, and `AWS_ENDPOINT_URL` for a local moto server) and
//! the resource names in the environment.

mod alerts;
mod api_keys;
mod attributes;
mod deliveries;
mod events;
mod jwt_keys;
mod listing;
mod paging;
pub mod provision;
mod sealing_key;
mod sqs;
mod subscriptions;

use std::sync::Arc;
use std::time::Duration;

pub use alerts::DynamoAlertStore;
pub use api_keys::{DynamoApiKeyStore, BY_ACCOUNT_INDEX as API_KEYS_BY_ACCOUNT_INDEX};
pub use deliveries::DynamoDeliveryLog;
pub use events::DynamoEventStore;
pub use jwt_keys::DynamoJwtKeyStore;
pub use sealing_key::{SealingKeyAccess, SsmSealingKey};
pub use sqs::SqsQueue;
pub use subscriptions::DynamoSubscriptionStore;

use app::config::Vars;
use app::ports::{OsRandom, SealingKeys};
use app::sealed::{CachedSealingKey, SealedJwtKeys, SealedSubscriptions};
use app::topology::{self, QueueSpec};
use app::{Error, Result, Stores};
use domain::backoff::Backoff;

/// Waits before asking DynamoDB again for the items a batch call left unprocessed
/// (throttling): 20 ms doubling to 2 s, eight times, then the call fails as transient.
pub(crate) const UNPROCESSED_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(20), 2, Duration::from_secs(2), 8);

/// The names of every AWS resource, as the SAM template hands them to the functions.
#[derive(Debug, Clone)]
pub struct Resources {
    pub events_queue_url: String,
    pub deliveries_queue_url: String,
    /// What the deliveries queue itself gives up on (see `app::stranded`).
    pub deliveries_stranded_queue_url: String,
    pub deliveries_dlq_url: String,
    pub subscriptions_table: String,
    pub events_table: String,
    pub deliveries_table: String,
    pub api_keys_table: String,
    /// How long events and deliveries are kept (DynamoDB TTL).
    pub retention: Duration,
    /// The SSM parameter holding the key that seals secrets at rest. Only the functions
    /// that read or write secrets are given it (api, deliver): fan-out and ingest never
    /// touch one.
    pub sealing_key_parameter: Option<String>,
}

impl Resources {
    pub fn from_env() -> Result<Self> {
        Self::from_vars(&Vars::from_env())
    }

    pub fn from_vars<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Self> {
        let days = vars.positive("EVENT_RETENTION_DAYS", 30)?;
        Ok(Resources {
            events_queue_url: vars.required("EVENTS_QUEUE_URL")?,
            deliveries_queue_url: vars.required("DELIVERIES_QUEUE_URL")?,
            deliveries_stranded_queue_url: vars.required("DELIVERIES_STRANDED_QUEUE_URL")?,
            deliveries_dlq_url: vars.required("DELIVERIES_DLQ_URL")?,
            subscriptions_table: vars.required("SUBSCRIPTIONS_TABLE")?,
            events_table: vars.required("EVENTS_TABLE")?,
            deliveries_table: vars.required("DELIVERIES_TABLE")?,
            api_keys_table: vars.required("API_KEYS_TABLE")?,
            retention: Duration::from_secs(days * 86_400),
            sealing_key_parameter: vars.get("SEALING_KEY_PARAMETER"),
        })
    }
}

/// SDK clients, built once per process and shared (they hold the connection pools).
#[derive(Clone)]
pub struct Clients {
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// Used only on first need of the sealing key: building it makes no call.
    pub ssm: aws_sdk_ssm::Client,
}

impl Clients {
    pub async fn from_env() -> Self {
        Self::new(&aws_config::load_from_env().await)
    }

    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Clients {
            sqs: aws_sdk_sqs::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
        }
    }
}

/// Turns an SDK failure into a retryable storage or queue error, with its service message;
/// the SDK's error stays its typed source.
pub(crate) fn storage_error<E: std::error::Error + Send + Sync + 'static>(err: E) -> Error {
    Error::storage_caused_by("DynamoDB", err)
}

pub(crate) fn queue_error<E: std::error::Error + Send + Sync + 'static>(err: E) -> Error {
    Error::queue_caused_by("SQS", err)
}

/// Every store and queue on AWS.
pub fn stores(clients: &Clients, resources: &Resources) -> Stores {
    let ddb = &clients.dynamodb;
    let queue = |url: &str, spec: QueueSpec| {
        Arc::new(
            SqsQueue::new(clients.sqs.clone(), url).with_max_message_bytes(spec.max_message_bytes),
        )
    };
    Stores {
        subscriptions: Arc::new(DynamoSubscriptionStore::new(
            ddb.clone(),
            &resources.subscriptions_table,
        )),
        events: Arc::new(DynamoEventStore::new(
            ddb.clone(),
            &resources.events_table,
            resources.retention,
        )),
        deliveries: Arc::new(DynamoDeliveryLog::new(
            ddb.clone(),
            &resources.deliveries_table,
            &resources.events_table,
            resources.retention,
        )),
        api_keys: Arc::new(DynamoApiKeyStore::new(
            ddb.clone(),
            &resources.api_keys_table,
        )),
        alerts: Arc::new(DynamoAlertStore::new(
            ddb.clone(),
            &resources.deliveries_table,
        )),
        jwt_keys: Arc::new(DynamoJwtKeyStore::new(
            ddb.clone(),
            &resources.subscriptions_table,
        )),
        events_queue: queue(&resources.events_queue_url, topology::EVENTS),
        deliveries_queue: queue(&resources.deliveries_queue_url, topology::DELIVERIES),
        stranded_queue: queue(
            &resources.deliveries_stranded_queue_url,
            topology::DELIVERIES_STRANDED,
        ),
        dead_letter_queue: queue(&resources.deliveries_dlq_url, topology::DELIVERIES_DLQ),
    }
}

/// The key that seals secrets at rest, kept in the SSM parameter `resources` names: asked
/// for on first need (sealing a value, or opening a sealed one), created then if the
/// parameter does not exist yet and `access` allows it, and kept for the life of the
/// process.
pub fn sealing_keys(
    clients: &Clients,
    resources: &Resources,
    access: SealingKeyAccess,
) -> Result<Arc<dyn SealingKeys>> {
    let parameter = resources
        .sealing_key_parameter
        .as_deref()
        .ok_or_else(|| Error::Config("SEALING_KEY_PARAMETER is not set".into()))?;
    Ok(Arc::new(CachedSealingKey::new(SsmSealingKey::with_access(
        clients.ssm.clone(),
        parameter,
        access,
    ))))
}

/// Every store, with the subscriptions' secrets sealed (see `sealing_keys`): for the
/// processes that write secrets or sign with them.
pub fn sealed_stores(
    clients: &Clients,
    resources: &Resources,
    access: SealingKeyAccess,
) -> Result<Stores> {
    let mut stores = stores(clients, resources);
    let keys = sealing_keys(clients, resources, access)?;
    stores.subscriptions = Arc::new(SealedSubscriptions::new(
        stores.subscriptions,
        keys.clone(),
        Arc::new(OsRandom),
    ));
    stores.jwt_keys = Arc::new(SealedJwtKeys::new(
        stores.jwt_keys,
        keys,
        Arc::new(OsRandom),
    ));
    Ok(stores)
}

/// What a Lambda function that never reads a secret (ingest, fan-out) opens once at init:
/// the clients, and the stores named by its environment. Fan-out reads subscriptions only
/// for their routing and passes no secret on, so their values stay as stored.
pub async fn stores_from_env() -> Result<Stores> {
    let resources = Resources::from_env()?;
    let clients = Clients::from_env().await;
    Ok(stores(&clients, &resources))
}

/// What a Lambda function that writes secrets or signs with them (api, deliver) opens once
/// at init: `stores_from_env` with the subscriptions sealed. Makes no call: the key is
/// fetched when first needed.
pub async fn sealed_stores_from_env(access: SealingKeyAccess) -> Result<Stores> {
    let resources = Resources::from_env()?;
    let clients = Clients::from_env().await;
    sealed_stores(&clients, &resources, access)
}
