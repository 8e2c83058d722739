//! Fan-out over the in-memory stores: which deliveries an event becomes, and which of them
//! are put on the deliveries queue.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use app::handle_events;
use app::task_message;
use domain::delivery::{DeliveryStatus, DeliveryTask};
use domain::event::Event;
use domain::ids::{DeliveryId, EventId};
use serde_json::{json, Value};
use support::{
    account, delivery_id, event, failures, receive_all, record, sqs_event, subscription, Harness,
};

/// Hands `event` to fan-out as one events-queue message received `receive_count` times.
async fn fan_out(h: &Harness, message_id: &str, event: &Event, receive_count: u32) -> Vec<String> {
    let body = serde_json::to_string(event).unwrap();
    let response = handle_events(
        &h.services,
        sqs_event(vec![record(message_id, &body, receive_count)]),
    )
    .await;
    failures(&response)
}

/// The tasks waiting on the deliveries queue, by subscription id.
async fn queued_tasks(h: &Harness) -> Vec<DeliveryTask> {
    let mut tasks: Vec<DeliveryTask> = receive_all(&h.services.deliveries_queue)
        .await
        .iter()
        .flat_map(|m| task_message::parse(&m.body).unwrap().0)
        .collect();
    tasks.sort_by(|a, b| a.subscription_id.cmp(&b.subscription_id));
    tasks
}

/// The events of one events-queue batch to one subscription travel in one message (a pack,
/// see `task_message`), each other subscription's in its own; a failing endpoint's
/// deliveries each go alone, as its probe or held behind one.
#[tokio::test]
async fn a_batchs_deliveries_to_one_subscription_travel_in_one_message() {
    let h = Harness::new(&[]);
    let mut failing = subscription("acct_a", "wh_failing", &["call.*"]);
    failing.failing_since = Some(h.now());
    for sub in [
        subscription("acct_a", "wh_calls", &["call.*"]),
        subscription("acct_a", "wh_everything", &["*"]),
        failing,
    ] {
        h.services.subscriptions.put(&sub).await.unwrap();
    }
    let records: Vec<Value> = (0..5)
        .map(|i| {
            let e = event("acct_a", &format!("evt_{i}"), "call.ended");
            record(&format!("m{i}"), &serde_json::to_string(&e).unwrap(), 1)
        })
        .collect();
    assert!(failures(&handle_events(&h.services, sqs_event(records)).await).is_empty());

    let messages = receive_all(&h.services.deliveries_queue).await;
    let mut shapes: Vec<(String, bool, Vec<String>)> = messages
        .iter()
        .map(|m| {
            let (tasks, packed) = task_message::parse(&m.body).unwrap();
            let sub = tasks[0].subscription_id.to_string();
            assert!(tasks.iter().all(|t| t.subscription_id.as_str() == sub));
            (
                sub,
                packed,
                tasks.iter().map(|t| t.event_id.to_string()).collect(),
            )
        })
        .collect();
    shapes.sort();
    let events: Vec<String> = (0..5).map(|i| format!("evt_{i}")).collect();
    let mut expected = vec![
        ("wh_calls".to_string(), true, events.clone()),
        ("wh_everything".to_string(), true, events.clone()),
    ];
    expected.extend(
        events
            .iter()
            .map(|e| ("wh_failing".to_string(), false, vec![e.clone()])),
    );
    expected.sort();
    assert_eq!(shapes, expected);
}

