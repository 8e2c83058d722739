//! The ports a handler works with, bundled once at start-up.

use std::sync::Arc;
use std::time::Duration;

use crate::limiter::Limiter;
use crate::ports::{
    ApiKeyStore, Clock, DeliveryLog, EventStore, HttpSender, Queue, SubscriptionStore,
};
use domain::destination::DestinationPolicy;
use domain::health::DEFAULT_AUTO_DISABLE_AFTER_SECONDS;
use domain::subscription::UrlPolicy;

/// One batch's worth: a slow endpoint occupies at most one batch's concurrency.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 10;

#[derive(Debug, Clone)]
pub struct Settings {
    /// SHA-256 of the platform key.
    pub platform_key_hash: String,
    pub url_policy: UrlPolicy,
    /// Where deliveries may go; checked when a subscription is saved.
    pub destinations: Arc<DestinationPolicy>,
    /// Deliveries of one batch sent at once.
    pub deliver_concurrency: usize,
    /// Attempts to one subscription in flight at once, per process.
    pub max_in_flight_per_subscription: usize,
    /// The stage named in metrics; `None` emits no metric lines (the local runner).
    pub metrics_stage: Option<String>,
    /// An endpoint failing without a single success for this long is disabled.
    pub auto_disable_after: Duration,
}

impl Settings {
    /// The settings of a Lambda function, from the variables the template sets.
    pub fn from_env() -> crate::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let platform_key_hash = var("PLATFORM_KEY_HASH")
            .ok_or_else(|| crate::Error::Config("PLATFORM_KEY_HASH is not set".into()))?;
        let allowed = var("WEBHOOKS_ALLOWED_CIDRS")
            .map(|list| {
                list.split(',')
                    .map(|c| c.trim().parse())
                    .collect::<Result<Vec<ipnet::IpNet>, _>>()
            })
            .transpose()
            .map_err(|e| crate::Error::Config(format!("WEBHOOKS_ALLOWED_CIDRS: {e}")))?
            .unwrap_or_default();
        Ok(Settings {
            platform_key_hash,
            url_policy: UrlPolicy {
                allow_http: var("WEBHOOKS_ALLOW_HTTP").is_some_and(|v| v == "true"),
            },
            destinations: Arc::new(DestinationPolicy {
                allowed,
                public: true,
            }),
            deliver_concurrency: var("DELIVER_CONCURRENCY")
                .and_then(|v| v.parse().ok())
                .unwrap_or(10),
            max_in_flight_per_subscription: var("MAX_IN_FLIGHT_PER_SUBSCRIPTION")
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_MAX_IN_FLIGHT),
            metrics_stage: Some(var("STAGE").unwrap_or_else(|| "dev".into())),
            auto_disable_after: Duration::from_secs(
                var("AUTO_DISABLE_AFTER_SECONDS")
                    .map(|v| v.parse())
                    .transpose()
                    .map_err(|e| crate::Error::Config(format!("AUTO_DISABLE_AFTER_SECONDS: {e}")))?
                    .unwrap_or(DEFAULT_AUTO_DISABLE_AFTER_SECONDS),
            ),
        })
    }
}

/// The stores and queues of one backend, as its adapter crate opens them.
#[derive(Clone)]
pub struct Stores {
    pub subscriptions: Arc<dyn SubscriptionStore>,
    pub events: Arc<dyn EventStore>,
    pub deliveries: Arc<dyn DeliveryLog>,
    pub api_keys: Arc<dyn ApiKeyStore>,
    pub events_queue: Arc<dyn Queue>,
    pub deliveries_queue: Arc<dyn Queue>,
    pub dead_letter_queue: Arc<dyn Queue>,
}

#[derive(Clone)]
pub struct Services {
    pub subscriptions: Arc<dyn SubscriptionStore>,
    pub events: Arc<dyn EventStore>,
    pub deliveries: Arc<dyn DeliveryLog>,
    pub api_keys: Arc<dyn ApiKeyStore>,
    pub events_queue: Arc<dyn Queue>,
    pub deliveries_queue: Arc<dyn Queue>,
    /// Where deliveries whose attempts ran out are moved, with their history.
    pub dead_letter_queue: Arc<dyn Queue>,
    pub http: Arc<dyn HttpSender>,
    pub clock: Arc<dyn Clock>,
    /// Per-subscription in-flight cap and rate limit, shared by every batch of the process.
    pub limiter: Arc<Limiter>,
    pub settings: Settings,
}

impl Services {
    /// The one place the ports are put together, for every composition root.
    pub fn new(
        stores: Stores,
        http: Arc<dyn HttpSender>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Services {
        Services {
            subscriptions: stores.subscriptions,
            events: stores.events,
            deliveries: stores.deliveries,
            api_keys: stores.api_keys,
            events_queue: stores.events_queue,
            deliveries_queue: stores.deliveries_queue,
            dead_letter_queue: stores.dead_letter_queue,
            http,
            clock,
            limiter: Limiter::new(settings.max_in_flight_per_subscription),
            settings,
        }
    }
}
