//! One contract for every port, run against each backend: the adapters must behave alike.
//! `contract_tests!` instantiates every case for every backend, as `backend::case`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use app::ports::{
    AlertStore, ApiKeyStore, DeliveryLog, EventInsert, EventStore, JwtKeyStore, OsRandom,
    OutgoingMessage, Page, Queue, QueueMessage, SubscriptionStore, SystemClock,
};
use domain::alerts::{claim as alert_claim, digested as alert_digested, AlertSettings, AlertTopic};
use domain::api_key::ApiKeyRecord;
use domain::catalog::EventType;
use domain::delivery::{Attempt, Delivery, DeliveryStatus, DeliveryUpdate, FailureCause};
use domain::event::Event;
use domain::ids::{AccountId, ApiKeyId, DeliveryId, EventId, SubscriptionId};
use domain::jwt::KeyRing;
use domain::stats::{roll_up, slot_of, StatsGrain};
use domain::subscription::{SigningSecret, Subscription};
use domain::time::Timestamp;
use serde_json::json;
use store_sqlite::{
    Db, Redrive, SqliteAlertStore, SqliteApiKeyStore, SqliteDeliveryLog, SqliteEventStore,
    SqliteJwtKeyStore, SqliteQueue, SqliteSubscriptionStore,
};

/// The visibility timeout of `Ports::queue`.
const VISIBILITY: Duration = Duration::from_secs(1);

/// A fresh, empty set of adapters of one backend.
pub struct Ports {
    pub subscriptions: Arc<dyn SubscriptionStore>,
    pub events: Arc<dyn EventStore>,
    pub deliveries: Arc<dyn DeliveryLog>,
    pub api_keys: Arc<dyn ApiKeyStore>,
    pub alerts: Arc<dyn AlertStore>,
    pub jwt_keys: Arc<dyn JwtKeyStore>,
    /// A work queue with a 1 s visibility timeout, redriven after 2 receives to `dlq`.
    pub queue: Arc<dyn Queue>,
    pub dlq: Arc<dyn Queue>,
    /// The same delivery log, with every write call held 50 ms before it is sent, so that
    /// a reader has time to look between two writes of one `record`.
    pub deliveries_with_slow_writes: Arc<dyn DeliveryLog>,
    /// Where a file-backed store lives, removed when the case ends.
    _dir: Option<tempfile::TempDir>,
}

/// On a database file, as the runner opens it: writes through the writer thread, reads on
/// the read-only connections beside it.
async fn embedded() -> Ports {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("webhooks.db")).unwrap();
    let clock = Arc::new(SystemClock);
    let deliveries: Arc<dyn DeliveryLog> = Arc::new(SqliteDeliveryLog::new(db.clone()));
    Ports {
        _dir: Some(dir),
        subscriptions: Arc::new(SqliteSubscriptionStore::new(db.clone())),
        events: Arc::new(SqliteEventStore::new(db.clone())),
        // One transaction per `record`: there is no moment between its writes to slow.
        deliveries_with_slow_writes: deliveries.clone(),
        deliveries,
        api_keys: Arc::new(SqliteApiKeyStore::new(db.clone())),
        alerts: Arc::new(SqliteAlertStore::new(db.clone())),
        jwt_keys: Arc::new(SqliteJwtKeyStore::new(db.clone())),
        queue: Arc::new(SqliteQueue::new(
            db.clone(),
            "work",
            Duration::from_secs(1),
            Some(Redrive {
                dead_letter_queue: "work-dlq".into(),
                max_receive_count: 2,
            }),
            clock.clone(),
        )),
        dlq: Arc::new(SqliteQueue::new(
            db,
            "work-dlq",
            Duration::from_secs(1),
            None,
            clock,
        )),
    }
}

/// The same ports on SQS and DynamoDB, on a moto server.
async fn moto() -> Ports {
    use aws_sdk_sqs::types::QueueAttributeName;
    use store_aws::{
        DynamoAlertStore, DynamoApiKeyStore, DynamoDeliveryLog, DynamoEventStore,
        DynamoJwtKeyStore, DynamoSubscriptionStore, SqsQueue,
    };
    let (clients, r) = e2e::moto::deployment("contract").await;
    let prefix = e2e::moto::unique_prefix("work");
    let create = |name: String, attributes: Vec<(QueueAttributeName, String)>| {
        let sqs = clients.sqs.clone();
        async move {
            sqs.create_queue()
                .queue_name(name)
                .set_attributes(Some(attributes.into_iter().collect()))
                .send()
                .await
                .unwrap()
                .queue_url()
                .unwrap()
                .to_string()
        }
    };
    // Sized as `app::topology` sizes every queue, which the adapter's own check follows.
    let max_size = (
        QueueAttributeName::MaximumMessageSize,
        app::ports::MAX_MESSAGE_BYTES.to_string(),
    );
    let dlq_url = create(format!("{prefix}dlq"), vec![max_size.clone()]).await;
    let dlq_arn = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let url = create(
        format!("{prefix}work"),
        vec![
            (QueueAttributeName::VisibilityTimeout, "1".into()),
            max_size,
            (
                QueueAttributeName::RedrivePolicy,
                format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":2}}"#),
            ),
        ],
    )
    .await;
    let ddb = clients.dynamodb.clone();
    Ports {
        _dir: None,
        subscriptions: Arc::new(DynamoSubscriptionStore::new(
            ddb.clone(),
            &r.subscriptions_table,
        )),
        events: Arc::new(DynamoEventStore::new(
            ddb.clone(),
            &r.events_table,
            r.retention,
        )),
        deliveries: Arc::new(DynamoDeliveryLog::new(
            ddb.clone(),
            &r.deliveries_table,
            &r.events_table,
            r.retention,
        )),
        deliveries_with_slow_writes: Arc::new(DynamoDeliveryLog::new(
            aws_sdk_dynamodb::Client::from_conf(
                ddb.config()
                    .to_builder()
                    .interceptor(SlowWrites(Duration::from_millis(50)))
                    .build(),
            ),
            &r.deliveries_table,
            &r.events_table,
            r.retention,
        )),
        alerts: Arc::new(DynamoAlertStore::new(ddb.clone(), &r.deliveries_table)),
        jwt_keys: Arc::new(DynamoJwtKeyStore::new(ddb.clone(), &r.subscriptions_table)),
        api_keys: Arc::new(DynamoApiKeyStore::new(ddb, &r.api_keys_table)),
        queue: Arc::new(SqsQueue::new(clients.sqs.clone(), url)),
        dlq: Arc::new(SqsQueue::new(clients.sqs.clone(), dlq_url)),
    }
}

/// The same ports in process memory.
async fn memory() -> Ports {
    use store_memory::{
        MemoryAlertStore, MemoryApiKeyStore, MemoryDeliveryLog, MemoryEventStore,
        MemoryJwtKeyStore, MemoryQueue, MemorySubscriptionStore,
    };
    let clock = Arc::new(SystemClock);
    let deliveries: Arc<dyn DeliveryLog> = Arc::new(MemoryDeliveryLog::new());
    let dlq = Arc::new(MemoryQueue::new(
        "work-dlq",
        VISIBILITY,
        None,
        clock.clone(),
    ));
    Ports {
        _dir: None,
        subscriptions: Arc::new(MemorySubscriptionStore::new()),
        events: Arc::new(MemoryEventStore::new()),
        // One lock per `record`: there is no moment between its writes to slow.
        deliveries_with_slow_writes: deliveries.clone(),
        deliveries,
        api_keys: Arc::new(MemoryApiKeyStore::new()),
        alerts: Arc::new(MemoryAlertStore::new()),
        jwt_keys: Arc::new(MemoryJwtKeyStore::new()),
        queue: Arc::new(MemoryQueue::new(
            "work",
            VISIBILITY,
            Some(store_memory::Redrive {
                dead_letter_queue: dlq.clone(),
                max_receive_count: 2,
            }),
            clock,
        )),
        dlq,
    }
}

/// Holds every DynamoDB write call for a while before it is sent (reads go at once).
#[derive(Debug)]
struct SlowWrites(Duration);

impl aws_sdk_dynamodb::config::Intercept for SlowWrites {
    fn name(&self) -> &'static str {
        "SlowWrites"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let operation = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or_default();
        if [
            "PutItem",
            "UpdateItem",
            "BatchWriteItem",
            "TransactWriteItems",
        ]
        .iter()
        .any(|write| operation.ends_with(&format!(".{write}")))
        {
            // The SDK calls interceptors synchronously; the test runtime has a second worker
            // thread for the reader.
            std::thread::sleep(self.0);
        }
        Ok(())
    }
}

/// Polls `queue` until a receive returns something, and returns that.
async fn receive_some(queue: &Arc<dyn Queue>, max: usize) -> Vec<QueueMessage> {
    e2e::eventually("a message to receive", e2e::WAIT, || async {
        let got = queue.receive(max, Duration::from_secs(1)).await.unwrap();
        if got.is_empty() {
            Err("nothing yet".to_string())
        } else {
            Ok(got)
        }
    })
    .await
}

/// Now: stored items carry a TTL, so fixtures must be recent.
fn now() -> Timestamp {
    use app::ports::Clock;
    SystemClock.now()
}

/// A point in time, `ms` milliseconds after the epoch.
fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn acct(s: &'static str) -> AccountId {
    AccountId::from_static(s)
}

fn sub_id(s: &'static str) -> SubscriptionId {
    SubscriptionId::from_static(s)
}

fn evt_id(s: &'static str) -> EventId {
    EventId::from_static(s)
}

fn msg_id(s: &'static str) -> DeliveryId {
    DeliveryId::from_static(s)
}

fn key_id(s: &'static str) -> ApiKeyId {
    ApiKeyId::from_static(s)
}

/// A catalog event type.
fn event_type(name: &str) -> EventType {
    EventType::known(name).expect("a catalog event type")
}

fn msg(body: &str) -> OutgoingMessage {
    OutgoingMessage {
        id: body.to_string(),
        body: body.to_string(),
        delay: Duration::ZERO,
        held_for: None,
    }
}

fn subscription(account: &str, id: &str) -> Subscription {
    Subscription {
        id: SubscriptionId::parse(id).unwrap(),
        account_id: AccountId::parse(account).unwrap(),
        url: "https://example.com/hook".into(),
        description: Some("d".into()),
        event_types: vec!["call.*".into()],
        enabled: true,
        auth: None,
        headers: Default::default(),
        max_attempts: Some(3),
        retry_schedule: None,
        timeout_seconds: 10,
        rate_limit_per_second: None,
        secrets: vec![SigningSecret {
            secret: "whsec_x".into(),
            expires_at: None,
        }],
        disabled_reason: None,
        disabled_at: None,
        failing_since: None,
        consecutive_failures: 0,
        failing_announced_at: None,
        signature: Default::default(),
        version: 0,
        created_at: at(1),
        updated_at: at(1),
    }
}

fn stored_event(account: &str, id: &str) -> Event {
    Event {
        id: EventId::parse(id).unwrap(),
        event_type: event_type("call.ended"),
        account_id: AccountId::parse(account).unwrap(),
        occurred_at: "2026-11-26T12:00:00Z".into(),
        received_at: now(),
        data: json!({"call_id": "c"}),
    }
}

fn delivery(id: &str, event: &str) -> Delivery {
    Delivery {
        id: DeliveryId::parse(id).unwrap(),
        account_id: acct("acct"),
        subscription_id: sub_id("wh_1"),
        event_id: EventId::parse(event).unwrap(),
        event_type: event_type("call.ended"),
        status: DeliveryStatus::Pending,
        attempt_count: 0,
        created_at: now(),
        updated_at: now(),
        next_attempt_at: None,
        last_error: None,
        last_latency_ms: None,
    }
}