#[tokio::test]
async fn an_event_becomes_one_delivery_per_matching_enabled_subscription() {
    let h = Harness::new(&[]);
    for sub in [
        subscription("acct_a", "wh_calls", &["call.*"]),
        subscription("acct_a", "wh_everything", &["*"]),
        subscription("acct_a", "wh_agents", &["agent.*"]),
        subscription("acct_a", "wh_started", &["call.started"]),
    ] {
        h.services.subscriptions.put(&sub).await.unwrap();
    }
    let ended = event("acct_a", "evt_1", "call.ended");

    assert!(fan_out(&h, "m1", &ended, 1).await.is_empty());

    // Nothing is logged yet: each delivery is, by its first outcome.
    assert!(h
        .services
        .deliveries
        .list_for_event(&account("acct_a"), &EventId::from_static("evt_1"))
        .await
        .unwrap()
        .is_empty());

    let tasks = queued_tasks(&h).await;
    let expected: BTreeSet<DeliveryId> = ["wh_calls", "wh_everything"]
        .iter()
        .map(|s| delivery_id("acct_a", "evt_1", s))
        .collect();
    assert_eq!(
        tasks
            .iter()
            .map(|t| t.delivery_id.clone())
            .collect::<BTreeSet<_>>(),
        expected
    );
    assert!(tasks
        .iter()
        .all(|t| t.created_at == Some(h.now()) && !t.recheck));
    assert_eq!(
        tasks
            .iter()
            .map(|t| t.subscription_id.as_str())
            .collect::<Vec<_>>(),
        ["wh_calls", "wh_everything"]
    );
    for t in &tasks {
        assert_eq!(
            t.delivery_id,
            delivery_id("acct_a", "evt_1", &t.subscription_id)
        );
        assert_eq!(t.payload.get(), ended.payload());
        assert_eq!(
            (t.event_id.as_str(), t.event_type.as_str()),
            ("evt_1", "call.ended")
        );
    }
}

