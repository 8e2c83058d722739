//! The ports a handler works with, bundled once at start-up.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Vars;
use crate::jwt::JwtRingCache;
use crate::limiter::Limiter;
use crate::oauth::OAuthTokens;
use crate::ports::{
    AlertStore, ApiKeyStore, Clock, DeliveryLog, EventStore, HttpSender, JwtKeyStore, Mailer,
    OsRandom, Queue, SubscriptionStore,
};
use domain::destination::DestinationPolicy;
use domain::health::DEFAULT_AUTO_DISABLE_AFTER_SECONDS;
use domain::random::Random;
use domain::subscription::{UrlPolicy, DEFAULT_MAX_SUBSCRIPTIONS_PER_ACCOUNT};

/// One batch's worth: a slow endpoint occupies at most one batch's concurrency.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 10;
/// A whole batch at once.
pub const DEFAULT_SEND_CONCURRENCY: usize = 10;

#[derive(Debug, Clone)]
pub struct Settings {
    /// SHA-256 of the platform key.
    pub platform_key_hash: String,
    pub url_policy: UrlPolicy,
    /// Where deliveries may go; checked when a subscription is saved.
    pub destinations: Arc<DestinationPolicy>,
    /// Deliveries of one batch sent at once.
    pub send_concurrency: usize,
    /// Attempts to one subscription in flight at once, per process.
    pub max_in_flight_per_subscription: usize,
    /// The stage named in metrics; `None` emits no metric lines (the local runner).
    pub metrics_stage: Option<String>,
    /// An endpoint failing without a single success for this long is disabled.
    pub auto_disable_after: Duration,
    /// This many failed attempts in a row make an endpoint `failing` (`webhook.failing`).
    pub failing_after_failures: u32,
    /// Subscriptions one account may have; creating one more is refused.
    pub max_subscriptions_per_account: usize,
    /// How long past its due time a pending delivery waits before the sweep sends it again
    /// (see `sweep`).
    pub sweep_grace: Duration,
    /// The addresses deliveries leave from, when the operator knows them (a NAT's elastic
    /// IPs): a diagnosis reports them for the customer's firewall.
    pub egress_ips: Vec<std::net::IpAddr>,
    /// The console's base (`https://host`): alert e-mails link to its pages. Empty: the
    /// links are relative.
    pub console_url: String,
    /// Who alert e-mail is sent from; `None`: alert e-mail is off on this deployment.
    /// Fan-out sends it (through SES on AWS); the API only reports whether it is on.
    pub alert_sender: Option<String>,
}

impl Settings {
    /// The settings of a Lambda function, from the variables the template sets.
    pub fn from_env() -> crate::Result<Self> {
        Self::from_vars(&Vars::from_env())
    }