pub async fn queue_sends_receives_and_deletes(p: Ports) {
    p.queue
        .send_batch((0..12).map(|i| msg(&format!("m{i}"))).collect())
        .await
        .unwrap();
    // Each message by its body, with its latest receipt. One received again came back after
    // the visibility timeout (a slow run), and says so.
    let mut latest: HashMap<String, QueueMessage> = HashMap::new();
    let deadline = Instant::now() + e2e::WAIT;
    while latest.len() < 12 {
        assert!(
            Instant::now() < deadline,
            "only {} of 12 messages received",
            latest.len()
        );
        let got = p.queue.receive(10, Duration::from_secs(1)).await.unwrap();
        assert!(got.len() <= 10);
        for m in got {
            match latest.get(&m.body) {
                None => assert_eq!(m.receive_count, 1, "{}", m.body),
                Some(before) => assert!(
                    m.receive_count > before.receive_count,
                    "{} received again with the same count",
                    m.body
                ),
            }
            latest.insert(m.body.clone(), m);
        }
    }
    let mut bodies: Vec<String> = latest.keys().cloned().collect();
    bodies.sort();
    let mut expected: Vec<String> = (0..12).map(|i| format!("m{i}")).collect();
    expected.sort();
    assert_eq!(bodies, expected);
    p.queue
        .delete_batch(latest.into_values().map(|m| m.receipt_handle).collect())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(
        p.queue
            .receive(10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty(),
        "deleted messages came back"
    );
}

pub async fn queue_hides_received_messages_until_their_visibility_timeout(p: Ports) {
    p.queue.send_batch(vec![msg("a")]).await.unwrap();
    // Before the receive, so no later than the receipt the timeout runs from.
    let receiving = Instant::now();
    let first = receive_some(&p.queue, 10).await;
    assert_eq!(first.len(), 1);
    let early = p.queue.receive(10, Duration::ZERO).await.unwrap();
    // A look that ended within the timeout must find nothing; one that ended later (a slow
    // run) may find the message back.
    assert!(
        early.is_empty() || receiving.elapsed() >= VISIBILITY,
        "visible while in flight"
    );
    let again = if early.is_empty() {
        receive_some(&p.queue, 10).await
    } else {
        early
    };
    let hidden_for = receiving.elapsed();
    assert!(
        hidden_for >= VISIBILITY - Duration::from_millis(10),
        "back {hidden_for:?} after its receipt, within the visibility timeout"
    );
    assert_eq!(
        again.len(),
        1,
        "did not come back after the visibility timeout"
    );
    assert_eq!(again[0].body, "a");
    assert_eq!(again[0].receive_count, 2);
    assert_ne!(again[0].receipt_handle, first[0].receipt_handle);
    assert_eq!(again[0].message_id, first[0].message_id);
}

pub async fn queue_change_visibility_reschedules_a_message(p: Ports) {
    const LATER: Duration = Duration::from_secs(3);
    p.queue
        .send_batch(vec![msg("later"), msg("now")])
        .await
        .unwrap();
    let got = p.queue.receive(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(got.len(), 2);
    let (later, now): (Vec<_>, Vec<_>) = got.into_iter().partition(|m| m.body == "later");
    // Before the change, so no later than the moment its 3 s run from.
    let changed = Instant::now();
    p.queue
        .change_visibility_batch(vec![
            (later[0].receipt_handle.clone(), LATER),
            (now[0].receipt_handle.clone(), Duration::ZERO),
        ])
        .await
        .unwrap();
    // Visible at once; "later" only if this look came after its 3 s (a slow run).
    let look = p.queue.receive(10, Duration::ZERO).await.unwrap();
    let (mut back, visible): (Vec<_>, Vec<_>) = look.into_iter().partition(|m| m.body == "later");
    assert_eq!(
        visible.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["now"]
    );
    p.queue
        .delete_batch(vec![visible[0].receipt_handle.clone()])
        .await
        .unwrap();
    if back.is_empty() {
        back = receive_some(&p.queue, 10).await;
    }
    // Hidden past the queue's own 1 s timeout, for the 3 s asked, then back.
    let hidden_for = changed.elapsed();
    assert!(
        hidden_for >= LATER - Duration::from_millis(10),
        "back {hidden_for:?} after a {LATER:?} visibility change"
    );
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body, "later");
}

/// A received message goes back in its own place with a new body and a delay: hidden for
/// the delay, then received once, as a new message; the original never comes back.
pub async fn queue_requeues_a_received_message_in_its_place(p: Ports) {
    const DELAY: Duration = Duration::from_secs(2);
    p.queue
        .send_batch(vec![msg("parked"), msg("other")])
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(receive_some(&p.queue, 2).await);
    }
    let (parked, other): (Vec<_>, Vec<_>) = got.into_iter().partition(|m| m.body == "parked");
    p.queue
        .delete_batch(vec![other[0].receipt_handle.clone()])
        .await
        .unwrap();
    let requeued = Instant::now();
    p.queue
        .requeue_batch(vec![(
            parked[0].receipt_handle.clone(),
            OutgoingMessage {
                id: "0".into(),
                body: "parked again".into(),
                delay: DELAY,
                held_for: None,
            },
        )])
        .await
        .unwrap();
    let mut seen = Vec::new();
    // Past the queue's 1 s visibility timeout (the original would be back by then) and
    // past the delay, with one more second to spare.
    while requeued.elapsed() < DELAY + Duration::from_secs(1) {
        for m in p
            .queue
            .receive(10, Duration::from_millis(500))
            .await
            .unwrap()
        {
            seen.push((requeued.elapsed(), m.body.clone(), m.receive_count));
            p.queue.delete_batch(vec![m.receipt_handle]).await.unwrap();
        }
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (after, body, receives) = &seen[0];
    assert_eq!((body.as_str(), *receives), ("parked again", 1));
    assert!(
        *after >= DELAY - Duration::from_millis(10),
        "back after {after:?}"
    );
}

/// A message held for an endpoint (`held_for`) waits its delay unless that endpoint's
/// holds are released first. A release brings back what is held for that endpoint (sent
/// held, or requeued held), not what is held for another nor what was only delayed: paced,
/// in the order due, and never later than due. A message received since is no longer held.
/// Where the queue cannot release (SQS), a held message is only delayed and a release finds
/// none.
pub async fn queue_releases_what_is_held_for_an_endpoint(p: Ports) {
    const BACKSTOP: Duration = Duration::from_secs(30);
    const SOON: Duration = Duration::from_millis(500);
    let message = |body: &str, delay: Duration, key: Option<&str>| OutgoingMessage {
        id: body.into(),
        body: body.into(),
        delay,
        held_for: key.map(str::to_string),
    };
    p.queue.send_batch(vec![msg("requeued")]).await.unwrap();
    let received = receive_some(&p.queue, 1).await;
    p.queue
        .requeue_batch(vec![(
            received[0].receipt_handle.clone(),
            message("requeued", BACKSTOP, Some("wh_a")),
        )])
        .await
        .unwrap();
    p.queue
        .send_batch(vec![
            message("a", BACKSTOP, Some("wh_a")),
            message("soon1", SOON, Some("wh_a")),
            message("soon2", SOON, Some("wh_a")),
            message("b", BACKSTOP, Some("wh_b")),
            message("plain", BACKSTOP, None),
        ])
        .await
        .unwrap();
    let releases = p.queue.releases_held();
    let released_at = Instant::now();
    // One a second: slots at 0, 1, 2 and 3 s. `soon2`'s slot (1 s) is after its due time
    // (500 ms): it comes back when due.
    let released = p.queue.release_held("wh_a", 1).await.unwrap();
    assert_eq!(released, if releases { 4 } else { 0 });
    let mut seen: Vec<(String, Duration)> = Vec::new();
    while released_at.elapsed() < Duration::from_millis(4500) {
        for m in p
            .queue
            .receive(10, Duration::from_millis(200))
            .await
            .unwrap()
        {
            seen.push((m.body.clone(), released_at.elapsed()));
            p.queue.delete_batch(vec![m.receipt_handle]).await.unwrap();
        }
    }
    let bodies: Vec<&str> = seen.iter().map(|(b, _)| b.as_str()).collect();
    if !releases {
        assert_eq!(bodies, ["soon1", "soon2"], "{seen:?}");
        return;
    }
    // Messages due together (to the millisecond or nearly) may come in either order.
    assert_eq!(bodies.len(), 4, "{seen:?}");
    let (mut soon, mut late) = (bodies[..2].to_vec(), bodies[2..].to_vec());
    soon.sort_unstable();
    late.sort_unstable();
    assert_eq!(
        (soon, late),
        (vec!["soon1", "soon2"], vec!["a", "requeued"]),
        "{seen:?}"
    );
    assert!(
        seen[1].1 < Duration::from_millis(950),
        "later than due: {seen:?}"
    );
    assert!(
        seen[3].1 >= Duration::from_millis(2900),
        "not paced: {seen:?}"
    );
    assert_eq!(p.queue.release_held("wh_a", 1).await.unwrap(), 0);
    // The other endpoint's hold is its own.
    assert_eq!(p.queue.release_held("wh_b", 1).await.unwrap(), 1);
    let b = receive_some(&p.queue, 1).await;
    assert_eq!(b[0].body, "b");
}

pub async fn queue_accepts_a_stale_receipt_without_error(p: Ports) {
    p.queue.send_batch(vec![msg("s")]).await.unwrap();
    let first = receive_some(&p.queue, 1).await;
    // Back after the visibility timeout, with a new receipt.
    let second = receive_some(&p.queue, 1).await;
    assert_eq!(second.len(), 1);
    p.queue
        .delete_batch(vec![first[0].receipt_handle.clone()])
        .await
        .unwrap();
    p.queue
        .delete_batch(vec![second[0].receipt_handle.clone()])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(p.queue.receive(1, Duration::ZERO).await.unwrap().is_empty());
}

pub async fn queue_redrives_to_its_dead_letter_queue_after_max_receives(p: Ports) {
    p.queue.send_batch(vec![msg("poison")]).await.unwrap();
    for n in 1..=2 {
        let got = receive_some(&p.queue, 1).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].receive_count, n);
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        p.queue
            .receive(1, Duration::from_millis(500))
            .await
            .unwrap()
            .is_empty(),
        "received past maxReceiveCount"
    );
    // Moved by a receive after its timeout, never received a third time.
    let dead = e2e::eventually(
        "the message in the dead-letter queue",
        e2e::WAIT,
        || async {
            assert!(
                p.queue.receive(1, Duration::ZERO).await.unwrap().is_empty(),
                "received past maxReceiveCount"
            );
            let dead = p.dlq.receive(1, Duration::from_secs(1)).await.unwrap();
            if dead.is_empty() {
                Err("nothing yet".to_string())
            } else {
                Ok(dead)
            }
        },
    )
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "poison");
}

pub async fn queue_long_poll_wakes_on_a_send(p: Ports) {
    let q = p.queue.clone();
    let waiter = tokio::spawn(async move {
        let started = std::time::Instant::now();
        // SQS's longest long poll.
        let got = q.receive(1, Duration::from_secs(20)).await.unwrap();
        (got, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.queue.send_batch(vec![msg("wake")]).await.unwrap();
    let (got, _) = waiter.await.unwrap();
    assert_eq!(got.len(), 1, "the long poll returned without the message");
    assert_eq!(got[0].body, "wake");
}

pub async fn queue_delays_a_message(p: Ports) {
    const DELAY: Duration = Duration::from_secs(2);
    // Before the send, so no later than the moment the delay runs from.
    let sending = Instant::now();
    p.queue
        .send_batch(vec![OutgoingMessage {
            id: "d".into(),
            body: "delayed".into(),
            delay: DELAY,
            held_for: None,
        }])
        .await
        .unwrap();
    let early = p
        .queue
        .receive(1, Duration::from_millis(500))
        .await
        .unwrap();
    // A look that ended within the delay must find nothing; one that ended later (a slow
    // run) may find the message.
    assert!(
        early.is_empty() || sending.elapsed() >= DELAY,
        "received before its delay"
    );
    let got = if early.is_empty() {
        receive_some(&p.queue, 1).await
    } else {
        early
    };
    assert_eq!(got.len(), 1);
    let delayed_for = sending.elapsed();
    assert!(
        delayed_for >= DELAY - Duration::from_millis(10),
        "received {delayed_for:?} after a send delayed by {DELAY:?}"
    );
}

pub async fn subscriptions_are_stored_listed_and_scoped_by_account(p: Ports) {
    let s = &p.subscriptions;
    for i in 0..5 {
        s.put(&subscription("acct_a", &format!("wh_{i}")))
            .await
            .unwrap();
    }
    s.put(&subscription("acct_b", "wh_9")).await.unwrap();
    let mut changed = subscription("acct_a", "wh_1");
    changed.enabled = false;
    s.put(&changed).await.unwrap();
    assert_eq!(
        s.get(&acct("acct_a"), &sub_id("wh_1")).await.unwrap(),
        Some(changed)
    );
    assert_eq!(
        s.get(&acct("acct_b"), &sub_id("wh_1")).await.unwrap(),
        None,
        "read across accounts"
    );

    let page1 = s.list(&acct("acct_a"), None, 2).await.unwrap();
    let page2 = s
        .list(&acct("acct_a"), Some(&page1[1].id), 2)
        .await
        .unwrap();
    let page3 = s
        .list(&acct("acct_a"), Some(&page2[1].id), 2)
        .await
        .unwrap();
    let ids: Vec<_> = [page1, page2, page3]
        .concat()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["wh_0", "wh_1", "wh_2", "wh_3", "wh_4"]);
    assert_eq!(s.list_all(&acct("acct_a")).await.unwrap().len(), 5);

    let keys = vec![
        (acct("acct_a"), sub_id("wh_3")),
        (acct("acct_b"), sub_id("wh_9")),
        (acct("acct_b"), sub_id("wh_3")),
    ];
    let mut many: Vec<_> = s
        .get_many(&keys)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.account_id, s.id))
        .collect();
    many.sort();
    assert_eq!(
        many,
        [
            (acct("acct_a"), sub_id("wh_3")),
            (acct("acct_b"), sub_id("wh_9"))
        ]
    );

    assert!(s.delete(&acct("acct_a"), &sub_id("wh_0")).await.unwrap());
    assert!(!s.delete(&acct("acct_a"), &sub_id("wh_0")).await.unwrap());
    assert!(!s.delete(&acct("acct_b"), &sub_id("wh_1")).await.unwrap());
    assert_eq!(s.list_all(&acct("acct_a")).await.unwrap().len(), 4);
}