/// Each delivery message holds the event's payload as it is: not escaped into a string,
/// which put a backslash before each of these quotes and doubled the message.
#[tokio::test]
async fn a_large_event_is_carried_as_it_is_in_each_delivery_message() {
    let h = Harness::new(&[]);
    for i in 0..10 {
        let sub = subscription("acct_a", &format!("wh_{i}"), &["*"]);
        h.services.subscriptions.put(&sub).await.unwrap();
    }
    let mut big = event("acct_a", "evt_big", "call.ended");
    big.data = json!({"quotes": "\"".repeat(200 * 1024)});
    let payload = big.payload();

    assert!(fan_out(&h, "m1", &big, 1).await.is_empty());

    let messages = receive_all(&h.services.deliveries_queue).await;
    assert_eq!(messages.len(), 10);
    for m in &messages {
        assert!(m.body.contains(&format!(r#""payload":{payload}"#)));
        assert!(m.body.len() < payload.len() + 1024, "{}", m.body.len());
        let task: DeliveryTask = serde_json::from_str(&m.body).unwrap();
        assert_eq!(task.payload.get(), payload);
    }
}

#[tokio::test]
async fn a_paused_subscription_gets_a_skipped_delivery_and_no_message() {
    let h = Harness::new(&[]);
    let mut paused = subscription("acct_a", "wh_paused", &["call.*"]);
    paused.enabled = false;
    h.services.subscriptions.put(&paused).await.unwrap();

    assert!(
        fan_out(&h, "m1", &event("acct_a", "evt_1", "call.ended"), 1)
            .await
            .is_empty()
    );

    let delivery = h
        .services
        .deliveries
        .get(
            &account("acct_a"),
            &delivery_id("acct_a", "evt_1", "wh_paused"),
        )
        .await
        .unwrap()
        .expect("a delivery of the paused subscription");
    assert_eq!(delivery.status, DeliveryStatus::Skipped);
    assert_eq!(delivery.last_error.as_deref(), Some("subscription paused"));
    assert!(
        queued_tasks(&h).await.is_empty(),
        "a paused endpoint was queued"
    );
}

/// An event fan-out ran before (its message received again, or the event posted again)
/// is sent again in full, each task marked for deliver to recheck; nothing is logged twice.
#[tokio::test]
async fn an_event_fanned_out_again_sends_its_tasks_to_be_rechecked() {
    let h = Harness::new(&[]);
    let mut paused = subscription("acct_a", "wh_paused", &["call.*"]);
    paused.enabled = false;
    for sub in [
        subscription("acct_a", "wh_1", &["call.*"]),
        subscription("acct_a", "wh_2", &["call.*"]),
        paused,
    ] {
        h.services.subscriptions.put(&sub).await.unwrap();
    }
    let ended = event("acct_a", "evt_1", "call.ended");
    assert!(fan_out(&h, "m1", &ended, 1).await.is_empty());
    let first = queued_tasks(&h).await;
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|t| !t.recheck));

    // The same message received again: its earlier pass may have died before sending.
    assert!(fan_out(&h, "m1", &ended, 2).await.is_empty());
    let resent = queued_tasks(&h).await;
    assert_eq!(
        resent
            .iter()
            .map(|t| (t.delivery_id.clone(), t.recheck))
            .collect::<Vec<_>>(),
        first
            .iter()
            .map(|t| (t.delivery_id.clone(), true))
            .collect::<Vec<_>>(),
        "resent under other webhook-ids, or not for a recheck"
    );

    // The event posted again: ingest enqueues it with `again`.
    let body = serde_json::to_string(&ended).unwrap();
    let again = format!("{},\"again\":true}}", &body[..body.len() - 1]);
    let response = handle_events(&h.services, sqs_event(vec![record("m2", &again, 1)])).await;
    assert!(failures(&response).is_empty());
    assert!(queued_tasks(&h).await.iter().all(|t| t.recheck));

    // The paused subscription's skipped delivery is logged once, whatever the passes.
    let deliveries = h
        .services
        .deliveries
        .list_for_event(&account("acct_a"), &EventId::from_static("evt_1"))
        .await
        .unwrap();
    assert_eq!(
        deliveries
            .iter()
            .map(|d| (d.subscription_id.as_str(), d.status))
            .collect::<Vec<_>>(),
        [("wh_paused", DeliveryStatus::Skipped)]
    );
}

#[tokio::test]
async fn another_accounts_subscriptions_never_match() {
    let h = Harness::new(&[]);
    for sub in [
        subscription("acct_a", "wh_1", &["call.*"]),
        subscription("acct_b", "wh_1", &["*"]),
        subscription("acct_b", "wh_b", &["call.ended"]),
    ] {
        h.services.subscriptions.put(&sub).await.unwrap();
    }

    assert!(
        fan_out(&h, "m1", &event("acct_a", "evt_1", "call.ended"), 1)
            .await
            .is_empty()
    );

    let tasks = queued_tasks(&h).await;
    assert_eq!(
        tasks
            .iter()
            .map(|t| (t.account_id.as_str(), t.subscription_id.as_str()))
            .collect::<Vec<_>>(),
        [("acct_a", "wh_1")]
    );
    assert!(h
        .services
        .deliveries
        .list_for_event(&account("acct_b"), &EventId::from_static("evt_1"))
        .await
        .unwrap()
        .is_empty());

    // An account without subscriptions: nothing to do, and nothing failed.
    assert!(
        fan_out(&h, "m2", &event("acct_c", "evt_2", "call.ended"), 1)
            .await
            .is_empty()
    );
    assert!(queued_tasks(&h).await.is_empty());
}

#[tokio::test]
async fn an_unreadable_event_message_is_set_aside_and_the_rest_fan_out() {
    let h = Harness::new(&[]);
    h.services
        .subscriptions
        .put(&subscription("acct_a", "wh_1", &["*"]))
        .await
        .unwrap();
    let good = serde_json::to_string(&event("acct_a", "evt_1", "call.ended")).unwrap();

    let response = handle_events(
        &h.services,
        sqs_event(vec![
            record("bad", "{not json", 1),
            record("good", &good, 1),
        ]),
    )
    .await;

    // Received again it would fail the same way: moved to the dead-letter queue at once.
    assert!(failures(&response).is_empty());
    let set_aside = receive_all(&h.services.dead_letter_queue).await;
    assert_eq!(set_aside.len(), 1);
    let set_aside: Value = serde_json::from_str(&set_aside[0].body).unwrap();
    assert_eq!(
        (
            &set_aside["unprocessable"]["message_id"],
            &set_aside["unprocessable"]["body"]
        ),
        (&json!("bad"), &json!("{not json"))
    );
    assert_eq!(queued_tasks(&h).await.len(), 1);
}

/// A failing endpoint's new deliveries start parked for about 30 s: received now, they
/// would only be parked, ahead of every other account's new deliveries. A healthy
/// endpoint's go out at once. So on SQS (the fan-out function knows no probes).
#[tokio::test]
async fn a_failing_endpoints_new_deliveries_start_parked() {
    let h = Harness::like_sqs(&[]);
    let healthy = subscription("acct_a", "wh_up", &["*"]);
    let mut failing = subscription("acct_a", "wh_down", &["*"]);
    failing.failing_since = Some(h.now());
    for sub in [&healthy, &failing] {
        h.services.subscriptions.put(sub).await.unwrap();
    }
    assert!(
        fan_out(&h, "m1", &event("acct_a", "evt_1", "call.ended"), 1)
            .await
            .is_empty()
    );

    let now: Vec<_> = queued_tasks(&h).await;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].subscription_id, healthy.id);
    assert_eq!(now[0].parkings, 0);

    h.clock.advance(std::time::Duration::from_secs(23));
    assert!(queued_tasks(&h).await.is_empty(), "back before its parking");
    h.clock.advance(std::time::Duration::from_secs(14));
    let later = queued_tasks(&h).await;
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].subscription_id, failing.id);
    assert_eq!(later[0].parkings, 1);
    // Like any other, it is logged by its first outcome, not before.
    assert!(h
        .services
        .deliveries
        .get(&account("acct_a"), &later[0].delivery_id)
        .await
        .unwrap()
        .is_none());
}

