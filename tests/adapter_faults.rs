//! Our own dependencies failing: a queue or store call answers an error. Whatever fails,
//! the message is retried and nothing is lost, and a delivery message is never
//! acknowledged before its attempt is in the log.
//!
//! Every port is the embedded adapter (queues with a 1 s visibility timeout, so a message
//! not acknowledged comes back quickly) behind a wrapper that fails named calls on demand.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::limiter::Limiter;
use app::ports::{
    DeliveryLog, EventInsert, EventStore, OsRandom, OutgoingMessage, Page, Queue, QueueMessage,
    SubscriptionStore, SystemClock,
};
use app::{handle_deliveries, handle_events};
use app::{Error, Result, Services};
use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsBatchResponse;
use domain::delivery::{Attempt, Delivery, DeliveryStatus, DeliveryUpdate};
use domain::destination::DestinationPolicy;
use domain::event::Event;
use domain::ids::{AccountId, DeliveryId, EventId, SubscriptionId};
use domain::stats::{StatsGrain, StatsSlot};
use domain::subscription::Subscription;
use domain::time::Timestamp;
use e2e::{event, test_config, Behavior, Receiver, WAIT};
use http_client::ReqwestSender;
use serde_json::{json, Value};
use store_sqlite::{
    Db, SqliteAlertStore, SqliteApiKeyStore, SqliteDeliveryLog, SqliteEventStore,
    SqliteJwtKeyStore, SqliteQueue, SqliteSubscriptionStore,
};

/// The calls that fail right now, by name ("deliveries.record", "events_queue.send", ...),
/// and how often each was tried while failing.
#[derive(Clone, Default)]
struct Faults {
    failing: Arc<Mutex<HashSet<&'static str>>>,
    refused: Arc<Mutex<Vec<&'static str>>>,
}

impl Faults {
    fn fail(&self, call: &'static str) {
        self.failing.lock().unwrap().insert(call);
    }

    fn heal(&self) {
        self.failing.lock().unwrap().clear();
    }

    fn check(&self, call: &'static str) -> Result<()> {
        if self.failing.lock().unwrap().contains(call) {
            self.refused.lock().unwrap().push(call);
            return Err(Error::storage(format!("injected failure of {call}")));
        }
        Ok(())
    }

    fn refused(&self, call: &str) -> usize {
        self.refused
            .lock()
            .unwrap()
            .iter()
            .filter(|c| **c == call)
            .count()
    }
}

struct FaultyQueue {
    inner: Arc<dyn Queue>,
    faults: Faults,
    send: &'static str,
    delete: &'static str,
}