pub async fn subscriptions_are_written_only_on_the_version_read(p: Ports) {
    let s = &p.subscriptions;
    let original = subscription("acct_a", "wh_v");
    s.put(&original).await.unwrap();

    let mut first = original.clone();
    first.version = 1;
    first.failing_since = Some(at(42));
    assert!(s.put_if_version(&first, 0).await.unwrap());
    // A second writer that read version 0 too must not overwrite the first.
    let mut stale = original.clone();
    stale.version = 1;
    stale.enabled = false;
    assert!(!s.put_if_version(&stale, 0).await.unwrap());
    assert_eq!(
        s.get(&acct("acct_a"), &sub_id("wh_v")).await.unwrap(),
        Some(first.clone())
    );

    let mut second = first.clone();
    second.version = 2;
    second.failing_since = None;
    assert!(s.put_if_version(&second, 1).await.unwrap());
    assert_eq!(
        s.get(&acct("acct_a"), &sub_id("wh_v")).await.unwrap(),
        Some(second)
    );

    // Never creates: a subscription deleted meanwhile stays deleted.
    let mut gone = subscription("acct_a", "wh_missing");
    gone.version = 1;
    assert!(!s.put_if_version(&gone, 0).await.unwrap());
    assert_eq!(
        s.get(&acct("acct_a"), &sub_id("wh_missing")).await.unwrap(),
        None
    );
    // Nor reaches across accounts.
    let mut other = subscription("acct_b", "wh_v");
    other.version = 3;
    assert!(!s.put_if_version(&other, 2).await.unwrap());
    assert_eq!(s.get(&acct("acct_b"), &sub_id("wh_v")).await.unwrap(), None);
}

pub async fn events_are_deduplicated_per_account(p: Ports) {
    let e = &p.events;
    let original = stored_event("a", "e1");
    let first = e
        .insert_batch(&[original.clone(), stored_event("b", "e1")])
        .await
        .unwrap();
    assert_eq!(first, [EventInsert::Created, EventInsert::Created]);
    let again = e
        .insert_batch(&[stored_event("a", "e1"), stored_event("a", "e2")])
        .await
        .unwrap();
    assert_eq!(again, [EventInsert::Exists, EventInsert::Created]);
    let mut changed = stored_event("a", "e1");
    changed.data = json!({"call_id": "changed"});
    let third = e.insert_batch(&[changed]).await.unwrap();
    assert_eq!(third, [EventInsert::Exists]);
    assert_eq!(
        e.get(&acct("a"), &evt_id("e1")).await.unwrap(),
        Some(original),
        "a duplicate overwrote the first"
    );
    assert_eq!(e.get(&acct("c"), &evt_id("e1")).await.unwrap(), None);
}

/// An event stored with the subscriptions its caller fans it out to
/// (`insert_batch_listing`) has those deliveries listed with it, whether their outcomes say
/// so (`listed_on_event`: a store may then leave them out of its index by event) or not;
/// with the ones it does not list, each once, and nothing of another event or account.
pub async fn an_events_deliveries_are_listed_whether_or_not_the_event_lists_them(p: Ports) {
    let event = stored_event("acct", "evt_listed");
    let listed_subs = [sub_id("wh_1"), sub_id("wh_2"), sub_id("wh_3")];
    p.events
        .insert_batch_listing(
            &[event.clone(), stored_event("acct", "evt_other")],
            &[Some(listed_subs.to_vec()), None],
        )
        .await
        .unwrap();
    fn outcome(
        sub: &'static str,
        event: &Event,
        listed: bool,
        status: DeliveryStatus,
    ) -> DeliveryUpdate {
        DeliveryUpdate {
            delivery_id: DeliveryId::of(
                &event.account_id,
                &event.id,
                event.received_at,
                &sub_id(sub),
            ),
            account_id: event.account_id.clone(),
            subscription_id: sub_id(sub),
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            created_at: now(),
            first_try: true,
            status,
            attempt: Some(Attempt {
                attempt: 1,
                at: now(),
                url: format!("https://example.com/{sub}"),
                request_headers: vec![],
                status_code: Some(if status == DeliveryStatus::Succeeded {
                    204
                } else {
                    503
                }),
                response_headers: vec![],
                latency_ms: 3,
                response_body: None,
                error: None,
            }),
            next_attempt_at: None,
            error: None,
            cause: None,
            at: now(),
            listed_on_event: listed,
        }
    }
    let other = stored_event("acct", "evt_other");
    p.deliveries
        .record(&[
            // Listed, and said so: a first-try success, and one that failed.
            outcome("wh_1", &event, true, DeliveryStatus::Succeeded),
            outcome("wh_2", &event, true, DeliveryStatus::Failed),
            // wh_3 is listed but has no outcome yet: nothing to show for it.
            // Not listed (a subscription added since, fanned out again): found all the same.
            outcome("wh_4", &event, false, DeliveryStatus::Succeeded),
            outcome("wh_1", &other, false, DeliveryStatus::Succeeded),
        ])
        .await
        .unwrap();
    // Listed, and logged the other way too (a paused subscription's, created at fan-out).
    let mut skipped = delivery("unused", "evt_listed");
    skipped.id = DeliveryId::of(
        &event.account_id,
        &event.id,
        event.received_at,
        &sub_id("wh_3"),
    );
    skipped.subscription_id = sub_id("wh_3");
    skipped.status = DeliveryStatus::Skipped;
    p.deliveries.create_batch(&[skipped]).await.unwrap();

    let mut found: Vec<(String, DeliveryStatus)> = p
        .deliveries
        .list_for_event(&acct("acct"), &event.id)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.subscription_id.to_string(), d.status))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        found,
        [
            ("wh_1".to_string(), DeliveryStatus::Succeeded),
            ("wh_2".to_string(), DeliveryStatus::Failed),
            ("wh_3".to_string(), DeliveryStatus::Skipped),
            ("wh_4".to_string(), DeliveryStatus::Succeeded),
        ]
    );
    // Another account asking about an event of the same id sees none of them.
    assert!(p
        .deliveries
        .list_for_event(&acct("other"), &event.id)
        .await
        .unwrap()
        .is_empty());

    // A delivery first logged as listed, whose event is no longer stored with that list
    // (it expired, its delivery lived on, and the id was posted again): an outcome that is
    // not listed, as a redrive's, makes it found from its event again.
    let gone = stored_event("acct", "evt_gone");
    p.deliveries
        .record(&[outcome("wh_1", &gone, true, DeliveryStatus::Pending)])
        .await
        .unwrap();
    p.deliveries
        .record(&[outcome("wh_1", &gone, false, DeliveryStatus::Succeeded)])
        .await
        .unwrap();
    let found: Vec<(String, DeliveryStatus)> = p
        .deliveries
        .list_for_event(&acct("acct"), &gone.id)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.subscription_id.to_string(), d.status))
        .collect();
    assert_eq!(found, [("wh_1".to_string(), DeliveryStatus::Succeeded)]);
}

pub async fn deliveries_are_created_once_and_log_numbered_attempts(p: Ports) {
    let d = &p.deliveries;
    let created = d
        .create_batch(&[delivery("msg_1", "e1"), delivery("msg_2", "e1")])
        .await
        .unwrap();
    assert_eq!(created, [true, true]);
    let mut changed = delivery("msg_1", "e1");
    changed.status = DeliveryStatus::Skipped;
    assert_eq!(
        d.create_batch(&[changed, delivery("msg_3", "e2")])
            .await
            .unwrap(),
        [false, true]
    );
    assert_eq!(
        d.get(&acct("acct"), &msg_id("msg_1"))
            .await
            .unwrap()
            .unwrap()
            .status,
        DeliveryStatus::Pending
    );

    // Attempts of one delivery start at distinct times: a retry follows its predecessor.
    let first_sent = now();
    let attempt = |code| Attempt {
        attempt: 0,
        at: first_sent.plus_millis(if code == 500 { 0 } else { 1000 }),
        url: "https://example.com/hook".into(),
        request_headers: vec![("webhook-id".into(), "msg_1".into())],
        response_headers: vec![
            ("content-type".into(), "text/plain".into()),
            ("x-request-id".into(), format!("req-{code}")),
        ],
        status_code: Some(code),
        latency_ms: 7,
        response_body: Some("body".into()),
        error: None,
    };
    let recorded_at = now().plus_millis(5);
    let update = |status, code| DeliveryUpdate {
        delivery_id: msg_id("msg_1"),
        account_id: acct("acct"),
        subscription_id: sub_id("wh_1"),
        event_id: evt_id("e1"),
        event_type: event_type("call.ended"),
        created_at: now(),
        first_try: true,
        cause: None,
        status,
        attempt: Some(attempt(code)),
        next_attempt_at: None,
        error: None,
        at: recorded_at,
        listed_on_event: false,
    };
    d.record(&[update(DeliveryStatus::Pending, 500)])
        .await
        .unwrap();
    d.record(&[update(DeliveryStatus::Succeeded, 200)])
        .await
        .unwrap();
    let got = d
        .get(&acct("acct"), &msg_id("msg_1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status, DeliveryStatus::Succeeded);
    assert_eq!(got.attempt_count, 2);
    assert_eq!(got.updated_at, recorded_at);
    let attempts = d.attempts(&acct("acct"), &msg_id("msg_1")).await.unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.attempt, a.status_code))
            .collect::<Vec<_>>(),
        [(1, Some(500)), (2, Some(200))]
    );
    assert_eq!(attempts[0].request_headers, attempt(500).request_headers);
    assert_eq!(attempts[1].response_headers, attempt(200).response_headers);
    assert!(
        d.attempts(&acct("other"), &msg_id("msg_1"))
            .await
            .unwrap()
            .is_empty(),
        "attempts read across accounts"
    );
    assert!(d
        .get(&acct("other"), &msg_id("msg_1"))
        .await
        .unwrap()
        .is_none());

    let mut for_event: Vec<_> = d
        .list_for_event(&acct("acct"), &evt_id("e1"))
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    for_event.sort();
    assert_eq!(for_event, ["msg_1", "msg_2"]);
    // An outcome for a delivery id logged under another account is refused, changes
    // nothing, and does not fail the others of its batch.
    let foreign = DeliveryUpdate {
        account_id: acct("other"),
        ..update(DeliveryStatus::Failed, 500)
    };
    let before = d
        .get(&acct("acct"), &msg_id("msg_1"))
        .await
        .unwrap()
        .unwrap()
        .attempt_count;
    assert_eq!(
        d.record(&[foreign, update(DeliveryStatus::Failed, 500)])
            .await
            .unwrap(),
        vec![false, true],
    );
    assert!(d
        .get(&acct("other"), &msg_id("msg_1"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        d.get(&acct("acct"), &msg_id("msg_1"))
            .await
            .unwrap()
            .unwrap()
            .attempt_count,
        before + 1,
        "one refused outcome failed its whole batch"
    );
}

/// Layout 2: a delivery is logged from its first outcome on; a success at the first
/// attempt is kept in short (time, URL, status, latency), everything else in full.
pub async fn a_first_outcome_logs_its_delivery_and_a_first_try_success_is_kept_short(p: Ports) {
    let d = &p.deliveries;
    let created_at = now();
    let sent = created_at.plus_millis(3);
    let attempt = |code: u16, at: Timestamp| Attempt {
        attempt: 0,
        at,
        url: "https://example.com/hook".into(),
        request_headers: vec![
            ("webhook-id".into(), "msg_s".into()),
            ("x-custom".into(), "********".into()),
        ],
        response_headers: vec![("x-request-id".into(), format!("req-{code}"))],
        status_code: Some(code),
        latency_ms: 12,
        response_body: Some(format!("body {code}")),
        error: None,
    };
    let outcome =
        |id: &'static str, event: &'static str, status, code, at: Timestamp| DeliveryUpdate {
            delivery_id: msg_id(id),
            account_id: acct("acct"),
            subscription_id: sub_id("wh_1"),
            event_id: evt_id(event),
            event_type: event_type("call.ended"),
            created_at,
            first_try: true,
            status,
            attempt: Some(attempt(code, at)),
            next_attempt_at: (status == DeliveryStatus::Pending).then(|| at.plus_millis(60_000)),
            error: (code >= 300).then(|| format!("endpoint answered {code}")),
            cause: None,
            at: at.plus_millis(12),
            listed_on_event: false,
        };
    assert!(d
        .get(&acct("acct"), &msg_id("msg_s"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        d.record(&[
            outcome("msg_s", "e7", DeliveryStatus::Succeeded, 204, sent),
            outcome("msg_f", "e7", DeliveryStatus::Pending, 503, sent),
        ])
        .await
        .unwrap(),
        [true, true]
    );

    // The success: its delivery, as fan-out would have made it, with its outcome.
    let short = d
        .get(&acct("acct"), &msg_id("msg_s"))
        .await
        .unwrap()
        .expect("the first outcome logs its delivery");
    assert_eq!(
        (short.status, short.attempt_count, short.created_at),
        (DeliveryStatus::Succeeded, 1, created_at)
    );
    assert_eq!(short.event_id, evt_id("e7"));
    assert_eq!(short.last_latency_ms, Some(12));
    assert_eq!(
        d.attempts(&acct("acct"), &msg_id("msg_s")).await.unwrap(),
        [Attempt::first_success(
            sent,
            "https://example.com/hook".into(),
            attempt(204, sent).request_headers,
            204,
            12
        )],
        "a first-try success reads back in short"
    );
    assert!(d
        .attempts(&acct("other"), &msg_id("msg_s"))
        .await
        .unwrap()
        .is_empty());

    // The failure: its attempt in full, then its retry's.
    let failed = d
        .get(&acct("acct"), &msg_id("msg_f"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (failed.status, failed.attempt_count),
        (DeliveryStatus::Pending, 1)
    );
    assert_eq!(failed.next_attempt_at, Some(sent.plus_millis(60_000)));
    let retried = sent.plus_millis(60_000);
    d.record(&[outcome(
        "msg_f",
        "e7",
        DeliveryStatus::Succeeded,
        200,
        retried,
    )])
    .await
    .unwrap();
    let attempts = d.attempts(&acct("acct"), &msg_id("msg_f")).await.unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.attempt, a.status_code, a.response_body.as_deref()))
            .collect::<Vec<_>>(),
        [
            (1, Some(503), Some("body 503")),
            (2, Some(200), Some("body 200"))
        ]
    );
    assert_eq!(
        attempts[0].request_headers,
        attempt(503, sent).request_headers
    );

    // A short success redriven and sent again: its first attempt stays in short, the next
    // is logged in full after it.
    assert!(d
        .move_status(
            &acct("acct"),
            &msg_id("msg_s"),
            (DeliveryStatus::Succeeded, 1),
            DeliveryStatus::Pending,
            retried
        )
        .await
        .unwrap());
    d.record(&[outcome(
        "msg_s",
        "e7",
        DeliveryStatus::Succeeded,
        200,
        retried.plus_millis(1),
    )])
    .await
    .unwrap();
    let attempts = d.attempts(&acct("acct"), &msg_id("msg_s")).await.unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.attempt, a.status_code, a.response_body.as_deref()))
            .collect::<Vec<_>>(),
        [(1, Some(204), None), (2, Some(200), Some("body 200"))]
    );
    assert_eq!(
        d.get(&acct("acct"), &msg_id("msg_s"))
            .await
            .unwrap()
            .unwrap()
            .attempt_count,
        2
    );

    // A later try whose delivery is not logged (it expired meanwhile) is logged in full.
    let late = DeliveryUpdate {
        first_try: false,
        ..outcome("msg_late", "e7", DeliveryStatus::Succeeded, 200, retried)
    };
    assert_eq!(d.record(&[late]).await.unwrap(), [true]);
    let attempts = d
        .attempts(&acct("acct"), &msg_id("msg_late"))
        .await
        .unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.attempt, a.response_body.as_deref()))
            .collect::<Vec<_>>(),
        [(1, Some("body 200"))]
    );

    // All are listed like any delivery.
    let mut for_event: Vec<_> = d
        .list_for_event(&acct("acct"), &evt_id("e7"))
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id.to_string())
        .collect();
    for_event.sort();
    assert_eq!(for_event, ["msg_f", "msg_late", "msg_s"]);
    let listed = d
        .list_for_subscription(
            &acct("acct"),
            &sub_id("wh_1"),
            Some(DeliveryStatus::Succeeded),
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 3);

    // A delivery whose first outcome is its death (its message set aside by the queue)
    // is a dead letter at once.
    let dead = DeliveryUpdate {
        attempt: None,
        next_attempt_at: None,
        ..outcome("msg_d", "e8", DeliveryStatus::Dead, 500, sent)
    };
    d.record(&[dead]).await.unwrap();
    let dead_letters = d.list_dead(&acct("acct"), None, 10).await.unwrap();
    assert_eq!(
        dead_letters
            .items
            .iter()
            .map(|d| (d.id.to_string(), d.attempt_count))
            .collect::<Vec<_>>(),
        [("msg_d".to_string(), 0)]
    );
}