/// Where the queue releases held deliveries (the runner, whose fan-out shares the limiter
/// with deliver), a failing endpoint's new delivery goes at once when no probe of it is in
/// flight: it is the probe. While one is, the new ones are held for the endpoint, with a
/// backstop of about 2 min.
#[tokio::test]
async fn a_failing_endpoints_new_delivery_is_its_probe_or_is_held_behind_one() {
    let h = Harness::new(&[]);
    let mut failing = subscription("acct_a", "wh_down", &["*"]);
    failing.failing_since = Some(h.now());
    h.services.subscriptions.put(&failing).await.unwrap();
    let e = event("acct_a", "evt_1", "call.ended");
    assert!(fan_out(&h, "m1", &e, 1).await.is_empty());
    let now = queued_tasks(&h).await;
    assert_eq!((now.len(), now[0].parkings), (1, 0));

    let probe = h
        .services
        .limiter
        .try_acquire(&failing, std::time::Instant::now())
        .unwrap();
    let e = event("acct_a", "evt_2", "call.ended");
    assert!(fan_out(&h, "m2", &e, 1).await.is_empty());
    assert!(queued_tasks(&h).await.is_empty(), "sent behind the probe");
    h.clock.advance(std::time::Duration::from_secs(95));
    assert!(
        queued_tasks(&h).await.is_empty(),
        "back before its backstop"
    );
    drop(probe);
    // Held for this endpoint: a release (deliver's, when a probe succeeds) brings it back.
    let release = || {
        h.services
            .deliveries_queue
            .release_held(failing.id.as_str(), 100)
    };
    assert_eq!(release().await.unwrap(), 1);
    let later = queued_tasks(&h).await;
    assert_eq!(later.len(), 1);
    assert_eq!(
        (later[0].event_id.as_str(), later[0].parkings),
        ("evt_2", 1)
    );
    assert_eq!(
        release().await.unwrap(),
        0,
        "a received message is no longer held"
    );

    // Unreleased, it would have come back at its backstop, about 2 min.
    let e = event("acct_a", "evt_3", "call.ended");
    let probe = h
        .services
        .limiter
        .try_acquire(&failing, std::time::Instant::now())
        .unwrap();
    assert!(fan_out(&h, "m3", &e, 1).await.is_empty());
    drop(probe);
    h.clock.advance(std::time::Duration::from_secs(95));
    assert!(
        queued_tasks(&h).await.is_empty(),
        "back before its backstop"
    );
    h.clock.advance(std::time::Duration::from_secs(50));
    let later = queued_tasks(&h).await;
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].event_id.as_str(), "evt_3");
}

