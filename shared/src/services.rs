//! The ports a handler works with, bundled once at start-up.

use std::sync::Arc;

use crate::adapters::ssrf::DestinationPolicy;
use crate::domain::subscription::UrlPolicy;
use crate::ports::{
    ApiKeyStore, Clock, DeliveryLog, EventStore, HttpSender, Queue, SubscriptionStore,
};

#[derive(Debug, Clone)]
pub struct Settings {
    /// SHA-256 of the platform key.
    pub platform_key_hash: String,
    pub url_policy: UrlPolicy,
    /// Where deliveries may go; checked when a subscription is saved.
    pub destinations: Arc<DestinationPolicy>,
    /// Deliveries of one batch sent at once.
    pub deliver_concurrency: usize,
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
    pub settings: Settings,
}