/// Walks every page of a listing and returns the ids in order.
async fn all_pages<T, F, Fut>(mut page: F) -> Vec<T>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Page<T>>,
{
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let p = page(cursor.take()).await;
        assert!(p.items.len() <= 2);
        ids.extend(p.items);
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => return ids,
        }
    }
}

pub async fn deliveries_list_newest_first_by_subscription_and_status(p: Ports) {
    let d = &p.deliveries;
    let base = now();
    let mut all = Vec::new();
    for i in 0..5 {
        let mut x = delivery(&format!("msg_{i}"), &format!("e{i}"));
        x.created_at = base.plus_millis(i);
        x.updated_at = base.plus_millis(i);
        all.push(x);
    }
    let mut other_sub = delivery("msg_other", "e9");
    other_sub.subscription_id = sub_id("wh_2");
    all.push(other_sub);
    d.create_batch(&all).await.unwrap();
    let dead = |id: &'static str, at| DeliveryUpdate {
        delivery_id: msg_id(id),
        account_id: acct("acct"),
        subscription_id: sub_id("wh_1"),
        event_id: evt_id("e1"),
        event_type: event_type("call.ended"),
        created_at: now(),
        first_try: true,
        cause: None,
        status: DeliveryStatus::Dead,
        attempt: None,
        next_attempt_at: None,
        error: Some("gave up".into()),
        at,
        listed_on_event: false,
    };
    d.record(&[
        dead("msg_1", base.plus_millis(10)),
        dead("msg_3", base.plus_millis(20)),
    ])
    .await
    .unwrap();

    let newest_first = all_pages(|c| async move {
        let page = d
            .list_for_subscription(&acct("acct"), &sub_id("wh_1"), None, c.as_deref(), 2)
            .await
            .unwrap();
        Page {
            items: page.items.into_iter().map(|x| x.id).collect(),
            next_cursor: page.next_cursor,
        }
    })
    .await;
    assert_eq!(newest_first, ["msg_4", "msg_3", "msg_2", "msg_1", "msg_0"]);
    let dead_for_sub = d
        .list_for_subscription(
            &acct("acct"),
            &sub_id("wh_1"),
            Some(DeliveryStatus::Dead),
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        dead_for_sub
            .items
            .iter()
            .map(|x| x.id.as_str())
            .collect::<Vec<_>>(),
        ["msg_3", "msg_1"]
    );
    assert!(dead_for_sub.next_cursor.is_none());

    let dead_letters = all_pages(|c| async move {
        let page = d.list_dead(&acct("acct"), c.as_deref(), 2).await.unwrap();
        Page {
            items: page.items.into_iter().map(|x| x.id).collect(),
            next_cursor: page.next_cursor,
        }
    })
    .await;
    assert_eq!(dead_letters, ["msg_3", "msg_1"]);
    // Redriven, a delivery is pending again and no longer a dead letter.
    let mut redriven = dead("msg_3", base.plus_millis(30));
    redriven.status = DeliveryStatus::Pending;
    redriven.error = None;
    d.record(&[redriven]).await.unwrap();
    let still_dead: Vec<DeliveryId> = d
        .list_dead(&acct("acct"), None, 10)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(still_dead, ["msg_1"]);
    assert!(d
        .list_dead(&acct("other"), None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(matches!(
        d.list_for_subscription(
            &acct("acct"),
            &sub_id("wh_1"),
            None,
            Some("not-a-cursor"),
            2
        )
        .await,
        Err(app::Error::InvalidCursor)
    ));
}

/// However a subscription's deliveries were logged (first-try successes of several batches,
/// the same success logged twice, a failure, a delivery created before its outcome), its
/// list holds each once, newest first by creation, on any page size and by status; a
/// success whose status is moved later is listed once, under its new status.
pub async fn a_subscriptions_deliveries_are_listed_once_however_logged(p: Ports) {
    let d = &p.deliveries;
    let base = now();
    let t = |ms: i64| base.plus_millis(ms);
    let outcome = |id: &'static str, sub: &'static str, created: i64, status| DeliveryUpdate {
        delivery_id: msg_id(id),
        account_id: acct("acct"),
        subscription_id: sub_id(sub),
        event_id: evt_id("e1"),
        event_type: event_type("call.ended"),
        created_at: t(created),
        first_try: true,
        status,
        attempt: Some(Attempt {
            attempt: 1,
            at: t(created + 1),
            url: "https://example.com/hook".into(),
            request_headers: vec![],
            response_headers: vec![],
            status_code: Some(if status == DeliveryStatus::Succeeded {
                204
            } else {
                503
            }),
            latency_ms: 4,
            response_body: None,
            error: None,
        }),
        next_attempt_at: (status == DeliveryStatus::Pending).then(|| t(created + 60_000)),
        error: (status != DeliveryStatus::Succeeded).then(|| "endpoint answered 503".into()),
        cause: None,
        at: t(created + 5),
        listed_on_event: false,
    };
    use DeliveryStatus::{Pending, Succeeded};
    // Created before its outcome (a paused subscription's skip is created so).
    let mut early = delivery("msg_c0", "e0");
    early.created_at = t(0);
    early.updated_at = t(0);
    d.create_batch(&[early]).await.unwrap();
    d.record(&[
        outcome("msg_a1", "wh_1", 10, Succeeded),
        outcome("msg_a2", "wh_1", 10, Succeeded),
        outcome("msg_b1", "wh_2", 10, Succeeded),
        outcome("msg_f1", "wh_1", 10, Pending),
    ])
    .await
    .unwrap();
    d.record(&[
        outcome("msg_a3", "wh_1", 30, Succeeded),
        outcome("msg_a4", "wh_1", 30, Succeeded),
        // The same message received twice: one delivery.
        outcome("msg_a2", "wh_1", 10, Succeeded),
        outcome("msg_f2", "wh_1", 20, Pending),
    ])
    .await
    .unwrap();
    d.record(&[outcome("msg_a5", "wh_1", 50, Succeeded)])
        .await
        .unwrap();

    // Every page of wh_1's list (of `status`), `limit` at a time: each listed once, newest
    // first by creation (ties in any order).
    let every = |status: Option<DeliveryStatus>, limit: usize| async move {
        let mut seen: Vec<Delivery> = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..50 {
            let page = d
                .list_for_subscription(
                    &acct("acct"),
                    &sub_id("wh_1"),
                    status,
                    cursor.as_deref(),
                    limit,
                )
                .await
                .unwrap();
            assert!(page.items.len() <= limit, "limit {limit}");
            seen.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert!(
            seen.windows(2).all(|w| w[0].created_at >= w[1].created_at),
            "newest first, limit {limit}: {:?}",
            seen.iter()
                .map(|x| (x.id.as_str(), x.created_at))
                .collect::<Vec<_>>()
        );
        let mut ids: Vec<String> = seen.iter().map(|x| x.id.to_string()).collect();
        let listed = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), listed, "each once, limit {limit}: {ids:?}");
        ids
    };
    for limit in [1, 2, 3, 4, 10] {
        assert_eq!(
            every(None, limit).await,
            ["msg_a1", "msg_a2", "msg_a3", "msg_a4", "msg_a5", "msg_c0", "msg_f1", "msg_f2"],
            "limit {limit}"
        );
        assert_eq!(
            every(Some(Succeeded), limit).await,
            ["msg_a1", "msg_a2", "msg_a3", "msg_a4", "msg_a5"],
            "succeeded, limit {limit}"
        );
        assert_eq!(
            every(Some(Pending), limit).await,
            ["msg_c0", "msg_f1", "msg_f2"],
            "pending, limit {limit}"
        );
    }

    // A success moved back to pending (a retry asked for) is listed once, as pending.
    let a3 = d
        .get(&acct("acct"), &msg_id("msg_a3"))
        .await
        .unwrap()
        .unwrap();
    assert!(d
        .move_status(
            &acct("acct"),
            &a3.id,
            (Succeeded, a3.attempt_count),
            Pending,
            t(100)
        )
        .await
        .unwrap());
    for limit in [1, 3, 10] {
        assert_eq!(
            every(None, limit).await,
            ["msg_a1", "msg_a2", "msg_a3", "msg_a4", "msg_a5", "msg_c0", "msg_f1", "msg_f2"],
            "after the move, limit {limit}"
        );
        assert_eq!(
            every(Some(Succeeded), limit).await,
            ["msg_a1", "msg_a2", "msg_a4", "msg_a5"],
            "succeeded after the move, limit {limit}"
        );
        assert_eq!(
            every(Some(Pending), limit).await,
            ["msg_a3", "msg_c0", "msg_f1", "msg_f2"],
            "pending after the move, limit {limit}"
        );
    }
    // The other subscription's stays its own.
    let other = d
        .list_for_subscription(&acct("acct"), &sub_id("wh_2"), None, None, 10)
        .await
        .unwrap();
    assert_eq!(
        other
            .items
            .iter()
            .map(|x| x.id.as_str())
            .collect::<Vec<_>>(),
        ["msg_b1"]
    );
    assert!(other.next_cursor.is_none());
}