#[async_trait]
impl Queue for FaultyQueue {
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Result<()> {
        self.faults.check(self.send)?;
        self.inner.send_batch(messages).await
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<QueueMessage>> {
        self.inner.receive(max, wait).await
    }
    async fn delete_batch(&self, receipt_handles: Vec<String>) -> Result<()> {
        self.faults.check(self.delete)?;
        self.inner.delete_batch(receipt_handles).await
    }
    async fn change_visibility_batch(&self, changes: Vec<(String, Duration)>) -> Result<()> {
        self.inner.change_visibility_batch(changes).await
    }
    fn releases_held(&self) -> bool {
        self.inner.releases_held()
    }
    async fn release_held(&self, key: &str, per_second: u32) -> Result<usize> {
        self.inner.release_held(key, per_second).await
    }
}

struct FaultyLog {
    inner: SqliteDeliveryLog,
    faults: Faults,
}

#[async_trait]
impl DeliveryLog for FaultyLog {
    async fn create_batch(&self, deliveries: &[Delivery]) -> Result<Vec<bool>> {
        self.faults.check("deliveries.create")?;
        self.inner.create_batch(deliveries).await
    }
    async fn record(&self, updates: &[DeliveryUpdate]) -> Result<Vec<bool>> {
        self.faults.check("deliveries.record")?;
        self.inner.record(updates).await
    }
    async fn move_status(
        &self,
        account_id: &AccountId,
        id: &DeliveryId,
        from: (DeliveryStatus, u32),
        to: DeliveryStatus,
        at: Timestamp,
    ) -> Result<bool> {
        self.faults.check("deliveries.move_status")?;
        self.inner.move_status(account_id, id, from, to, at).await
    }
    async fn get(&self, account_id: &AccountId, id: &DeliveryId) -> Result<Option<Delivery>> {
        self.inner.get(account_id, id).await
    }
    async fn attempts(&self, account_id: &AccountId, id: &DeliveryId) -> Result<Vec<Attempt>> {
        self.inner.attempts(account_id, id).await
    }
    async fn list_for_event(
        &self,
        account_id: &AccountId,
        event_id: &EventId,
    ) -> Result<Vec<Delivery>> {
        self.inner.list_for_event(account_id, event_id).await
    }
    async fn list_for_subscription(
        &self,
        account_id: &AccountId,
        subscription_id: &SubscriptionId,
        status: Option<DeliveryStatus>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        self.inner
            .list_for_subscription(account_id, subscription_id, status, cursor, limit)
            .await
    }
    async fn list_dead(
        &self,
        account_id: &AccountId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        self.inner.list_dead(account_id, cursor, limit).await
    }
    async fn stats_slots(
        &self,
        account_id: &AccountId,
        subscription_id: Option<&SubscriptionId>,
        since: Timestamp,
        grain: StatsGrain,
    ) -> Result<Vec<StatsSlot>> {
        self.inner
            .stats_slots(account_id, subscription_id, since, grain)
            .await
    }
    async fn overdue(
        &self,
        before: Timestamp,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        self.faults.check("deliveries.overdue")?;
        self.inner.overdue(before, cursor, limit).await
    }
}

struct FaultySubscriptions {
    inner: SqliteSubscriptionStore,
    faults: Faults,
}

#[async_trait]
impl SubscriptionStore for FaultySubscriptions {
    async fn put(&self, subscription: &Subscription) -> Result<()> {
        self.inner.put(subscription).await
    }
    async fn put_if_version(&self, subscription: &Subscription, expected: u64) -> Result<bool> {
        self.inner.put_if_version(subscription, expected).await
    }
    async fn get(
        &self,
        account_id: &AccountId,
        id: &SubscriptionId,
    ) -> Result<Option<Subscription>> {
        self.inner.get(account_id, id).await
    }
    async fn get_many(&self, keys: &[(AccountId, SubscriptionId)]) -> Result<Vec<Subscription>> {
        self.faults.check("subscriptions.get_many")?;
        self.inner.get_many(keys).await
    }
    async fn list(
        &self,
        account_id: &AccountId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Subscription>> {
        self.faults.check("subscriptions.list")?;
        self.inner.list(account_id, after, limit).await
    }
    async fn list_all(&self, account_id: &AccountId) -> Result<Vec<Subscription>> {
        self.faults.check("subscriptions.list_all")?;
        self.inner.list_all(account_id).await
    }
    async fn delete(&self, account_id: &AccountId, id: &SubscriptionId) -> Result<bool> {
        self.inner.delete(account_id, id).await
    }
}

struct FaultyEvents {
    inner: SqliteEventStore,
    faults: Faults,
}

#[async_trait]
impl EventStore for FaultyEvents {
    async fn insert_batch(&self, events: &[Event]) -> Result<Vec<EventInsert>> {
        self.faults.check("events.insert")?;
        self.inner.insert_batch(events).await
    }
    async fn insert_batch_listing(
        &self,
        events: &[Event],
        listed: &[Option<Vec<SubscriptionId>>],
    ) -> Result<Vec<EventInsert>> {
        self.faults.check("events.insert")?;
        self.inner.insert_batch_listing(events, listed).await
    }
    async fn get(&self, account_id: &AccountId, id: &EventId) -> Result<Option<Event>> {
        self.inner.get(account_id, id).await
    }
    async fn list(
        &self,
        account_id: &AccountId,
        event_type: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Event>> {
        self.inner.list(account_id, event_type, cursor, limit).await
    }
}

const KEY: &str = "whp_adapter_faults_key";

/// Services on one in-memory database, every port behind `faults`.
fn services(faults: &Faults) -> Services {
    let db = Db::in_memory().unwrap();
    let clock = Arc::new(SystemClock);
    let queue = |name: &str, send: &'static str, delete: &'static str| -> Arc<dyn Queue> {
        Arc::new(FaultyQueue {
            inner: Arc::new(SqliteQueue::new(
                db.clone(),
                name,
                Duration::from_secs(1),
                None,
                clock.clone(),
            )),
            faults: faults.clone(),
            send,
            delete,
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let settings = runner::settings(&test_config(dir.path()), KEY);
    Services {
        subscriptions: Arc::new(FaultySubscriptions {
            inner: SqliteSubscriptionStore::new(db.clone()),
            faults: faults.clone(),
        }),
        events: Arc::new(FaultyEvents {
            inner: SqliteEventStore::new(db.clone()),
            faults: faults.clone(),
        }),
        deliveries: Arc::new(FaultyLog {
            inner: SqliteDeliveryLog::new(db.clone()),
            faults: faults.clone(),
        }),
        api_keys: Arc::new(SqliteApiKeyStore::new(db.clone())),
        alerts: Arc::new(SqliteAlertStore::new(db.clone())),
        jwt_keys: Arc::new(SqliteJwtKeyStore::new(db.clone())),
        events_queue: queue("events", "events_queue.send", "events_queue.delete"),
        deliveries_queue: queue(
            "deliveries",
            "deliveries_queue.send",
            "deliveries_queue.delete",
        ),
        stranded_queue: queue("stranded", "stranded.send", "stranded.delete"),
        dead_letter_queue: queue("dlq", "dlq.send", "dlq.delete"),
        http: Arc::new(
            ReqwestSender::new(DestinationPolicy::clone(&settings.destinations)).unwrap(),
        ),
        mailer: None,
        clock,
        random: Arc::new(OsRandom),
        limiter: Limiter::new(settings.max_in_flight_per_subscription),
        oauth_tokens: Arc::default(),
        jwt_ring: Arc::default(),
        settings,
    }
}

fn failed_ids(response: &SqsBatchResponse) -> HashSet<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

/// One poll of `queue` through `handler`, acknowledging what the handler did not report
/// failed, exactly as the pollers and Lambda's event source mapping do.
async fn pump<F, Fut>(queue: &Arc<dyn Queue>, name: &str, handler: F) -> (usize, HashSet<String>)
where
    F: FnOnce(aws_lambda_events::event::sqs::SqsEvent) -> Fut,
    Fut: std::future::Future<Output = SqsBatchResponse>,
{
    let messages = queue.receive(10, Duration::from_secs(2)).await.unwrap();
    if messages.is_empty() {
        return (0, HashSet::new());
    }
    let response = handler(runner::poller::sqs_event(name, &messages)).await;
    let done = runner::poller::acknowledged(&messages, &response);
    queue.delete_batch(done).await.unwrap();
    (messages.len(), failed_ids(&response))
}

async fn create_webhook(services: &Services, account: &str, url: String) -> Subscription {
    create_webhook_for(services, account, url, &["*"]).await
}

async fn create_webhook_for(
    services: &Services,
    account: &str,
    url: String,
    event_types: &[&str],
) -> Subscription {
    let app = http_api::router(services.clone());
    let (status, body) = call(
        app,
        "POST",
        &format!("/v1/accounts/{account}/webhooks"),
        json!({"url": url, "event_types": event_types, "retry_schedule": [1]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    services
        .subscriptions
        .get(
            &AccountId::parse(account).unwrap(),
            &SubscriptionId::parse(body["id"].as_str().unwrap()).unwrap(),
        )
        .await
        .unwrap()
        .unwrap()
}

async fn call(app: axum::Router, method: &str, path: &str, body: Value) -> (u16, Value) {
    use tower::ServiceExt;
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The delivery id of the stored event `event_id` at `subscription_id`: it begins with
/// the event's receipt time.
async fn delivery_id(
    services: &Services,
    account: &str,
    event_id: &str,
    subscription_id: &domain::ids::SubscriptionId,
) -> String {
    let account = AccountId::parse(account).unwrap();
    let event = services
        .events
        .get(&account, &domain::ids::EventId::parse(event_id).unwrap())
        .await
        .unwrap()
        .expect("the event is stored");
    domain::ids::DeliveryId::of(&account, &event.id, event.received_at, subscription_id)
        .into_string()
}

async fn ingest(services: &Services, event: Value) -> (u16, Value) {
    call(
        http_api::router(services.clone()),
        "POST",
        "/v1/events",
        event,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_not_acknowledged_until_its_attempt_is_logged() {
    let faults = Faults::default();
    let s = services(&faults);
    let r = Receiver::start().await;
    let sub = create_webhook(&s, "acct_f", r.url("hook", Behavior::Status(204))).await;
    let (status, _) = ingest(&s, event("call.ended", "acct_f", Some("evt_f1"))).await;
    assert_eq!(status, 202);
    // One endpoint: ingest fanned the event out itself.
    let (n, _) = pump(&s.events_queue, "events", |e| handle_events(&s, e)).await;
    assert_eq!(n, 0);
    let id = delivery_id(&s, "acct_f", "evt_f1", &sub.id).await;
    let (account, delivery) = (
        AccountId::from_static("acct_f"),
        DeliveryId::parse(&id).unwrap(),
    );

    // The log refuses the outcome: the endpoint was called, but the message is reported
    // failed (so it stays on the queue) and the log still knows nothing of it.
    faults.fail("deliveries.record");
    let (n, failed) = pump(&s.deliveries_queue, "deliveries", |e| {
        handle_deliveries(&s, e)
    })
    .await;
    assert_eq!(n, 1);
    assert_eq!(
        failed.len(),
        1,
        "acknowledged before its attempt was logged"
    );
    assert_eq!(r.received("hook").len(), 1);
    assert!(faults.refused("deliveries.record") >= 1);
    assert_eq!(s.deliveries.get(&account, &delivery).await.unwrap(), None);

    // The subscriptions cannot be read: nothing is sent, nothing acknowledged.
    faults.heal();
    faults.fail("subscriptions.get_many");
    let (n, failed) = pump(&s.deliveries_queue, "deliveries", |e| {
        handle_deliveries(&s, e)
    })
    .await;
    assert_eq!((n, failed.len()), (1, 1), "the message did not come back");
    assert_eq!(r.received("hook").len(), 1, "sent without its subscription");

    // Healed: the message comes back once more, is delivered, logged, then acknowledged.
    faults.heal();
    let (n, failed) = pump(&s.deliveries_queue, "deliveries", |e| {
        handle_deliveries(&s, e)
    })
    .await;
    assert_eq!((n, failed.len()), (1, 0));
    let calls = r.received("hook");
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.header("webhook-id") == id));
    let d = s
        .deliveries
        .get(&account, &delivery)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.status, DeliveryStatus::Succeeded);
    assert_eq!(d.attempt_count, 1, "{d:?}");
    let left = s
        .deliveries_queue
        .receive(10, Duration::from_millis(1500))
        .await
        .unwrap();
    assert!(left.is_empty(), "acknowledged but still queued: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_retries_when_its_store_or_queue_fails_and_sends_nothing_twice() {
    let faults = Faults::default();
    let s = services(&faults);
    let r = Receiver::start().await;
    let mut subs = Vec::new();
    for i in 0..3 {
        subs.push(
            create_webhook(&s, "acct_g", r.url(&format!("h{i}"), Behavior::Status(204))).await,
        );
    }
    // More endpoints than ingest fans out itself (they want other events): the account's
    // events go through the events queue to fan-out.
    for i in 0..app::ingest::DIRECT_FAN_OUT_MAX_SUBSCRIPTIONS {
        let url = r.url(&format!("x{i}"), Behavior::Status(204));
        create_webhook_for(&s, "acct_g", url, &["agent.*"]).await;
    }
    for i in 0..4 {
        let (status, _) = ingest(
            &s,
            event("call.ended", "acct_g", Some(&format!("evt_g{i}"))),
        )
        .await;
        assert_eq!(status, 202);
    }

    // Fan-out writes no delivery (each is logged by its first outcome): its dependencies
    // are the subscriptions it reads and the queue it sends to.
    for call in ["subscriptions.list_all", "deliveries_queue.send"] {
        faults.heal();
        faults.fail(call);
        let (n, failed) = pump(&s.events_queue, "events", |e| handle_events(&s, e)).await;
        assert_eq!(n, 4, "{call}: the events did not come back");
        assert_eq!(failed.len(), 4, "{call}: acknowledged although it failed");
        assert!(faults.refused(call) >= 1, "{call} was not called");
    }
    faults.heal();
    let (n, failed) = pump(&s.events_queue, "events", |e| handle_events(&s, e)).await;
    assert_eq!((n, failed.len()), (4, 0));

    // Every pair exactly once in the log, and delivered. Some wait a second first: the
    // three endpoints are new, so their first attempts are probes, four at a time.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let delivered: usize = (0..3).map(|i| r.received(&format!("h{i}")).len()).sum();
        if delivered >= 12 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "deliveries missing: {delivered} of 12"
        );
        let (_, failed) = pump(&s.deliveries_queue, "deliveries", |e| {
            handle_deliveries(&s, e)
        })
        .await;
        assert!(failed.is_empty());
    }
    for i in 0..4 {
        let ds = s
            .deliveries
            .list_for_event(
                &AccountId::from_static("acct_g"),
                &EventId::parse(format!("evt_g{i}")).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(ds.len(), 3);
        assert!(ds.iter().all(|d| d.status == DeliveryStatus::Succeeded));
    }
    // Sent once each: nothing a failed round had created was sent twice.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        pump(&s.deliveries_queue, "deliveries", |e| handle_deliveries(
            &s, e
        ))
        .await
        .0 == 0
    );
    for i in 0..3 {
        assert_eq!(r.received(&format!("h{i}")).len(), 4, "h{i}");
        let got = r.wait_for(&format!("h{i}"), 4, WAIT).await;
        let ids: HashSet<String> = got
            .iter()
            .map(|g| g.header("webhook-id").to_string())
            .collect();
        assert_eq!(ids.len(), 4, "h{i}: {ids:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_answers_503_when_a_dependency_fails_and_a_retry_loses_nothing() {
    let faults = Faults::default();
    let s = services(&faults);
    let r = Receiver::start().await;
    let sub = create_webhook(&s, "acct_i", r.url("hook", Behavior::Status(204))).await;

    // The account has one endpoint, so ingest fans its events out itself; when it cannot
    // read the subscriptions it leaves them to fan-out, through the events queue.
    let failing: [(&[&str], &str); 3] = [
        (&["events.insert"], "evt_i1"),
        (&["deliveries_queue.send"], "evt_i2"),
        (&["subscriptions.list", "events_queue.send"], "evt_i3"),
    ];
    for (calls, id) in failing {
        faults.heal();
        for call in calls {
            faults.fail(call);
        }
        let (status, body) = ingest(&s, event("call.ended", "acct_i", Some(id))).await;
        assert_eq!(status, 503, "{calls:?}: {body}");
        assert_eq!(body["error"]["code"], "unavailable", "{calls:?}: {body}");
        faults.heal();
        // The producer retries with the same id, as a 503 tells it to.
        let (status, body) = ingest(&s, event("call.ended", "acct_i", Some(id))).await;
        assert_eq!(status, 202, "{calls:?}: {body}");
    }
    faults.fail("subscriptions.list");
    let (status, body) = ingest(&s, event("call.ended", "acct_i", Some("evt_i4"))).await;
    assert_eq!(
        status, 202,
        "unreadable subscriptions are fan-out's to read: {body}"
    );
    faults.heal();
    let drain = || async {
        let mut events = 0;
        loop {
            let (n, failed) = pump(&s.events_queue, "events", |e| handle_events(&s, e)).await;
            assert!(failed.is_empty());
            if n == 0 {
                break;
            }
            events += n;
        }
        loop {
            let (n, _) = pump(&s.deliveries_queue, "deliveries", |e| {
                handle_deliveries(&s, e)
            })
            .await;
            if n == 0 {
                break;
            }
        }
        events
    };
    // Only the event left to fan-out went through the events queue.
    assert_eq!(drain().await, 1);
    // A producer that lost the 202 posts again: the copy is fanned out again (whether the
    // first reached the queue is not kept), and delivers nothing twice.
    let all = ["evt_i1", "evt_i2", "evt_i3", "evt_i4"];
    for id in all {
        let (status, body) = ingest(&s, event("call.ended", "acct_i", Some(id))).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["duplicate"], true, "{body}");
    }
    assert_eq!(drain().await, 0);
    let got = r.received("hook");
    let ids: Vec<String> = got
        .iter()
        .map(|g| g.header("webhook-id").to_string())
        .collect();
    let mut expected: HashSet<String> = HashSet::new();
    for e in all {
        expected.insert(delivery_id(&s, "acct_i", e, &sub.id).await);
    }
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_message_is_set_aside_at_once_and_never_lost() {
    let faults = Faults::default();
    let s = services(&faults);
    let unreadable = |body: &str| OutgoingMessage {
        id: "0".into(),
        body: body.into(),
        delay: Duration::ZERO,
        held_for: None,
    };
    s.deliveries_queue
        .send_batch(vec![unreadable("not json")])
        .await
        .unwrap();
    s.events_queue
        .send_batch(vec![unreadable(r#"{"id": 5}"#)])
        .await
        .unwrap();

    // The dead-letter queue refuses it: the message is reported failed and comes back.
    faults.fail("dlq.send");
    let (n, failed) = pump(&s.deliveries_queue, "deliveries", |e| {
        handle_deliveries(&s, e)
    })
    .await;
    assert_eq!(
        (n, failed.len()),
        (1, 1),
        "lost when it could not be set aside"
    );
    faults.heal();

    // Then it is moved once, with what it said and why, and acknowledged.
    let (n, failed) = pump(&s.deliveries_queue, "deliveries", |e| {
        handle_deliveries(&s, e)
    })
    .await;
    assert_eq!(
        (n, failed.len()),
        (1, 0),
        "an unreadable message was retried"
    );
    let (n, failed) = pump(&s.events_queue, "events", |e| handle_events(&s, e)).await;
    assert_eq!((n, failed.len()), (1, 0), "an unreadable event was retried");

    let set_aside = s
        .dead_letter_queue
        .receive(10, Duration::from_secs(2))
        .await
        .unwrap();
    let mut found: Vec<(String, String)> = set_aside
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_str(&m.body).unwrap();
            let u = &v["unprocessable"];
            assert!(u["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
            (
                u["queue"].as_str().unwrap().to_string(),
                u["body"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            ("deliveries".to_string(), "not json".to_string()),
            ("events".to_string(), r#"{"id": 5}"#.to_string()),
        ]
    );
    for queue in [&s.deliveries_queue, &s.events_queue] {
        let left = queue
            .receive(10, Duration::from_millis(1500))
            .await
            .unwrap();
        assert!(left.is_empty(), "still queued: {left:?}");
    }
}
