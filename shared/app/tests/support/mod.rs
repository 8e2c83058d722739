//! What the use-case tests share: the in-memory stores, a clock the test moves, an HTTP
//! sender that answers from a script and keeps what it was sent, and SQS events built as
//! Lambda's event source mapping hands them over.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use serde_json::{json, Value};

use app::ports::{
    Clock, HttpSender, OsRandom, OutboundRequest, OutgoingMessage, Queue, QueueMessage, SendResult,
};
use app::{Services, Settings, Stores};
use domain::catalog::EventType;
use domain::destination::DestinationPolicy;
use domain::event::Event;
use domain::health::DEFAULT_AUTO_DISABLE_AFTER_SECONDS;
use domain::ids::{AccountId, DeliveryId, EventId, SubscriptionId};
use domain::signing;
use domain::subscription::{SigningSecret, Subscription, UrlPolicy};
use domain::time::Timestamp;

/// 2026-11-26T12:00:00Z: every test starts at the same moment.
pub const START_MS: i64 = 1_795_694_400_000;

/// A clock that moves only when the test moves it.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

pub fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

pub fn account(id: &str) -> AccountId {
    AccountId::parse(id).unwrap()
}

/// The delivery id of [`event`]'s event `event_id` (received at `START_MS`).
pub fn delivery_id(account_id: &str, event_id: &str, subscription_id: &str) -> DeliveryId {
    DeliveryId::of(
        &account(account_id),
        &EventId::parse(event_id).unwrap(),
        at(START_MS),
        &SubscriptionId::parse(subscription_id).unwrap(),
    )
}

/// Answers each request with the next scripted status, and keeps every request.
pub struct ScriptedSender {
    statuses: Mutex<VecDeque<u16>>,
    sent: Mutex<Vec<OutboundRequest>>,
    /// How long each answer takes, in real time (none unless a test says).
    pause: Mutex<Duration>,
}

impl ScriptedSender {
    pub fn sent(&self) -> Vec<OutboundRequest> {
        self.sent.lock().unwrap().clone()
    }

    /// Each answer takes `pause` from now on, so that attempts overlap.
    pub fn answer_after(&self, pause: Duration) {
        *self.pause.lock().unwrap() = pause;
    }
}

#[async_trait]
impl HttpSender for ScriptedSender {
    async fn send(&self, request: OutboundRequest) -> SendResult {
        let pause = *self.pause.lock().unwrap();
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let status = self
            .statuses
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| panic!("no answer scripted for a request to {}", request.url));
        self.sent.lock().unwrap().push(request);
        SendResult {
            status: Some(status),
            headers: vec![("content-type".into(), "text/plain".into())],
            latency: Duration::from_millis(12),
            body: Some(format!("answered {status}")),
            retry_after: None,
            error: None,
        }
    }
}

/// The services over fresh in-memory stores, with the clock and sender kept at hand.
pub struct Harness {
    pub services: Services,
    pub clock: Arc<ManualClock>,
    pub http: Arc<ScriptedSender>,
}

impl Harness {
    /// The endpoint will answer the statuses in order, one per request.
    pub fn new(statuses: &[u16]) -> Self {
        Self::with_stores(statuses, |_| {})
    }

    /// The same, with a deliveries queue that cannot release held messages, as SQS cannot:
    /// deliver and fan-out park as they do on AWS.
    pub fn like_sqs(statuses: &[u16]) -> Self {
        Self::with_stores(statuses, |stores| {
            stores.deliveries_queue = Arc::new(NoRelease(stores.deliveries_queue.clone()));
        })
    }