/// Events of one request of account `acct`, stored: received in the same millisecond.
async fn one_requests_events(p: &Ports, received_at: Timestamp, ids: &[&str]) -> Vec<Event> {
    let events: Vec<Event> = ids
        .iter()
        .map(|id| Event {
            received_at,
            ..stored_event("acct", id)
        })
        .collect();
    p.events.insert_batch(&events).await.unwrap();
    events
}

/// Every delivery of `acct`'s subscription `sub` in `status`, read page by page.
async fn every_page(
    d: &Arc<dyn DeliveryLog>,
    sub: &'static str,
    status: Option<DeliveryStatus>,
    limit: usize,
) -> Vec<Delivery> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let page = d
            .list_for_subscription(
                &acct("acct"),
                &sub_id(sub),
                status,
                cursor.as_deref(),
                limit,
            )
            .await
            .unwrap();
        all.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    all
}

/// The request headers a first-try success of `id` to `sub` was sent with, signed at `at`.
fn signed_headers(id: &DeliveryId, sub: &str, at: Timestamp) -> Vec<(String, String)> {
    vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("webhook-id".to_string(), id.to_string()),
        ("webhook-timestamp".to_string(), at.as_secs().to_string()),
        ("webhook-signature".to_string(), format!("v1,{sub}{id}=")),
        ("x-tenant".to_string(), "••••".to_string()),
    ]
}

/// The outcome of a first try of `event` to `sub` that succeeded in `latency` ms: made at
/// the event's receipt and sent 1 ms after it, or `later` ms after that when handled again
/// (the same task: the same creation).
fn first_try_success(event: &Event, sub: &'static str, latency: u64, later: i64) -> DeliveryUpdate {
    let base = event.received_at;
    let id = DeliveryId::of(&event.account_id, &event.id, base, &sub_id(sub));
    DeliveryUpdate {
        delivery_id: id.clone(),
        account_id: event.account_id.clone(),
        subscription_id: sub_id(sub),
        event_id: event.id.clone(),
        event_type: event.event_type.clone(),
        created_at: base,
        first_try: true,
        status: DeliveryStatus::Succeeded,
        attempt: Some(Attempt {
            attempt: 1,
            at: base.plus_millis(1 + later),
            url: format!("https://example.com/{sub}"),
            request_headers: signed_headers(&id, sub, base),
            response_headers: vec![],
            status_code: Some(204),
            latency_ms: latency,
            response_body: None,
            error: None,
        }),
        next_attempt_at: None,
        error: None,
        cause: None,
        at: base.plus_millis(2 + later),
        listed_on_event: false,
    }
}

/// The first-try successes of one request to one subscription, logged together (on AWS
/// kept in their listing alone, found from their ids), read as any delivery is: by id with
/// their attempt as sent, in their subscription's list and their event's, once each even
/// when logged twice; and moved on (a retry asked for) like any other.
pub async fn first_try_successes_logged_together_read_as_any_delivery(p: Ports) {
    let d = &p.deliveries;
    let base = now();
    // One request's: received in the same millisecond.
    let events = one_requests_events(&p, base, &["evt_t1", "evt_t2", "evt_t3"]).await;
    let id_of = |e: &Event, sub: &'static str| {
        DeliveryId::of(&e.account_id, &e.id, e.received_at, &sub_id(sub))
    };
    let headers_of = |id: &DeliveryId, sub: &str| signed_headers(id, sub, base);
    // `later`: handled again that much later (the same task: the same creation).
    let outcome = first_try_success;
    d.record(&[
        outcome(&events[0], "wh_1", 3, 0),
        outcome(&events[1], "wh_1", 4, 0),
        outcome(&events[2], "wh_1", 5, 0),
        outcome(&events[0], "wh_2", 6, 0),
    ])
    .await
    .unwrap();
    // Two of them handled again (a message received twice, sent again), logged together
    // again: one delivery each, with two attempts.
    d.record(&[
        outcome(&events[1], "wh_1", 7, 100),
        outcome(&events[2], "wh_1", 8, 100),
    ])
    .await
    .unwrap();

    // By id, with its attempts as they were sent.
    for (e, sub, latencies) in [
        (&events[0], "wh_1", vec![3]),
        (&events[1], "wh_1", vec![4, 7]),
        (&events[0], "wh_2", vec![6]),
    ] {
        let id = id_of(e, sub);
        let got = d
            .get(&acct("acct"), &id)
            .await
            .unwrap()
            .expect("found by id");
        let count = latencies.len() as u32;
        assert_eq!(
            (
                got.status,
                got.attempt_count,
                &got.event_id,
                got.subscription_id.as_str()
            ),
            (DeliveryStatus::Succeeded, count, &e.id, sub),
            "{id}"
        );
        let last = (count as i64 - 1) * 100;
        assert_eq!(got.created_at, base);
        assert_eq!(got.updated_at, base.plus_millis(2 + last));
        assert_eq!(got.last_latency_ms, latencies.last().copied());
        let attempts = d.attempts(&acct("acct"), &id).await.unwrap();
        assert_eq!(attempts.len(), latencies.len(), "{id}");
        for (i, (a, latency)) in attempts.iter().zip(&latencies).enumerate() {
            assert_eq!(
                (a.attempt, a.at, a.status_code),
                (
                    i as u32 + 1,
                    base.plus_millis(1 + i as i64 * 100),
                    Some(204)
                )
            );
            assert_eq!(a.latency_ms, *latency, "{id}, attempt {}", i + 1);
            assert_eq!(a.url, format!("https://example.com/{sub}"));
            assert_eq!(a.request_headers, headers_of(&id, sub));
        }
        // Not another account's.
        assert!(d.get(&acct("other"), &id).await.unwrap().is_none());
        assert!(d.attempts(&acct("other"), &id).await.unwrap().is_empty());
    }

    let list = |status: Option<DeliveryStatus>| async move {
        let mut ids: Vec<String> = every_page(d, "wh_1", status, 2)
            .await
            .into_iter()
            .map(|x| x.id.to_string())
            .collect();
        ids.sort();
        ids
    };
    let mut all_three: Vec<String> = events
        .iter()
        .map(|e| id_of(e, "wh_1").to_string())
        .collect();
    all_three.sort();
    assert_eq!(list(None).await, all_three, "each once");
    assert_eq!(list(Some(DeliveryStatus::Succeeded)).await, all_three);
    assert!(list(Some(DeliveryStatus::Pending)).await.is_empty());

    let mut of_event: Vec<(String, DeliveryStatus)> = d
        .list_for_event(&acct("acct"), &events[0].id)
        .await
        .unwrap()
        .into_iter()
        .map(|x| (x.subscription_id.to_string(), x.status))
        .collect();
    of_event.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        of_event,
        [
            ("wh_1".to_string(), DeliveryStatus::Succeeded),
            ("wh_2".to_string(), DeliveryStatus::Succeeded),
        ]
    );

    // A retry asked for: moved from the state it was read in, once.
    let moved = id_of(&events[1], "wh_1");
    assert!(!d
        .move_status(
            &acct("acct"),
            &moved,
            (DeliveryStatus::Failed, 2),
            DeliveryStatus::Pending,
            base.plus_millis(200)
        )
        .await
        .unwrap());
    assert!(!d
        .move_status(
            &acct("acct"),
            &moved,
            (DeliveryStatus::Succeeded, 1),
            DeliveryStatus::Pending,
            base.plus_millis(200)
        )
        .await
        .unwrap());
    assert!(d
        .move_status(
            &acct("acct"),
            &moved,
            (DeliveryStatus::Succeeded, 2),
            DeliveryStatus::Pending,
            base.plus_millis(200)
        )
        .await
        .unwrap());
    assert!(!d
        .move_status(
            &acct("acct"),
            &moved,
            (DeliveryStatus::Succeeded, 2),
            DeliveryStatus::Pending,
            base.plus_millis(201)
        )
        .await
        .unwrap());
    let got = d.get(&acct("acct"), &moved).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.attempt_count),
        (DeliveryStatus::Pending, 2)
    );
    let attempts = d.attempts(&acct("acct"), &moved).await.unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.attempt, a.at))
            .collect::<Vec<_>>(),
        [(1, base.plus_millis(1)), (2, base.plus_millis(101))]
    );
    assert_eq!(
        (attempts[0].latency_ms, attempts[1].latency_ms),
        (4, 7),
        "each attempt's own latency, in its item now"
    );
    assert!(attempts
        .iter()
        .all(|a| a.request_headers == headers_of(&moved, "wh_1")));
    assert_eq!(list(None).await, all_three, "each once after the move");
    assert_eq!(
        list(Some(DeliveryStatus::Pending)).await,
        [moved.to_string()]
    );
    let mut others: Vec<String> = all_three.clone();
    others.retain(|i| i != moved.as_str());
    assert_eq!(list(Some(DeliveryStatus::Succeeded)).await, others);
    let of_event: Vec<DeliveryStatus> = d
        .list_for_event(&acct("acct"), &events[1].id)
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.status)
        .collect();
    assert_eq!(of_event, [DeliveryStatus::Pending]);

    // Its event posted again while the subscription is paused: the skip fan-out would log
    // is refused, as for any delivery that exists.
    let first = id_of(&events[0], "wh_1");
    let mut skipped = delivery(first.as_str(), "evt_t1");
    skipped.status = DeliveryStatus::Skipped;
    assert_eq!(d.create_batch(&[skipped]).await.unwrap(), [false]);
    let got = d.get(&acct("acct"), &first).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.attempt_count),
        (DeliveryStatus::Succeeded, 1)
    );
    // A copy of its message handled again later, and failing: counted, never reopening it.
    let mut late = outcome(&events[0], "wh_1", 9, 300);
    late.first_try = false;
    late.status = DeliveryStatus::Pending;
    late.next_attempt_at = Some(base.plus_millis(60_000));
    late.error = Some("endpoint answered 503".into());
    if let Some(a) = late.attempt.as_mut() {
        a.status_code = Some(503);
    }
    assert_eq!(d.record(&[late]).await.unwrap(), [true]);
    let got = d.get(&acct("acct"), &first).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.attempt_count),
        (DeliveryStatus::Succeeded, 2)
    );
    let codes: Vec<Option<u16>> = d
        .attempts(&acct("acct"), &first)
        .await
        .unwrap()
        .iter()
        .map(|a| a.status_code)
        .collect();
    assert_eq!(codes, [Some(204), Some(503)]);
    assert_eq!(
        list(None).await,
        all_three,
        "each once after the late attempt"
    );
}

/// A request's first-try successes handled again alike (copies of their message handed
/// out more than once, each sent again), two to one subscription (on AWS kept in their
/// listing) and one alone to another (in an item of its own): each delivery shows every
/// attempt with its own latency, in the order sent, and is listed once, page by page.
pub async fn first_try_successes_handled_twice_alike_keep_both_attempts(p: Ports) {
    let d = &p.deliveries;
    let base = now();
    let events = one_requests_events(&p, base, &["evt_u1", "evt_u2", "evt_u3"]).await;
    let handlings = [(3, 0), (9, 50), (15, 80)];
    for (latency, later) in handlings {
        d.record(&[
            first_try_success(&events[0], "wh_1", latency, later),
            first_try_success(&events[1], "wh_1", latency + 1, later),
            first_try_success(&events[2], "wh_2", latency + 2, later),
        ])
        .await
        .unwrap();
    }
    for (e, sub, offset) in [
        (&events[0], "wh_1", 0),
        (&events[1], "wh_1", 1),
        (&events[2], "wh_2", 2),
    ] {
        let id = DeliveryId::of(&e.account_id, &e.id, base, &sub_id(sub));
        let got = d
            .get(&acct("acct"), &id)
            .await
            .unwrap()
            .expect("found by id");
        assert_eq!(
            (got.status, got.attempt_count, got.last_latency_ms),
            (DeliveryStatus::Succeeded, 3, Some(15 + offset)),
            "{id}"
        );
        let attempts = d.attempts(&acct("acct"), &id).await.unwrap();
        assert_eq!(
            attempts
                .iter()
                .map(|a| (a.attempt, a.at, a.latency_ms))
                .collect::<Vec<_>>(),
            handlings
                .iter()
                .zip(1..)
                .map(|(&(latency, later), n)| (n, base.plus_millis(1 + later), latency + offset))
                .collect::<Vec<_>>(),
            "{id}"
        );
        let of_event = d.list_for_event(&acct("acct"), &e.id).await.unwrap();
        assert_eq!(
            of_event
                .iter()
                .map(|x| (x.id.as_str(), x.attempt_count))
                .collect::<Vec<_>>(),
            [(id.as_str(), 3)],
            "{id}'s event"
        );
    }
    for limit in [1, 2, 10] {
        let mut listed: Vec<(String, u32)> = every_page(d, "wh_1", None, limit)
            .await
            .into_iter()
            .map(|x| (x.id.to_string(), x.attempt_count))
            .collect();
        listed.sort();
        let mut expected: Vec<(String, u32)> = events[..2]
            .iter()
            .map(|e| {
                (
                    DeliveryId::of(&e.account_id, &e.id, base, &sub_id("wh_1")).to_string(),
                    3,
                )
            })
            .collect();
        expected.sort();
        assert_eq!(listed, expected, "each once, limit {limit}");
    }
}