    /// The same variables, with the same names and strictness, as the runner's flags read.
    pub fn from_vars<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> crate::Result<Self> {
        vars.refuse_renamed()?;
        Ok(Settings {
            platform_key_hash: vars.required("PLATFORM_KEY_HASH")?,
            url_policy: UrlPolicy {
                allow_http: vars.flag("WEBHOOKS_ALLOW_HTTP")?,
            },
            destinations: Arc::new(DestinationPolicy {
                allowed: vars.list("WEBHOOKS_ALLOWED_CIDRS")?,
                public: !vars.flag("WEBHOOKS_ONLY_ALLOWED_CIDRS")?,
            }),
            send_concurrency: vars
                .positive("WEBHOOKS_SEND_CONCURRENCY", DEFAULT_SEND_CONCURRENCY as u64)?
                as usize,
            max_in_flight_per_subscription: vars.positive(
                "WEBHOOKS_MAX_IN_FLIGHT_PER_SUBSCRIPTION",
                DEFAULT_MAX_IN_FLIGHT as u64,
            )? as usize,
            metrics_stage: Some(vars.get("STAGE").unwrap_or_else(|| "dev".into())),
            auto_disable_after: Duration::from_secs(vars.positive(
                "WEBHOOKS_AUTO_DISABLE_AFTER_SECONDS",
                DEFAULT_AUTO_DISABLE_AFTER_SECONDS,
            )?),
            failing_after_failures: vars
                .positive(
                    "WEBHOOKS_FAILING_AFTER_FAILURES",
                    domain::health::DEFAULT_FAILING_AFTER_FAILURES as u64,
                )?
                .min(u32::MAX as u64) as u32,
            max_subscriptions_per_account: vars.positive(
                "WEBHOOKS_MAX_SUBSCRIPTIONS_PER_ACCOUNT",
                DEFAULT_MAX_SUBSCRIPTIONS_PER_ACCOUNT,
            )? as usize,
            sweep_grace: Duration::from_secs(vars.positive(
                "WEBHOOKS_SWEEP_GRACE_SECONDS",
                crate::sweep::DEFAULT_GRACE.as_secs(),
            )?),
            egress_ips: vars.list("WEBHOOKS_EGRESS_IPS")?,
            console_url: vars.get("WEBHOOKS_CONSOLE_URL").unwrap_or_default(),
            alert_sender: vars.get("WEBHOOKS_ALERT_SENDER").filter(|s| !s.is_empty()),
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
    pub alerts: Arc<dyn AlertStore>,
    /// The service's JWT signing keys (see `jwt`).
    pub jwt_keys: Arc<dyn JwtKeyStore>,
    pub events_queue: Arc<dyn Queue>,
    pub deliveries_queue: Arc<dyn Queue>,
    /// What the deliveries queue itself gave up on (see `stranded`).
    pub stranded_queue: Arc<dyn Queue>,
    pub dead_letter_queue: Arc<dyn Queue>,
}

#[derive(Clone)]
pub struct Services {
    pub subscriptions: Arc<dyn SubscriptionStore>,
    pub events: Arc<dyn EventStore>,
    pub deliveries: Arc<dyn DeliveryLog>,
    pub api_keys: Arc<dyn ApiKeyStore>,
    pub alerts: Arc<dyn AlertStore>,
    /// The service's JWT signing keys (see `jwt`).
    pub jwt_keys: Arc<dyn JwtKeyStore>,
    pub events_queue: Arc<dyn Queue>,
    pub deliveries_queue: Arc<dyn Queue>,
    /// What the deliveries queue itself gave up on after too many receives; the runner
    /// polls it, on AWS the deliver function is its consumer (see `stranded`).
    pub stranded_queue: Arc<dyn Queue>,
    /// Where deliveries whose attempts ran out are moved, with their history.
    pub dead_letter_queue: Arc<dyn Queue>,
    pub http: Arc<dyn HttpSender>,
    /// Where alert e-mail goes out; `None`: e-mail is off on this deployment.
    pub mailer: Option<Arc<dyn Mailer>>,
    pub clock: Arc<dyn Clock>,
    /// Where ids, secrets and retry jitter get their randomness.
    pub random: Arc<dyn Random>,
    /// Per-subscription in-flight cap and rate limit, shared by every batch of the process.
    pub limiter: Arc<Limiter>,
    /// OAuth access tokens kept for subscriptions with client credentials.
    pub oauth_tokens: Arc<OAuthTokens>,
    /// The JWT key ring as last read, shared by every delivery of the process.
    pub jwt_ring: Arc<JwtRingCache>,
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
            alerts: stores.alerts,
            jwt_keys: stores.jwt_keys,
            events_queue: stores.events_queue,
            deliveries_queue: stores.deliveries_queue,
            stranded_queue: stores.stranded_queue,
            dead_letter_queue: stores.dead_letter_queue,
            http,
            mailer: None,
            clock,
            random: Arc::new(OsRandom),
            limiter: Limiter::new(settings.max_in_flight_per_subscription),
            oauth_tokens: Arc::default(),
            jwt_ring: Arc::default(),
            settings,
        }
    }

    /// The same services, sending alert e-mail through `mailer`.
    pub fn with_mailer(mut self, mailer: Arc<dyn Mailer>) -> Services {
        self.mailer = Some(mailer);
        self
    }
}