    /// The same, with some of the stores replaced by `adjust`.
    pub fn with_stores(statuses: &[u16], adjust: impl FnOnce(&mut Stores)) -> Self {
        let clock = Arc::new(ManualClock(AtomicI64::new(START_MS)));
        let http = Arc::new(ScriptedSender {
            statuses: Mutex::new(statuses.iter().copied().collect()),
            sent: Mutex::new(Vec::new()),
            pause: Mutex::new(Duration::ZERO),
        });
        let settings = Settings {
            platform_key_hash: String::new(),
            url_policy: UrlPolicy::default(),
            destinations: Arc::new(DestinationPolicy::default()),
            send_concurrency: 10,
            max_in_flight_per_subscription: 10,
            metrics_stage: None,
            auto_disable_after: Duration::from_secs(DEFAULT_AUTO_DISABLE_AFTER_SECONDS),
            failing_after_failures: domain::health::DEFAULT_FAILING_AFTER_FAILURES,
            max_subscriptions_per_account: 100,
            sweep_grace: app::sweep::DEFAULT_GRACE,
            egress_ips: Vec::new(),
            console_url: "https://hooks.example.com".into(),
            alert_sender: None,
        };
        let mut stores = store_memory::stores(clock.clone());
        adjust(&mut stores);
        let services = Services::new(stores, http.clone(), clock.clone(), settings);
        Harness {
            services,
            clock,
            http,
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// An enabled subscription to `event_types`, with a fresh signing secret.
pub fn subscription(account_id: &str, id: &str, event_types: &[&str]) -> Subscription {
    Subscription {
        id: SubscriptionId::parse(id).unwrap(),
        account_id: account(account_id),
        url: format!("https://{id}.example.com/hook"),
        description: None,
        event_types: event_types.iter().map(|t| t.to_string()).collect(),
        enabled: true,
        auth: None,
        headers: Default::default(),
        max_attempts: None,
        retry_schedule: None,
        timeout_seconds: 10,
        rate_limit_per_second: None,
        secrets: vec![SigningSecret {
            secret: signing::generate_secret(&OsRandom),
            expires_at: None,
        }],
        disabled_reason: None,
        disabled_at: None,
        failing_since: None,
        consecutive_failures: 0,
        failing_announced_at: None,
        signature: Default::default(),
        version: 0,
        created_at: at(START_MS),
        updated_at: at(START_MS),
    }
}

pub fn event(account_id: &str, id: &str, event_type: &str) -> Event {
    Event {
        id: EventId::parse(id).unwrap(),
        event_type: EventType::known(event_type).unwrap(),
        account_id: account(account_id),
        occurred_at: "2026-11-26T12:00:00Z".into(),
        received_at: at(START_MS),
        data: json!({"call_id": "call_1"}),
    }
}

/// One SQS record as Lambda passes it.
pub fn record(message_id: &str, body: &str, receive_count: u32) -> Value {
    json!({
        "messageId": message_id,
        "receiptHandle": format!("{message_id}#receipt"),
        "body": body,
        "attributes": {"ApproximateReceiveCount": receive_count.to_string()},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
    })
}

pub fn sqs_event(records: Vec<Value>) -> SqsEvent {
    serde_json::from_value(json!({ "Records": records })).expect("an SQS event")
}

/// The records of messages received from a queue, with their real receipt handles.
pub fn records_of(messages: &[QueueMessage]) -> Vec<Value> {
    messages
        .iter()
        .map(|m| {
            let mut r = record(&m.message_id, &m.body, m.receive_count);
            r["receiptHandle"] = json!(m.receipt_handle);
            r
        })
        .collect()
}

/// Every message visible on `queue` now (each is then in flight).
pub async fn receive_all(queue: &Arc<dyn Queue>) -> Vec<QueueMessage> {
    let mut all = Vec::new();
    loop {
        let got = queue.receive(10, Duration::ZERO).await.unwrap();
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}

/// The message ids a batch response reports as failed.
pub fn failures(response: &SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

/// A queue that holds nothing back for release, as SQS (`SqsQueue::releases_held`).
pub struct NoRelease(pub Arc<dyn Queue>);

#[async_trait]
impl Queue for NoRelease {
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> app::Result<()> {
        assert!(
            messages.iter().all(|m| m.held_for.is_none()),
            "held for a queue that does not release"
        );
        self.0.send_batch(messages).await
    }
    async fn receive(&self, max: usize, wait: Duration) -> app::Result<Vec<QueueMessage>> {
        self.0.receive(max, wait).await
    }
    async fn delete_batch(&self, receipt_handles: Vec<String>) -> app::Result<()> {
        self.0.delete_batch(receipt_handles).await
    }
    async fn change_visibility_batch(&self, changes: Vec<(String, Duration)>) -> app::Result<()> {
        self.0.change_visibility_batch(changes).await
    }
    fn releases_held(&self) -> bool {
        false
    }
    async fn release_held(&self, _: &str, _: u32) -> app::Result<usize> {
        Ok(0)
    }
}