/// A first try that succeeds for deliveries that are logged already (a copy of their
/// message failed first) updates them, even logged together: the success wins, and each
/// is listed once, as succeeded.
pub async fn a_first_try_success_of_a_logged_delivery_updates_it(p: Ports) {
    let d = &p.deliveries;
    let base = now();
    let events = one_requests_events(&p, base, &["evt_u1", "evt_u2"]).await;
    let outcome = |e: &Event, status: DeliveryStatus, later: i64| DeliveryUpdate {
        delivery_id: DeliveryId::of(&e.account_id, &e.id, e.received_at, &sub_id("wh_1")),
        account_id: acct("acct"),
        subscription_id: sub_id("wh_1"),
        event_id: e.id.clone(),
        event_type: e.event_type.clone(),
        created_at: base,
        first_try: true,
        status,
        attempt: Some(Attempt {
            attempt: 1,
            at: base.plus_millis(1 + later),
            url: "https://example.com/hook".into(),
            request_headers: vec![],
            response_headers: vec![],
            status_code: Some(if status == DeliveryStatus::Succeeded {
                204
            } else {
                503
            }),
            latency_ms: 3,
            response_body: None,
            error: None,
        }),
        next_attempt_at: (status == DeliveryStatus::Pending).then(|| base.plus_millis(60_000)),
        error: (status != DeliveryStatus::Succeeded).then(|| "endpoint answered 503".into()),
        cause: None,
        at: base.plus_millis(2 + later),
        listed_on_event: false,
    };
    d.record(&[
        outcome(&events[0], DeliveryStatus::Pending, 0),
        outcome(&events[1], DeliveryStatus::Pending, 0),
    ])
    .await
    .unwrap();
    d.record(&[
        outcome(&events[0], DeliveryStatus::Succeeded, 10),
        outcome(&events[1], DeliveryStatus::Succeeded, 10),
    ])
    .await
    .unwrap();
    let mut ids = Vec::new();
    for e in &events {
        let id = DeliveryId::of(&e.account_id, &e.id, e.received_at, &sub_id("wh_1"));
        let got = d.get(&acct("acct"), &id).await.unwrap().unwrap();
        assert_eq!(
            (got.status, got.attempt_count),
            (DeliveryStatus::Succeeded, 2),
            "{id}"
        );
        let codes: Vec<Option<u16>> = d
            .attempts(&acct("acct"), &id)
            .await
            .unwrap()
            .iter()
            .map(|a| a.status_code)
            .collect();
        assert_eq!(codes, [Some(503), Some(204)], "{id}");
        ids.push(id.to_string());
    }
    ids.sort();
    for status in [None, Some(DeliveryStatus::Succeeded)] {
        let mut listed: Vec<String> = d
            .list_for_subscription(&acct("acct"), &sub_id("wh_1"), status, None, 10)
            .await
            .unwrap()
            .items
            .iter()
            .map(|x| x.id.to_string())
            .collect();
        listed.sort();
        assert_eq!(listed, ids, "{status:?}");
    }
    assert!(d
        .list_for_subscription(
            &acct("acct"),
            &sub_id("wh_1"),
            Some(DeliveryStatus::Pending),
            None,
            10
        )
        .await
        .unwrap()
        .items
        .is_empty());
}

/// Every recorded attempt adds to its subscription's five-minute slot, in the same write:
/// counts by outcome, latencies, failures by cause with examples. Two batches into one slot
/// add up; slots are read per account or per subscription, from a time on.
pub async fn stats_slots_add_up_outcomes_by_subscription_and_cause(p: Ports) {
    let d = &p.deliveries;
    // Well inside one slot, so the attempts below share it.
    let base = slot_of(now()).plus_millis(60_000);
    let earlier = base.plus_millis(-3_600_000);
    let attempt = |at: Timestamp, code: Option<u16>, latency| Attempt {
        attempt: 0,
        at,
        url: "https://example.com".into(),
        request_headers: vec![],
        response_headers: vec![],
        status_code: code,
        latency_ms: latency,
        response_body: None,
        error: None,
    };
    let update =
        |id: &'static str, sub: &'static str, status, code, at: Timestamp| DeliveryUpdate {
            delivery_id: msg_id(id),
            account_id: acct("acct"),
            subscription_id: sub_id(sub),
            event_id: evt_id("e1"),
            event_type: event_type("call.ended"),
            created_at: now(),
            first_try: true,
            status,
            attempt: Some(attempt(at, code, 12)),
            next_attempt_at: None,
            error: None,
            cause: code.is_none().then_some(FailureCause::Timeout),
            at,
            listed_on_event: false,
        };
    // Deliveries that exist and one that does not: an attempt counts either way.
    d.create_batch(&[delivery("msg_a", "e1"), delivery("msg_b", "e2")])
        .await
        .unwrap();
    d.record(&[
        update("msg_a", "wh_1", DeliveryStatus::Pending, Some(500), base),
        update("msg_b", "wh_1", DeliveryStatus::Succeeded, Some(204), base),
        update(
            "msg_x",
            "wh_2",
            DeliveryStatus::Dead,
            None,
            base.plus_millis(10),
        ),
        update(
            "msg_old",
            "wh_1",
            DeliveryStatus::Succeeded,
            Some(200),
            earlier,
        ),
    ])
    .await
    .unwrap();
    d.record(&[
        update(
            "msg_a",
            "wh_1",
            DeliveryStatus::Pending,
            Some(500),
            base.plus_millis(20),
        ),
        update(
            "msg_c",
            "wh_1",
            DeliveryStatus::Pending,
            Some(500),
            base.plus_millis(30),
        ),
    ])
    .await
    .unwrap();
    let mut other = update("msg_z", "wh_1", DeliveryStatus::Succeeded, Some(200), base);
    other.account_id = acct("other");
    d.record(&[other]).await.unwrap();

    let since = base.plus_millis(-600_000);
    let mut slots = d
        .stats_slots(&acct("acct"), None, since, StatsGrain::FiveMinutes)
        .await
        .unwrap();
    slots.sort_by(|a, b| a.subscription_id.cmp(&b.subscription_id));
    assert_eq!(slots.len(), 2, "{slots:?}");
    let (wh_1, wh_2) = (&slots[0], &slots[1]);
    assert_eq!(wh_1.subscription_id, sub_id("wh_1"));
    assert_eq!(wh_1.start, slot_of(base));
    let s = &wh_1.stats;
    assert_eq!((s.succeeded, s.failed, s.dead), (1, 3, 0));
    assert_eq!(s.latency.count(), 4);
    assert_eq!(s.latency.percentile(50.0), Some(12));
    let http_500 = &s.causes[&FailureCause::Http(500)];
    assert_eq!(http_500.count, 3);
    assert_eq!(http_500.last_seen, base.plus_millis(30));
    assert_eq!(http_500.examples.first(), Some(&msg_id("msg_c")));
    assert!(http_500.examples.contains(&msg_id("msg_a")));
    assert_eq!(s.causes.len(), 1);
    let s = &wh_2.stats;
    assert_eq!((s.succeeded, s.failed, s.dead), (0, 1, 1));
    assert_eq!(s.causes[&FailureCause::Timeout].examples, [msg_id("msg_x")]);

    let one = d
        .stats_slots(
            &acct("acct"),
            Some(&sub_id("wh_2")),
            since,
            StatsGrain::FiveMinutes,
        )
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].stats, wh_2.stats);
    let all = d
        .stats_slots(
            &acct("acct"),
            Some(&sub_id("wh_1")),
            slot_of(earlier),
            StatsGrain::FiveMinutes,
        )
        .await
        .unwrap();
    assert_eq!(
        all.len(),
        2,
        "the earlier slot is read from an earlier time: {all:?}"
    );
    assert!(d
        .stats_slots(&acct("nobody"), None, earlier, StatsGrain::FiveMinutes)
        .await
        .unwrap()
        .is_empty());

    // By hour: each hour the sum of its slots. Two slots of one hour of `wh_3`, recorded
    // in two batches, and one of the hour after.
    let hour = StatsGrain::Hour.start_of(base).plus_millis(-2 * 3_600_000);
    for (id, at, code) in [
        ("msg_h1", hour.plus_millis(60_000), Some(200)),
        ("msg_h2", hour.plus_millis(31 * 60_000), None),
        ("msg_h3", hour.plus_millis(3_600_000 + 5_000), Some(204)),
    ] {
        let status = if code.is_some() {
            DeliveryStatus::Succeeded
        } else {
            DeliveryStatus::Pending
        };
        d.record(&[update(id, "wh_3", status, code, at)])
            .await
            .unwrap();
    }
    let (account, wh_3) = (acct("acct"), sub_id("wh_3"));
    let read = |grain, since| d.stats_slots(&account, Some(&wh_3), since, grain);
    let slots = read(StatsGrain::FiveMinutes, hour).await.unwrap();
    assert_eq!(slots.len(), 3, "{slots:?}");
    let mut hours = read(StatsGrain::Hour, hour).await.unwrap();
    hours.sort_by_key(|h| h.start);
    assert_eq!(hours, roll_up(slots, StatsGrain::Hour, hour));
    assert_eq!(
        hours
            .iter()
            .map(|h| (h.start, h.stats.succeeded, h.stats.failed))
            .collect::<Vec<_>>(),
        [(hour, 1, 1), (hour.plus_millis(3_600_000), 1, 0)]
    );
    assert_eq!(
        hours[0].stats.causes[&FailureCause::Timeout].examples,
        [msg_id("msg_h2")]
    );
    // An hour starting before `since` is left out, though a slot of it is after.
    let later = read(StatsGrain::Hour, hour.plus_millis(30 * 60_000))
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].start, hour.plus_millis(3_600_000));
}

pub async fn events_list_newest_first_by_type(p: Ports) {
    let e = &p.events;
    let base = now();
    let mut events = Vec::new();
    for i in 0..5 {
        let mut ev = stored_event("acct", &format!("evt_{i}"));
        ev.received_at = base.plus_millis(i);
        if i % 2 == 1 {
            ev.event_type = event_type("agent.status_changed");
        }
        events.push(ev);
    }
    events.push(stored_event("other", "evt_x"));
    e.insert_batch(&events).await.unwrap();
    let ids = all_pages(|c| async move {
        let page = e.list(&acct("acct"), None, c.as_deref(), 2).await.unwrap();
        Page {
            items: page.items.into_iter().map(|x| x.id).collect(),
            next_cursor: page.next_cursor,
        }
    })
    .await;
    assert_eq!(ids, ["evt_4", "evt_3", "evt_2", "evt_1", "evt_0"]);
    let agents = e
        .list(&acct("acct"), Some("agent.status_changed"), None, 10)
        .await
        .unwrap();
    assert_eq!(
        agents
            .items
            .iter()
            .map(|x| x.id.as_str())
            .collect::<Vec<_>>(),
        ["evt_3", "evt_1"]
    );
}

/// A key's record, as the HTTP layer makes one.
fn api_key(id: &str, account: &str, hash: &str, created_at: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        id: ApiKeyId::parse(id).unwrap(),
        account_id: AccountId::parse(account).unwrap(),
        key_hash: hash.into(),
        prefix: format!("whk_{id}"),
        created_at: at(created_at),
        last_used_at: None,
        revoked_at: None,
        expires_at: None,
    }
}

pub async fn api_keys_are_found_by_hash(p: Ports) {
    let record = ApiKeyRecord {
        expires_at: Some(at(1_000)),
        ..api_key("key_1", "acct", "ab12", 5)
    };
    p.api_keys.create(&record).await.unwrap();
    // Every field comes back as written.
    let found = p.api_keys.find_by_hash("ab12").await.unwrap().unwrap();
    assert_eq!(found, record);
    assert!(p.api_keys.find_by_hash("ab13").await.unwrap().is_none());
}

pub async fn api_keys_are_listed_newest_first_by_account(p: Ports) {
    assert!(p.api_keys.list(&acct("acct")).await.unwrap().is_empty());
    let keys = [
        api_key("key_a", "acct", "h_a", 10),
        ApiKeyRecord {
            expires_at: Some(at(50)),
            ..api_key("key_c", "acct", "h_c", 30)
        },
        api_key("key_b", "acct", "h_b", 20),
        api_key("key_x", "acct_other", "h_x", 40),
    ];
    for k in &keys {
        p.api_keys.create(k).await.unwrap();
    }
    let listed = p.api_keys.list(&acct("acct")).await.unwrap();
    let ids: Vec<_> = listed.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids, ["key_c", "key_b", "key_a"]);
    assert_eq!(listed[0], keys[1], "every field is listed as written");
    let other = p.api_keys.list(&acct("acct_other")).await.unwrap();
    assert_eq!(other, [keys[3].clone()]);
    assert!(p
        .api_keys
        .list(&acct("acct_none"))
        .await
        .unwrap()
        .is_empty());
}