/// Where fan-out shares the limiter with deliver (the runner), an endpoint not heard from yet
/// whose account's probes have been hanging past a second gets its new deliveries parked at
/// once, as deliver would park them on receipt; another account's go out at once.
#[tokio::test]
async fn an_unproven_endpoints_new_deliveries_start_parked_while_its_accounts_probes_hang() {
    let h = Harness::new(&[]);
    let new = subscription("acct_a", "wh_new", &["*"]);
    let other = subscription("acct_b", "wh_b", &["*"]);
    for sub in [&new, &other] {
        h.services.subscriptions.put(sub).await.unwrap();
    }
    let started = std::time::Instant::now()
        .checked_sub(app::limiter::PROBE_STALLED_AFTER * 2)
        .unwrap();
    let hanging: Vec<_> = (0..app::limiter::PROBES_PER_ACCOUNT)
        .map(|i| {
            let sub = subscription("acct_a", &format!("wh_hang_{i}"), &["*"]);
            h.services.limiter.try_acquire(&sub, started).unwrap()
        })
        .collect();
    for (i, account) in ["acct_a", "acct_b"].iter().enumerate() {
        let e = event(account, &format!("evt_{i}"), "call.ended");
        assert!(fan_out(&h, &format!("m{i}"), &e, 1).await.is_empty());
    }
    let now = queued_tasks(&h).await;
    assert_eq!(now.len(), 1);
    assert_eq!((&now[0].subscription_id, now[0].parkings), (&other.id, 0));

    // Once the probes are over, the account's new deliveries go out at once again.
    drop(hanging);
    let e = event("acct_a", "evt_2", "call.ended");
    assert!(fan_out(&h, "m2", &e, 1).await.is_empty());
    let now = queued_tasks(&h).await;
    assert_eq!(now.len(), 1);
    assert_eq!((&now[0].subscription_id, now[0].parkings), (&new.id, 0));

    // Held for the endpoint (released by its first success), with the short parking as
    // its backstop: the endpoint may be healthy, only waiting for a probe slot.
    h.clock.advance(std::time::Duration::from_secs(37));
    let later = queued_tasks(&h).await;
    assert_eq!(later.len(), 1);
    assert_eq!((&later[0].subscription_id, later[0].parkings), (&new.id, 1));
}

#[tokio::test]
async fn an_operational_event_never_goes_to_the_endpoint_it_is_about() {
    let h = Harness::new(&[]);
    for (id, types) in [("wh_about", &["*"][..]), ("wh_other", &["webhook.*"][..])] {
        h.services
            .subscriptions
            .put(&subscription("acct_a", id, types))
            .await
            .unwrap();
    }
    let mut failing = event("acct_a", "evt_op", "webhook.failing");
    failing.data = serde_json::json!({
        "webhook_id": "wh_about", "url": "https://wh_about.example.com/hook",
        "consecutive_failures": 5, "threshold": 5, "failing_since": "2026-11-21T12:00:00Z"
    });
    assert!(fan_out(&h, "m1", &failing, 1).await.is_empty());
    let to: Vec<String> = queued_tasks(&h)
        .await
        .iter()
        .map(|t| t.subscription_id.to_string())
        .collect();
    assert_eq!(to, ["wh_other"]);

    // Any other event names no endpoint: both that want it get it.
    let mut test = event("acct_a", "evt_test", "webhook.test");
    test.data = serde_json::json!({"message": "m", "webhook_id": "wh_about"});
    fan_out(&h, "m2", &test, 1).await;
    assert_eq!(queued_tasks(&h).await.len(), 2);
}