pub async fn api_keys_are_revoked_only_in_their_account(p: Ports) {
    p.api_keys
        .create(&api_key("key_1", "acct", "h_1", 10))
        .await
        .unwrap();
    p.api_keys
        .create(&api_key("key_2", "acct", "h_2", 20))
        .await
        .unwrap();
    // Another account cannot name it, and an unknown id is not found.
    assert!(p
        .api_keys
        .revoke(&acct("acct_other"), &key_id("key_1"), at(100))
        .await
        .unwrap()
        .is_none());
    assert!(p
        .api_keys
        .revoke(&acct("acct"), &key_id("key_none"), at(100))
        .await
        .unwrap()
        .is_none());
    let found = p.api_keys.find_by_hash("h_1").await.unwrap().unwrap();
    assert_eq!(
        found.revoked_at, None,
        "a refused revocation changed the key"
    );

    let revoked = p
        .api_keys
        .revoke(&acct("acct"), &key_id("key_1"), at(100))
        .await
        .unwrap();
    assert_eq!(
        revoked.map(|k| (k.id, k.revoked_at)),
        Some((key_id("key_1"), Some(at(100))))
    );
    // Read right after: authentication sees it at once.
    let found = p.api_keys.find_by_hash("h_1").await.unwrap().unwrap();
    assert_eq!(found.revoked_at, Some(at(100)));
    // Revoking again keeps the first time.
    let again = p
        .api_keys
        .revoke(&acct("acct"), &key_id("key_1"), at(200))
        .await
        .unwrap();
    assert_eq!(again.and_then(|k| k.revoked_at), Some(at(100)));
    // The other key is untouched, and the revoked one is still listed.
    let listed = p.api_keys.list(&acct("acct")).await.unwrap();
    let states: Vec<_> = listed
        .iter()
        .map(|k| (k.id.as_str(), k.revoked_at))
        .collect();
    assert_eq!(states, [("key_2", None), ("key_1", Some(at(100)))]);
}

pub async fn api_key_use_is_recorded_at_most_once_a_minute(p: Ports) {
    use domain::api_key::LAST_USED_RESOLUTION_MS as MINUTE;
    p.api_keys
        .create(&api_key("key_1", "acct", "h_1", 10))
        .await
        .unwrap();
    let t = at(1_000_000);
    let last_used = || async {
        p.api_keys
            .find_by_hash("h_1")
            .await
            .unwrap()
            .unwrap()
            .last_used_at
    };
    assert!(p.api_keys.record_use("h_1", t).await.unwrap());
    assert_eq!(last_used().await, Some(t));
    // Within the minute: no write.
    assert!(!p
        .api_keys
        .record_use("h_1", t.plus_millis(MINUTE - 1))
        .await
        .unwrap());
    assert!(!p
        .api_keys
        .record_use("h_1", t.plus_millis(-5))
        .await
        .unwrap());
    assert_eq!(last_used().await, Some(t));
    assert!(p
        .api_keys
        .record_use("h_1", t.plus_millis(MINUTE))
        .await
        .unwrap());
    assert_eq!(last_used().await, Some(t.plus_millis(MINUTE)));
    // An unknown hash is not created by it.
    assert!(!p.api_keys.record_use("h_none", t).await.unwrap());
    assert!(p.api_keys.find_by_hash("h_none").await.unwrap().is_none());
    let listed = p.api_keys.list(&acct("acct")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_at, Some(t.plus_millis(MINUTE)));
}

pub async fn api_keys_are_deleted_only_in_their_account(p: Ports) {
    p.api_keys
        .create(&api_key("key_1", "acct", "h_1", 10))
        .await
        .unwrap();
    assert!(!p
        .api_keys
        .delete(&acct("acct_other"), &key_id("key_1"))
        .await
        .unwrap());
    assert!(!p
        .api_keys
        .delete(&acct("acct"), &key_id("key_none"))
        .await
        .unwrap());
    assert!(p.api_keys.find_by_hash("h_1").await.unwrap().is_some());
    assert!(p
        .api_keys
        .delete(&acct("acct"), &key_id("key_1"))
        .await
        .unwrap());
    assert!(p.api_keys.find_by_hash("h_1").await.unwrap().is_none());
    assert!(p.api_keys.list(&acct("acct")).await.unwrap().is_empty());
    assert!(!p
        .api_keys
        .delete(&acct("acct"), &key_id("key_1"))
        .await
        .unwrap());
}

/// An outcome and its attempt become visible together: whoever reads a delivery's outcome
/// (its status and attempt count) and then its attempts finds every attempt counted, even
/// while outcomes are being written. Two sends of one message (a queue handing it to two
/// receivers) in the same millisecond stay two attempts.
pub async fn an_outcome_is_never_visible_without_its_attempt(p: Ports) {
    const OUTCOMES: u32 = 10;
    let log = p.deliveries.clone();
    let writing = p.deliveries_with_slow_writes.clone();
    log.create_batch(&[delivery("msg_seen", "e1")])
        .await
        .unwrap();
    let started = now();
    let update = move |n: u32, at: Timestamp| DeliveryUpdate {
        delivery_id: msg_id("msg_seen"),
        account_id: acct("acct"),
        subscription_id: sub_id("wh_1"),
        event_id: evt_id("e1"),
        event_type: event_type("call.ended"),
        created_at: now(),
        first_try: true,
        cause: None,
        status: if n == OUTCOMES {
            DeliveryStatus::Succeeded
        } else {
            DeliveryStatus::Pending
        },
        attempt: Some(Attempt {
            attempt: 0,
            at,
            url: "https://example.com/hook".into(),
            request_headers: vec![("webhook-id".into(), "msg_seen".into())],
            response_headers: vec![],
            status_code: Some(if n == OUTCOMES { 200 } else { 500 }),
            latency_ms: 3,
            response_body: None,
            error: None,
        }),
        next_attempt_at: None,
        error: None,
        at,
        listed_on_event: false,
    };
    let writer = tokio::spawn({
        async move {
            for n in 1..=OUTCOMES {
                // Attempts of one delivery start at distinct times, oldest first.
                let at = started.plus_millis(i64::from(n) * 1000);
                writing.record(&[update(n, at)]).await.unwrap();
            }
        }
    });
    loop {
        let finished = writer.is_finished();
        let seen = log
            .get(&acct("acct"), &msg_id("msg_seen"))
            .await
            .unwrap()
            .unwrap();
        let attempts = log
            .attempts(&acct("acct"), &msg_id("msg_seen"))
            .await
            .unwrap();
        assert!(
            attempts.len() as u32 >= seen.attempt_count,
            "read {} attempts of a delivery whose outcome counts {} (status {:?})",
            attempts.len(),
            seen.attempt_count,
            seen.status
        );
        if seen.status == DeliveryStatus::Succeeded {
            assert_eq!(attempts.last().unwrap().status_code, Some(200));
        }
        if finished {
            break;
        }
    }
    writer.await.unwrap();
    let attempts = log
        .attempts(&acct("acct"), &msg_id("msg_seen"))
        .await
        .unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        (1..=OUTCOMES).collect::<Vec<_>>()
    );
    assert!(attempts.windows(2).all(|w| w[0].at < w[1].at));

    // The same message handled twice at once, in the same millisecond: two attempts.
    log.create_batch(&[delivery("msg_twice", "e1")])
        .await
        .unwrap();
    let twice = DeliveryUpdate {
        delivery_id: msg_id("msg_twice"),
        ..update(1, started)
    };
    let (a, b) = tokio::join!(
        log.record(std::slice::from_ref(&twice)),
        log.record(std::slice::from_ref(&twice))
    );
    a.unwrap();
    b.unwrap();
    let seen = log
        .get(&acct("acct"), &msg_id("msg_twice"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.attempt_count, 2);
    assert_eq!(
        log.attempts(&acct("acct"), &msg_id("msg_twice"))
            .await
            .unwrap()
            .iter()
            .map(|a| a.attempt)
            .collect::<Vec<_>>(),
        [1, 2]
    );
}

/// A retry's outcome arriving after a success (two copies of one message, answered 200 and
/// 500) counts its attempt but leaves the delivery `succeeded`; a late success still wins.
pub async fn a_late_failure_never_reopens_a_finished_delivery(p: Ports) {
    let log = &p.deliveries;
    log.create_batch(&[delivery("msg_race", "e1"), delivery("msg_late_ok", "e1")])
        .await
        .unwrap();
    let started = now();
    let outcome = |id: &'static str, status, code, at: Timestamp| DeliveryUpdate {
        delivery_id: msg_id(id),
        account_id: acct("acct"),
        subscription_id: sub_id("wh_1"),
        event_id: evt_id("e1"),
        event_type: event_type("call.ended"),
        created_at: now(),
        first_try: true,
        cause: None,
        status,
        attempt: Some(Attempt {
            attempt: 0,
            at,
            url: "https://example.com/hook".into(),
            request_headers: vec![],
            response_headers: vec![],
            status_code: Some(code),
            latency_ms: 5,
            response_body: None,
            error: None,
        }),
        next_attempt_at: (status == DeliveryStatus::Pending).then_some(at.plus_millis(60_000)),
        error: (code >= 300).then(|| format!("endpoint answered {code}")),
        at,
        listed_on_event: false,
    };
    log.record(&[outcome("msg_race", DeliveryStatus::Succeeded, 200, started)])
        .await
        .unwrap();
    log.record(&[outcome(
        "msg_race",
        DeliveryStatus::Pending,
        500,
        started.plus_millis(1),
    )])
    .await
    .unwrap();
    log.record(&[outcome(
        "msg_race",
        DeliveryStatus::Dead,
        500,
        started.plus_millis(2),
    )])
    .await
    .unwrap();
    let d = log
        .get(&acct("acct"), &msg_id("msg_race"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.status, DeliveryStatus::Succeeded);
    assert_eq!(d.attempt_count, 3, "every send is counted");
    assert_eq!(d.next_attempt_at, None);
    assert_eq!(d.last_error, None);
    assert_eq!(
        log.attempts(&acct("acct"), &msg_id("msg_race"))
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(
        log.list_dead(&acct("acct"), None, 10)
            .await
            .unwrap()
            .items
            .is_empty(),
        "a delivered delivery was listed as dead"
    );

    log.record(&[outcome("msg_late_ok", DeliveryStatus::Dead, 500, started)])
        .await
        .unwrap();
    log.record(&[outcome(
        "msg_late_ok",
        DeliveryStatus::Succeeded,
        200,
        started.plus_millis(1),
    )])
    .await
    .unwrap();
    let d = log
        .get(&acct("acct"), &msg_id("msg_late_ok"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.status, DeliveryStatus::Succeeded);
    assert_eq!(d.attempt_count, 2);

    // Without an attempt (a redrive), the status is set as asked.
    log.record(&[DeliveryUpdate {
        attempt: None,
        next_attempt_at: Some(started.plus_millis(3)),
        ..outcome(
            "msg_late_ok",
            DeliveryStatus::Pending,
            200,
            started.plus_millis(3),
        )
    }])
    .await
    .unwrap();
    let d = log
        .get(&acct("acct"), &msg_id("msg_late_ok"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert_eq!(d.attempt_count, 2);
}

/// Status changes outside an attempt (a redrive, undoing one) apply only to the delivery as
/// it was read: same status, same attempt count. The dead-letter listing follows.
pub async fn a_status_moves_only_from_the_state_it_was_read_in(p: Ports) {
    let log = &p.deliveries;
    log.create_batch(&[delivery("msg_move", "e1")])
        .await
        .unwrap();
    let t = now();
    let dead_ids =
        |page: app::ports::Page<Delivery>| page.items.into_iter().map(|d| d.id).collect::<Vec<_>>();

    assert!(log
        .move_status(
            &acct("acct"),
            &msg_id("msg_move"),
            (DeliveryStatus::Pending, 0),
            DeliveryStatus::Dead,
            t
        )
        .await
        .unwrap());
    let d = log
        .get(&acct("acct"), &msg_id("msg_move"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (d.status, d.next_attempt_at, d.updated_at),
        (DeliveryStatus::Dead, None, t)
    );
    assert_eq!(
        dead_ids(log.list_dead(&acct("acct"), None, 10).await.unwrap()),
        vec!["msg_move"]
    );

    // Read before it changed: moves nothing.
    for stale in [(DeliveryStatus::Pending, 0), (DeliveryStatus::Dead, 1)] {
        assert!(!log
            .move_status(
                &acct("acct"),
                &msg_id("msg_move"),
                stale,
                DeliveryStatus::Pending,
                t.plus_millis(1)
            )
            .await
            .unwrap());
    }
    // Another account's delivery, or none: nothing.
    assert!(!log
        .move_status(
            &acct("other"),
            &msg_id("msg_move"),
            (DeliveryStatus::Dead, 0),
            DeliveryStatus::Pending,
            t
        )
        .await
        .unwrap());
    assert!(!log
        .move_status(
            &acct("acct"),
            &msg_id("msg_none"),
            (DeliveryStatus::Dead, 0),
            DeliveryStatus::Pending,
            t
        )
        .await
        .unwrap());
    assert_eq!(
        log.get(&acct("acct"), &msg_id("msg_move"))
            .await
            .unwrap()
            .unwrap()
            .status,
        DeliveryStatus::Dead
    );

    // Reopened for a redrive: pending, scheduled now, off the dead-letter listing.
    assert!(log
        .move_status(
            &acct("acct"),
            &msg_id("msg_move"),
            (DeliveryStatus::Dead, 0),
            DeliveryStatus::Pending,
            t.plus_millis(2)
        )
        .await
        .unwrap());
    let d = log
        .get(&acct("acct"), &msg_id("msg_move"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (d.status, d.next_attempt_at),
        (DeliveryStatus::Pending, Some(t.plus_millis(2)))
    );
    assert!(dead_ids(log.list_dead(&acct("acct"), None, 10).await.unwrap()).is_empty());
}

/// The sweep's question: pending deliveries due (their next attempt, or their last change
/// when none is set) before a time, across accounts; never a finished one.
pub async fn overdue_lists_pending_deliveries_due_before_a_time(p: Ports) {
    let log = &p.deliveries;
    let t = at(1_800_000_000_000);
    let made = |id: &str, updated: Timestamp, next: Option<Timestamp>| Delivery {
        updated_at: updated,
        created_at: updated,
        next_attempt_at: next,
        ..delivery(id, "e1")
    };
    let mut other_account = made("msg_od_other", t.plus_millis(-5_000), None);
    other_account.account_id = acct("other");
    log.create_batch(&[
        made("msg_od_stale", t.plus_millis(-5_000), None),
        made("msg_od_fresh", t.plus_millis(5_000), None),
        // Changed long ago, but scheduled after `t`: a retry waiting its turn.
        made(
            "msg_od_waiting",
            t.plus_millis(-5_000),
            Some(t.plus_millis(1)),
        ),
        // Scheduled before `t`: overdue whenever it last changed.
        made("msg_od_late", t.plus_millis(5_000), Some(t.plus_millis(-1))),
        made("msg_od_done", t.plus_millis(-5_000), None),
        other_account,
    ])
    .await
    .unwrap();
    assert!(log
        .move_status(
            &acct("acct"),
            &msg_id("msg_od_done"),
            (DeliveryStatus::Pending, 0),
            DeliveryStatus::Dead,
            t.plus_millis(-4_000)
        )
        .await
        .unwrap());

    // Every page, following the cursors: each overdue delivery once.
    let all = |limit: usize, before: Timestamp| async move {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let page = log.overdue(before, cursor.as_deref(), limit).await.unwrap();
            ids.extend(page.items.into_iter().map(|d| d.id.to_string()));
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        assert!(cursor.is_none(), "the cursors never end");
        ids.sort();
        ids
    };
    let expected = ["msg_od_late", "msg_od_other", "msg_od_stale"];
    assert_eq!(all(100, t).await, expected);
    assert_eq!(all(1, t).await, expected);
    assert!(all(100, t.plus_millis(-10_000)).await.is_empty());
}

pub async fn alert_settings_are_kept_per_account(p: Ports) {
    assert_eq!(p.alerts.settings(&acct("acct_a")).await.unwrap(), None);
    let settings = AlertSettings {
        emails: vec!["ops@example.com".into()],
        events: vec!["delivery.dead".into()],
        failing_after_failures: Some(3),
    };
    p.alerts
        .put_settings(&acct("acct_a"), &settings)
        .await
        .unwrap();
    assert_eq!(
        p.alerts.settings(&acct("acct_a")).await.unwrap(),
        Some(settings.clone())
    );
    assert_eq!(p.alerts.settings(&acct("acct_b")).await.unwrap(), None);
    let replaced = AlertSettings::default();
    p.alerts
        .put_settings(&acct("acct_a"), &replaced)
        .await
        .unwrap();
    assert_eq!(
        p.alerts.settings(&acct("acct_a")).await.unwrap(),
        Some(replaced)
    );
}

/// The due topics as (account, topic key), read from the states listed.
async fn due(p: &Ports, now: Timestamp, limit: usize) -> Vec<(AccountId, String)> {
    p.alerts
        .due_digests(now, limit)
        .await
        .unwrap()
        .into_iter()
        .map(|(account, state)| (account, state.topic.key()))
        .collect()
}

/// A throttle is written only on the version read, and a topic holding alerts is listed
/// as due from its digest's due time until a write leaves nothing held.
pub async fn alert_throttles_are_written_on_the_version_read_and_listed_when_due(p: Ports) {
    let topic = |webhook: &str| AlertTopic {
        webhook_id: webhook.into(),
        event_type: "webhook.failing".into(),
        cause: "http_500".into(),
    };
    let (a, b) = (acct("acct_a"), acct("acct_b"));
    let t0 = at(1_800_000_000_000);
    let minutes = |m: u64| t0 + Duration::from_secs(60 * m);
    let (t1, t2) = (topic("wh_1"), topic("wh_2"));
    let (k1, k2) = (t1.key(), t2.key());

    let (_, sent) = alert_claim(None, &t1, "evt_1", Some("https://x.example"), t0);
    let sent = sent.unwrap();
    assert!(p.alerts.put_throttle(&a, &k1, None, &sent).await.unwrap());
    assert!(
        !p.alerts.put_throttle(&a, &k1, None, &sent).await.unwrap(),
        "a second first write loses"
    );
    assert_eq!(
        p.alerts.throttle(&a, &k1).await.unwrap(),
        Some(sent.clone())
    );
    assert_eq!(p.alerts.throttle(&b, &k1).await.unwrap(), None);

    let (_, held) = alert_claim(Some(&sent), &t1, "evt_2", None, minutes(5));
    let held = held.unwrap();
    assert!(p
        .alerts
        .put_throttle(&a, &k1, Some(&sent), &held)
        .await
        .unwrap());
    assert!(
        !p.alerts
            .put_throttle(&a, &k1, Some(&sent), &held)
            .await
            .unwrap(),
        "a write on a version read before is refused"
    );
    // Another account's topic, held later.
    let (_, other) = alert_claim(None, &t2, "evt_3", None, minutes(10));
    let other = other.unwrap();
    assert!(p.alerts.put_throttle(&b, &k2, None, &other).await.unwrap());
    let (_, other_held) = alert_claim(Some(&other), &t2, "evt_4", None, minutes(11));
    let other_held = other_held.unwrap();
    assert!(p
        .alerts
        .put_throttle(&b, &k2, Some(&other), &other_held)
        .await
        .unwrap());

    assert!(due(&p, minutes(59), 10).await.is_empty());
    assert_eq!(due(&p, minutes(60), 10).await, [(a.clone(), k1.clone())]);
    assert_eq!(
        due(&p, minutes(75), 10).await,
        [(a.clone(), k1.clone()), (b.clone(), k2.clone())],
        "earliest first"
    );
    assert_eq!(due(&p, minutes(75), 1).await.len(), 1);

    let digested = alert_digested(&held, &held, minutes(61)).unwrap();
    assert!(p
        .alerts
        .put_throttle(&a, &k1, Some(&held), &digested)
        .await
        .unwrap());
    assert_eq!(
        due(&p, minutes(75), 10).await,
        [(b, k2)],
        "nothing held is nothing due"
    );
}

/// The size cap on one message, the same on every backend (SQS's, with the queues'
/// `MaximumMessageSize` at 1 MiB): a message at the cap is carried whole, one byte more is
/// refused as invalid input (not a failure worth retrying) and a batch holding it is
/// refused whole. Ten messages of 200 KiB are more than one SQS batch call takes (1 MiB
/// together): the adapter splits them into several calls, and every one arrives.
pub async fn queue_carries_messages_up_to_the_size_cap_and_splits_large_batches(p: Ports) {
    let cap = app::ports::MAX_MESSAGE_BYTES;
    let sized = |id: &str, len: usize| OutgoingMessage {
        id: id.to_string(),
        body: format!("{id}:{}", "x".repeat(len - id.len() - 1)),
        delay: Duration::ZERO,
        held_for: None,
    };
    for batch in [
        vec![sized("over", cap + 1)],
        vec![msg("small"), sized("over", cap + 1)],
    ] {
        let err = p.queue.send_batch(batch).await.unwrap_err();
        assert_eq!(err.kind(), app::ErrorKind::Invalid, "{err}");
        assert!(err.to_string().contains(&cap.to_string()), "{err}");
    }

    p.queue
        .send_batch(vec![sized("at-cap", cap)])
        .await
        .unwrap();
    let got = receive_some(&p.queue, 10).await;
    assert_eq!(got.len(), 1, "a refused batch sent some of its messages");
    assert_eq!(got[0].body.len(), cap);
    assert!(got[0].body.starts_with("at-cap:"));
    p.queue
        .delete_batch(vec![got[0].receipt_handle.clone()])
        .await
        .unwrap();

    let ten: Vec<OutgoingMessage> = (0..10)
        .map(|i| sized(&format!("big{i}"), 200 * 1024))
        .collect();
    p.queue.send_batch(ten.clone()).await.unwrap();
    let mut received: HashMap<String, QueueMessage> = HashMap::new();
    let deadline = Instant::now() + e2e::WAIT;
    while received.len() < 10 {
        assert!(
            Instant::now() < deadline,
            "only {} of 10 large messages received",
            received.len()
        );
        for m in p.queue.receive(10, Duration::from_secs(1)).await.unwrap() {
            let id = m.body.split(':').next().unwrap().to_string();
            assert!(id.starts_with("big"), "{id} was sent");
            received.insert(id, m);
        }
    }
    for m in &ten {
        assert_eq!(received[&m.id].body, m.body, "{} changed on the way", m.id);
    }
    p.queue
        .delete_batch(received.into_values().map(|m| m.receipt_handle).collect())
        .await
        .unwrap();
}

pub async fn jwt_key_rings_are_written_only_from_the_version_before(p: Ports) {
    let random = OsRandom;
    assert_eq!(p.jwt_keys.key_ring().await.unwrap(), None);
    let first = KeyRing::default().rotated(at(1_000), &random).unwrap();
    assert!(p.jwt_keys.put_key_ring(&first).await.unwrap());
    assert!(
        !p.jwt_keys.put_key_ring(&first).await.unwrap(),
        "a second first ring loses"
    );
    assert_eq!(p.jwt_keys.key_ring().await.unwrap(), Some(first.clone()));
    let later = at(1_000) + Duration::from_secs(29 * 86_400);
    let second = first.rotated(later, &random).unwrap();
    assert_eq!(second.version, 2);
    // Another process's rotation, decided on the same read, is refused.
    let rival = first.rotated(later, &random).unwrap();
    assert!(p.jwt_keys.put_key_ring(&second).await.unwrap());
    assert!(!p.jwt_keys.put_key_ring(&rival).await.unwrap());
    assert_eq!(p.jwt_keys.key_ring().await.unwrap(), Some(second));
}

/// Every case as a test of every backend: `contract_tests!(backends: [..], cases: [..])`
/// makes a module per backend holding one test per case.
macro_rules! contract_tests {
    (backends: [$($backend:ident),* $(,)?], cases: $cases:tt $(,)?) => {
        $(contract_tests!(@backend $backend $cases);)*
    };
    (@backend $backend:ident [$($case:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::$backend().await).await;
                }
            )*
        }
    };
}

contract_tests! {
    backends: [embedded, moto, memory],
    cases: [
        an_outcome_is_never_visible_without_its_attempt,
        a_late_failure_never_reopens_a_finished_delivery,
        deliveries_list_newest_first_by_subscription_and_status,
        a_subscriptions_deliveries_are_listed_once_however_logged,
        first_try_successes_logged_together_read_as_any_delivery,
        first_try_successes_handled_twice_alike_keep_both_attempts,
        a_first_try_success_of_a_logged_delivery_updates_it,
        stats_slots_add_up_outcomes_by_subscription_and_cause,
        events_list_newest_first_by_type,
        queue_sends_receives_and_deletes,
        queue_hides_received_messages_until_their_visibility_timeout,
        queue_change_visibility_reschedules_a_message,
        queue_requeues_a_received_message_in_its_place,
        queue_releases_what_is_held_for_an_endpoint,
        queue_accepts_a_stale_receipt_without_error,
        queue_redrives_to_its_dead_letter_queue_after_max_receives,
        queue_long_poll_wakes_on_a_send,
        queue_delays_a_message,
        subscriptions_are_stored_listed_and_scoped_by_account,
        subscriptions_are_written_only_on_the_version_read,
        events_are_deduplicated_per_account,
        deliveries_are_created_once_and_log_numbered_attempts,
        an_events_deliveries_are_listed_whether_or_not_the_event_lists_them,
        a_first_outcome_logs_its_delivery_and_a_first_try_success_is_kept_short,
        api_keys_are_found_by_hash,
        api_keys_are_listed_newest_first_by_account,
        api_keys_are_revoked_only_in_their_account,
        api_key_use_is_recorded_at_most_once_a_minute,
        api_keys_are_deleted_only_in_their_account,
        a_status_moves_only_from_the_state_it_was_read_in,
        queue_carries_messages_up_to_the_size_cap_and_splits_large_batches,
        overdue_lists_pending_deliveries_due_before_a_time,
        alert_settings_are_kept_per_account,
        alert_throttles_are_written_on_the_version_read_and_listed_when_due,
        jwt_key_rings_are_written_only_from_the_version_before,
    ],
}