/// Ingest fans out an account with few subscriptions itself, straight onto the deliveries
/// queue; an account with more, and every operational event, go through the events queue.
#[tokio::test]
async fn ingest_fans_out_an_account_with_few_subscriptions_itself() {
    use app::ingest::{store_and_fan_out, DIRECT_FAN_OUT_MAX_SUBSCRIPTIONS};
    let listings: Listings = Arc::default();
    let h = Harness::with_stores(&[], |stores| {
        stores.events = Arc::new(RecordingListings {
            inner: stores.events.clone(),
            listings: listings.clone(),
        })
    });
    let mut paused = subscription("acct_small", "wh_paused", &["call.*"]);
    paused.enabled = false;
    for sub in [
        subscription("acct_small", "wh_1", &["call.*"]),
        subscription("acct_small", "wh_2", &["agent.*"]),
        paused,
    ] {
        h.services.subscriptions.put(&sub).await.unwrap();
    }
    for i in 0..=DIRECT_FAN_OUT_MAX_SUBSCRIPTIONS {
        let sub = subscription("acct_large", &format!("wh_{i:02}"), &["call.*"]);
        h.services.subscriptions.put(&sub).await.unwrap();
    }
    let small = event("acct_small", "evt_s", "call.ended");
    let large = event("acct_large", "evt_l", "call.ended");
    let accepted = store_and_fan_out(&h.services, &[small.clone(), large.clone()])
        .await
        .unwrap();
    assert!(accepted.iter().all(|a| !a.duplicate));

    let tasks = queued_tasks(&h).await;
    assert_eq!(
        tasks
            .iter()
            .map(|t| (t.subscription_id.as_str(), t.recheck, t.listed_on_event))
            .collect::<Vec<_>>(),
        [("wh_1", false, true)],
        "the small account's one matching, enabled endpoint, listed on its event"
    );
    // The store was told which subscriptions ingest fanned the small account's event out
    // to (the paused one too: its skipped delivery is logged), and left the large one's to
    // fan-out.
    assert_eq!(
        std::mem::take(&mut *listings.lock().unwrap()),
        [
            (
                "evt_s".to_string(),
                Some(vec!["wh_1".to_string(), "wh_paused".to_string()])
            ),
            ("evt_l".to_string(), None)
        ]
    );
    let skipped = h
        .services
        .deliveries
        .list_for_event(&account("acct_small"), &EventId::from_static("evt_s"))
        .await
        .unwrap();
    assert_eq!(
        skipped
            .iter()
            .map(|d| (d.subscription_id.as_str(), d.status))
            .collect::<Vec<_>>(),
        [("wh_paused", DeliveryStatus::Skipped)]
    );
    let queued: Vec<Event> = receive_all(&h.services.events_queue)
        .await
        .iter()
        .map(|m| serde_json::from_str(&m.body).unwrap())
        .collect();
    assert_eq!(
        queued,
        std::slice::from_ref(&large),
        "only the large account's event is left to fan-out"
    );
    // Fan-out's tasks are not listed on their event: it was stored before, without them.
    assert!(fan_out(&h, "m_large", &large, 1).await.is_empty());
    let from_fan_out = queued_tasks(&h).await;
    assert_eq!(from_fan_out.len(), DIRECT_FAN_OUT_MAX_SUBSCRIPTIONS + 1);
    assert!(from_fan_out.iter().all(|t| !t.listed_on_event));

    // Posted again: fanned out again, for deliver to recheck.
    let accepted = store_and_fan_out(&h.services, &[small]).await.unwrap();
    assert!(accepted[0].duplicate);
    let again = queued_tasks(&h).await;
    assert_eq!(again.len(), 1);
    assert!(again[0].recheck);
    // The stored event keeps the list it was created with; this copy may differ from it.
    assert!(!again[0].listed_on_event);

    // An operational event goes to fan-out, which sends its alert e-mail.
    let mut failing = event("acct_small", "evt_op", "webhook.failing");
    failing.data = serde_json::json!({
        "webhook_id": "wh_1", "url": "https://wh_1.example.com/hook",
        "consecutive_failures": 5, "threshold": 5, "failing_since": "2026-11-21T12:00:00Z"
    });
    store_and_fan_out(&h.services, &[failing]).await.unwrap();
    assert!(queued_tasks(&h).await.is_empty());
    assert_eq!(receive_all(&h.services.events_queue).await.len(), 1);
}

/// Each event's id, and the subscription ids it was stored listing (sorted).
type Listings = Arc<Mutex<Vec<(String, Option<Vec<String>>)>>>;

/// An event store that records the lists `insert_batch_listing` is given.
struct RecordingListings {
    inner: Arc<dyn app::ports::EventStore>,
    listings: Listings,
}

#[async_trait::async_trait]
impl app::ports::EventStore for RecordingListings {
    async fn insert_batch(&self, events: &[Event]) -> app::Result<Vec<app::ports::EventInsert>> {
        self.inner.insert_batch(events).await
    }

    async fn insert_batch_listing(
        &self,
        events: &[Event],
        listed: &[Option<Vec<domain::ids::SubscriptionId>>],
    ) -> app::Result<Vec<app::ports::EventInsert>> {
        let recorded = events.iter().zip(listed).map(|(event, subs)| {
            let subs = subs.as_ref().map(|l| {
                let mut ids: Vec<String> = l.iter().map(|s| s.to_string()).collect();
                ids.sort();
                ids
            });
            (event.id.to_string(), subs)
        });
        self.listings.lock().unwrap().extend(recorded);
        self.inner.insert_batch_listing(events, listed).await
    }

    async fn get(
        &self,
        account_id: &domain::ids::AccountId,
        id: &EventId,
    ) -> app::Result<Option<Event>> {
        self.inner.get(account_id, id).await
    }

    async fn list(
        &self,
        account_id: &domain::ids::AccountId,
        event_type: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> app::Result<app::ports::Page<Event>> {
        self.inner.list(account_id, event_type, cursor, limit).await
    }
}
