//! Deliver over the in-memory stores: each message is received from the deliveries queue
//! and handed over as Lambda would, so what the use case does to the queue (a retry's
//! visibility, a dead letter's move) is seen on the queue itself.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use app::handle_deliveries;
use app::ports::{OsRandom, OutgoingMessage, Queue, QueueMessage};
use app::task_message::{self, Packer};
use domain::alerts::AlertSettings;
use domain::delivery::{Delivery, DeliveryStatus, DeliveryTask, Payload};
use domain::event::Event;
use domain::ids::{DeliveryId, SubscriptionId};
use domain::signing;
use domain::subscription::{SigningSecret, Subscription};
use support::{
    account, at, event, failures, receive_all, record, records_of, sqs_event, subscription,
    Harness, START_MS,
};

const DAY: Duration = Duration::from_secs(86_400);

/// Saves `sub` and puts one delivery of a `call.ended` event to it on the deliveries
/// queue, as fan-out would (which logs nothing: the first outcome does).
async fn enqueue(h: &Harness, sub: &Subscription) -> DeliveryTask {
    h.services.subscriptions.put(sub).await.unwrap();
    let event = event(&sub.account_id, "evt_1", "call.ended");
    let task = Delivery::new(&event, sub, h.now()).task(Payload::of(&event));
    send(h, &task).await;
    task
}

/// Puts `task` on the deliveries queue.
async fn send(h: &Harness, task: &DeliveryTask) {
    h.services
        .deliveries_queue
        .send_batch(vec![OutgoingMessage {
            id: "0".into(),
            body: serde_json::to_string(task).unwrap(),
            delay: Duration::ZERO,
            held_for: None,
        }])
        .await
        .unwrap();
}

/// Receives every visible delivery message and hands them to deliver as one batch; says
/// what was received and which message ids the batch response reports as failed.
async fn deliver_visible(h: &Harness) -> (Vec<QueueMessage>, Vec<String>) {
    let received = receive_all(&h.services.deliveries_queue).await;
    let response = handle_deliveries(&h.services, sqs_event(records_of(&received))).await;
    (received, failures(&response))
}

async fn delivery(h: &Harness, task: &DeliveryTask) -> Delivery {
    h.services
        .deliveries
        .get(&task.account_id, &task.delivery_id)
        .await
        .unwrap()
        .expect("the delivery is logged")
}

/// (attempt number, status code) of each logged attempt, oldest first.
async fn attempts(h: &Harness, task: &DeliveryTask) -> Vec<(u32, Option<u16>)> {
    h.services
        .deliveries
        .attempts(&task.account_id, &task.delivery_id)
        .await
        .unwrap()
        .iter()
        .map(|a| (a.attempt, a.status_code))
        .collect()
}

#[tokio::test]
async fn a_2xx_answer_succeeds_and_the_message_is_acknowledged() {
    let h = Harness::new(&[200]);
    let sub = subscription("acct_a", "wh_1", &["call.*"]);
    let task = enqueue(&h, &sub).await;

    let (received, failed) = deliver_visible(&h).await;

    assert_eq!(received.len(), 1);
    assert!(failed.is_empty(), "a delivered message was reported failed");
    let d = delivery(&h, &task).await;
    assert_eq!(
        (d.status, d.attempt_count, d.next_attempt_at, d.last_error),
        (DeliveryStatus::Succeeded, 1, None, None)
    );
    assert_eq!(attempts(&h, &task).await, [(1, Some(200))]);
    let sent = h.http.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].url, sub.url);
    assert_eq!(&sent[0].body[..], task.payload.as_bytes());
    // Logged from its outcome, with when fan-out made it; kept in short.
    assert_eq!(d.created_at, task.created_at.unwrap());
    let logged = h
        .services
        .deliveries
        .attempts(&task.account_id, &task.delivery_id)
        .await
        .unwrap();
    assert_eq!(
        (logged[0].response_body.as_deref(), logged[0].latency_ms),
        (None, 12)
    );
}

/// Fan-out sends an event's tasks again with `recheck` when it ran that event before; each
/// is sent only if its delivery still has to be made.
#[tokio::test]
async fn a_task_sent_again_delivers_only_what_is_still_to_do() {
    let h = Harness::new(&[200, 500, 200]);
    let done_sub = subscription("acct_a", "wh_done", &["call.*"]);
    let retrying_sub = subscription("acct_a", "wh_retrying", &["call.*"]);
    let lost_sub = subscription("acct_a", "wh_lost", &["call.*"]);
    let done = enqueue(&h, &done_sub).await;
    assert_eq!(deliver_visible(&h).await.1.len(), 0);
    let retrying = enqueue(&h, &retrying_sub).await;
    let (_, failed) = deliver_visible(&h).await;
    assert_eq!(failed.len(), 1, "the 500 is retried by its own message");
    assert_eq!(h.http.sent().len(), 2);
    // Never sent: its message was lost before its turn (the store knows nothing of it).
    h.services.subscriptions.put(&lost_sub).await.unwrap();
    let event = event("acct_a", "evt_1", "call.ended");
    let lost = Delivery::new(&event, &lost_sub, h.now()).task(Payload::of(&event));

    for task in [&done, &retrying, &lost] {
        send(
            &h,
            &DeliveryTask {
                recheck: true,
                ..(*task).clone()
            },
        )
        .await;
    }
    let (received, failed) = deliver_visible(&h).await;
    assert_eq!(received.len(), 3);
    assert!(failed.is_empty(), "{failed:?}");
    let sent = h.http.sent();
    assert_eq!(sent.len(), 3, "only the lost one is sent");
    assert_eq!(sent[2].url, lost_sub.url);
    assert_eq!(attempts(&h, &done).await, [(1, Some(200))]);
    assert_eq!(attempts(&h, &retrying).await, [(1, Some(500))]);
    assert_eq!(delivery(&h, &lost).await.status, DeliveryStatus::Succeeded);
}

/// An event fanned out before delivery ids began with their event's receipt time, and
/// posted again after: its tasks carry the new ids, and its deliveries are logged under the
/// old ones. What was sent is found there, and not sent again under another `webhook-id`.
#[tokio::test]
async fn a_task_sent_again_finds_its_delivery_under_the_old_id_shape() {
    let h = Harness::new(&[200]);
    let sent_sub = subscription("acct_a", "wh_sent", &["call.*"]);
    let untried_sub = subscription("acct_a", "wh_untried", &["call.*"]);
    h.services.subscriptions.put(&sent_sub).await.unwrap();
    h.services.subscriptions.put(&untried_sub).await.unwrap();
    let event = event("acct_a", "evt_1", "call.ended");
    let logged_before = |sub: &domain::subscription::Subscription, status, attempts| {
        let mut d = Delivery::new(&event, sub, h.now());
        d.id = DeliveryId::without_receipt_time(&event.account_id, &event.id, &sub.id);
        d.status = status;
        d.attempt_count = attempts;
        d
    };
    h.services
        .deliveries
        .create_batch(&[
            logged_before(&sent_sub, DeliveryStatus::Succeeded, 1),
            // Made by fan-out before deliveries were logged at their first outcome, never
            // tried: still to send.
            logged_before(&untried_sub, DeliveryStatus::Pending, 0),
        ])
        .await
        .unwrap();
    for sub in [&sent_sub, &untried_sub] {
        let task = Delivery::new(&event, sub, h.now()).task(Payload::of(&event));
        assert_ne!(
            task.delivery_id,
            DeliveryId::without_receipt_time(&event.account_id, &event.id, &sub.id)
        );
        send(
            &h,
            &DeliveryTask {
                recheck: true,
                ..task
            },
        )
        .await;
    }
    let (received, failed) = deliver_visible(&h).await;
    assert_eq!(received.len(), 2);
    assert!(failed.is_empty(), "{failed:?}");
    let sent = h.http.sent();
    assert_eq!(sent.len(), 1, "only the untried one is sent");
    assert_eq!(sent[0].url, untried_sub.url);
}

#[tokio::test]
async fn a_5xx_answer_keeps_the_delivery_pending_and_retries_it_on_schedule() {
    let h = Harness::new(&[500, 200]);
    let task = enqueue(&h, &subscription("acct_a", "wh_1", &["call.*"])).await;

    let (received, failed) = deliver_visible(&h).await;

    assert_eq!(failed, [received[0].message_id.clone()]);
    let d = delivery(&h, &task).await;
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert_eq!(d.attempt_count, 1);
    assert_eq!(d.last_error.as_deref(), Some("endpoint answered 500"));
    // The default schedule's first step: 5 s, ±20 %.
    let retry_in = d.next_attempt_at.expect("a retry is scheduled").as_millis() - START_MS;
    assert!(
        (4_000..=6_000).contains(&retry_in),
        "retry in {retry_in} ms"
    );

    // Hidden until its retry (well before the queue's own 120 s), then back.
    h.clock.advance(Duration::from_secs(3));
    assert!(receive_all(&h.services.deliveries_queue).await.is_empty());
    h.clock.advance(Duration::from_secs(4));
    let (again, failed) = deliver_visible(&h).await;
    assert_eq!(again.len(), 1, "the retry did not come back on schedule");
    assert_eq!(again[0].receive_count, 2);
    assert!(failed.is_empty());
    assert_eq!(delivery(&h, &task).await.status, DeliveryStatus::Succeeded);
    assert_eq!(attempts(&h, &task).await, [(1, Some(500)), (2, Some(200))]);
}

#[tokio::test]
async fn an_exhausted_schedule_makes_the_delivery_dead_and_dead_letters_it() {
    let h = Harness::new(&[500, 500]);
    let mut sub = subscription("acct_a", "wh_1", &["call.*"]);
    sub.max_attempts = Some(2);
    sub.retry_schedule = Some(vec![1]);
    let task = enqueue(&h, &sub).await;

    let (_, failed) = deliver_visible(&h).await;
    assert_eq!(failed.len(), 1, "the first failure was not retried");
    h.clock.advance(Duration::from_secs(2));
    let (last, failed) = deliver_visible(&h).await;

    assert_eq!(last.len(), 1);
    assert!(
        failed.is_empty(),
        "a dead-lettered message was reported failed"
    );
    let d = delivery(&h, &task).await;
    assert_eq!((d.status, d.attempt_count), (DeliveryStatus::Dead, 2));
    let dead = h
        .services
        .deliveries
        .list_dead(&account("acct_a"), None, 10)
        .await
        .unwrap();
    assert_eq!(
        dead.items.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        [task.delivery_id.as_str()]
    );
    let letters = receive_all(&h.services.dead_letter_queue).await;
    assert_eq!(letters.len(), 1);
    let letter: Value = serde_json::from_str(&letters[0].body).unwrap();
    assert_eq!(letter["delivery"]["delivery_id"], json!(task.delivery_id));
    assert_eq!(
        letter["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["attempt"].clone(), a["status_code"].clone()))
            .collect::<Vec<_>>(),
        [(json!(1), json!(500)), (json!(2), json!(500))]
    );
    // Moved, not left to come back: the deliveries queue no longer holds it.
    h.clock.advance(DAY);
    assert!(receive_all(&h.services.deliveries_queue).await.is_empty());
}

#[tokio::test]
async fn a_410_answer_fails_the_delivery_and_disables_the_endpoint() {
    let h = Harness::new(&[410]);
    let task = enqueue(&h, &subscription("acct_a", "wh_1", &["call.*"])).await;

    let (_, failed) = deliver_visible(&h).await;

    assert!(failed.is_empty(), "a 410 was retried");
    let d = delivery(&h, &task).await;
    assert_eq!(
        (d.status, d.attempt_count, d.next_attempt_at),
        (DeliveryStatus::Failed, 1, None)
    );
    assert_eq!(d.last_error.as_deref(), Some("endpoint answered 410"));
    let sub = h
        .services
        .subscriptions
        .get(&account("acct_a"), &SubscriptionId::from_static("wh_1"))
        .await
        .unwrap()
        .unwrap();
    assert!(!sub.enabled, "a gone endpoint stayed enabled");
    assert!(sub.disabled_reason.unwrap().contains("410"));
    // The account is told, by an event of its own.
    let announced = receive_all(&h.services.events_queue).await;
    assert_eq!(announced.len(), 1);
    let announced: Event = serde_json::from_str(&announced[0].body).unwrap();
    assert_eq!(
        (announced.event_type.as_str(), &announced.data["reason"]),
        ("webhook.disabled", &json!("gone"))
    );
}

#[tokio::test]
async fn every_request_is_signed_with_each_active_secret() {
    let h = Harness::new(&[200]);
    let mut sub = subscription("acct_a", "wh_1", &["call.*"]);
    // A rotated-out secret signs until it expires; an expired one no longer does.
    let (current, rotated, expired) = (
        signing::generate_secret(&OsRandom),
        signing::generate_secret(&OsRandom),
        signing::generate_secret(&OsRandom),
    );
    sub.secrets = vec![
        SigningSecret {
            secret: current.clone(),
            expires_at: None,
        },
        SigningSecret {
            secret: rotated.clone(),
            expires_at: Some(at(START_MS + 60_000)),
        },
        SigningSecret {
            secret: expired.clone(),
            expires_at: Some(at(START_MS - 1)),
        },
    ];
    let task = enqueue(&h, &sub).await;

    deliver_visible(&h).await;

    let sent = h.http.sent();
    assert_eq!(sent.len(), 1);
    let header = |name: &str| {
        sent[0]
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} header"))
    };
    assert_eq!(header("webhook-id"), task.delivery_id);
    let timestamp = START_MS / 1000;
    assert_eq!(header("webhook-timestamp"), timestamp.to_string());
    let signatures = header("webhook-signature");
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    let verify = |secret: &str| {
        signing::verify(
            secret,
            &task.delivery_id,
            timestamp,
            &sent[0].body,
            &signatures,
            timestamp,
            300,
        )
    };
    verify(&current).expect("signed with the current secret");
    verify(&rotated).expect("signed with the rotated-out secret");
    assert!(verify(&expired).is_err(), "signed with an expired secret");
}

/// A message fan-out wrote before tasks carried their payload as JSON (a string holding
/// it, every quote escaped) is still delivered after a deploy: the same bytes, signed.
#[tokio::test]
async fn a_task_queued_with_its_payload_as_a_string_is_delivered_byte_for_byte() {
    let h = Harness::new(&[200]);
    let sub = subscription("acct_a", "wh_1", &["call.*"]);
    let task = enqueue(&h, &sub).await;
    let received = receive_all(&h.services.deliveries_queue).await;
    let mut old: Value = serde_json::from_str(&received[0].body).unwrap();
    old["payload"] = Value::String(task.payload.get().to_string());
    let old = serde_json::to_string(&old).unwrap();
    assert!(old.contains(r#""payload":"{\"id\":"#), "{old}");
    let mut records = records_of(&received);
    records[0]["body"] = json!(old);

    let response = handle_deliveries(&h.services, sqs_event(records)).await;

    assert!(failures(&response).is_empty());
    assert_eq!(delivery(&h, &task).await.status, DeliveryStatus::Succeeded);
    let sent = h.http.sent();
    assert_eq!(sent.len(), 1);
    let payload = event("acct_a", "evt_1", "call.ended").payload();
    assert_eq!(&sent[0].body[..], payload.as_bytes());
    let header = |name: &str| {
        sent[0]
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let timestamp = START_MS / 1000;
    signing::verify(
        &sub.secrets[0].secret,
        &task.delivery_id,
        timestamp,
        payload.as_bytes(),
        &header("webhook-signature"),
        timestamp,
        300,
    )
    .expect("signed over the payload's bytes");
}

#[tokio::test]
async fn an_unreadable_delivery_message_is_set_aside_and_the_rest_delivered() {
    let h = Harness::new(&[200]);
    enqueue(&h, &subscription("acct_a", "wh_1", &["call.*"])).await;
    let mut records = records_of(&receive_all(&h.services.deliveries_queue).await);
    records.push(record("bad", "{\"delivery_id\": 7}", 1));

    let response = handle_deliveries(&h.services, sqs_event(records)).await;

    // Received again it would fail the same way: moved to the dead-letter queue at once.
    assert!(failures(&response).is_empty());
    let set_aside = receive_all(&h.services.dead_letter_queue).await;
    assert_eq!(set_aside.len(), 1);
    let set_aside: Value = serde_json::from_str(&set_aside[0].body).unwrap();
    assert_eq!(set_aside["unprocessable"]["message_id"], json!("bad"));
    assert_eq!(
        h.http.sent().len(),
        1,
        "the readable message was not delivered"
    );
}

/// A dead-letter queue that takes nothing.
struct RefusingQueue;

#[async_trait]
impl Queue for RefusingQueue {
    async fn send_batch(&self, _: Vec<OutgoingMessage>) -> app::Result<()> {
        Err(app::Error::queue("the queue is unavailable"))
    }

    async fn receive(&self, _: usize, _: Duration) -> app::Result<Vec<QueueMessage>> {
        Ok(Vec::new())
    }

    async fn delete_batch(&self, _: Vec<String>) -> app::Result<()> {
        Ok(())
    }

    async fn change_visibility_batch(&self, _: Vec<(String, Duration)>) -> app::Result<()> {
        Ok(())
    }

    fn releases_held(&self) -> bool {
        false
    }

    async fn release_held(&self, _: &str, _: u32) -> app::Result<usize> {
        Ok(0)
    }
}

#[tokio::test]
async fn an_unreadable_message_that_cannot_be_set_aside_is_listed_in_batch_item_failures() {
    let h = Harness::with_stores(&[], |stores| {
        stores.dead_letter_queue = Arc::new(RefusingQueue);
    });

    let response = handle_deliveries(
        &h.services,
        sqs_event(vec![
            record("not-json", "{not json", 1),
            record("not-a-task", "{\"delivery_id\": 7}", 3),
        ]),
    )
    .await;

    assert_eq!(failures(&response), ["not-json", "not-a-task"]);
    assert!(h.http.sent().is_empty());
}

#[tokio::test]
async fn a_delivery_logged_under_another_account_drops_its_own_message_not_the_batch() {
    let h = Harness::new(&[200, 500]);
    let sub = subscription("acct_a", "wh_1", &["call.*"]);
    let kept = enqueue(&h, &sub).await;
    // A second message naming a delivery id another account's delivery has (a forged or
    // corrupt task): the log refuses its outcome.
    let mut foreign = kept.clone();
    foreign.delivery_id = DeliveryId::from_static("dlv_foreign");
    let mut theirs = Delivery::new(
        &event("acct_b", "evt_b", "call.ended"),
        &subscription("acct_b", "wh_b", &["call.*"]),
        h.now(),
    );
    theirs.id = foreign.delivery_id.clone();
    theirs.status = DeliveryStatus::Skipped;
    h.services
        .deliveries
        .create_batch(&[theirs.clone()])
        .await
        .unwrap();
    send(&h, &foreign).await;

    let (received, failed) = deliver_visible(&h).await;

    assert_eq!(received.len(), 2);
    let kept_message = received
        .iter()
        .find(|m| m.body.contains(kept.delivery_id.as_str()))
        .unwrap();
    let kept_failed = failed.contains(&kept_message.message_id);
    // The kept delivery's outcome was logged, whichever answer it got.
    let d = delivery(&h, &kept).await;
    assert_eq!(d.attempt_count, 1, "{d:?}");
    assert_eq!(kept_failed, d.status == DeliveryStatus::Pending);
    // The refused one is not retried for ever: acknowledged, so the event source mapping
    // deletes it (done here as the mapping would).
    assert_eq!(failed.len(), usize::from(kept_failed), "{failed:?}");
    acknowledge(&h, &received, &failed).await;
    h.clock.advance(DAY);
    let left = receive_all(&h.services.deliveries_queue).await;
    assert!(
        left.iter().all(|m| !m.body.contains("dlv_foreign")),
        "{left:?}"
    );
    // The other account's delivery is as it was.
    assert_eq!(
        h.services
            .deliveries
            .get(&theirs.account_id, &theirs.id)
            .await
            .unwrap(),
        Some(theirs)
    );
}

#[tokio::test]
async fn a_retry_that_would_outlive_its_message_is_a_dead_letter_now() {
    let h = Harness::new(&[500, 500]);
    let task = enqueue(&h, &subscription("acct_a", "wh_1", &["call.*"])).await;
    let received = receive_all(&h.services.deliveries_queue).await;
    let mut records = records_of(&received);
    // Sent 13 days ago, less a second: the 5 s retry would come after its retention.
    let sent_at = START_MS - domain::retry::MAX_RETRY_HORIZON.as_millis() as i64 + 1_000;
    records[0]["attributes"]["SentTimestamp"] = json!(sent_at.to_string());

    let response = handle_deliveries(&h.services, sqs_event(records)).await;

    assert!(failures(&response).is_empty(), "retried past its retention");
    let d = delivery(&h, &task).await;
    assert_eq!(
        (d.status, d.attempt_count),
        (DeliveryStatus::Dead, 1),
        "{d:?}"
    );
    assert_eq!(receive_all(&h.services.dead_letter_queue).await.len(), 1);

    // A message sent just now is retried as usual.
    let h = Harness::new(&[500]);
    enqueue(&h, &subscription("acct_a", "wh_1", &["call.*"])).await;
    let received = receive_all(&h.services.deliveries_queue).await;
    let mut records = records_of(&received);
    records[0]["attributes"]["SentTimestamp"] = json!(START_MS.to_string());
    let response = handle_deliveries(&h.services, sqs_event(records)).await;
    assert_eq!(failures(&response).len(), 1);
}

/// A failing endpoint gets one attempt at a time; the deliveries behind its probe are parked
/// for 30 s, then longer each time, spending no attempt, instead of cycling through the queue
/// every second ahead of other accounts' deliveries. So on SQS, which cannot release them.
#[tokio::test]
async fn deliveries_behind_a_failing_endpoints_probe_are_parked_longer_each_time() {
    let h = Harness::like_sqs(&[200]);
    let (first, second) = parked_behind_a_probe(&h).await;
    assert!((24..=37).contains(&first), "first parking {first} s");
    assert!((48..=73).contains(&second), "second parking {second} s");
}

/// Where the queue can release them (the runner), they are held for the endpoint instead:
/// 2 min, then 4, as a backstop only (see the next test).
#[tokio::test]
async fn deliveries_behind_a_failing_endpoints_probe_are_held_with_a_longer_backstop() {
    let h = Harness::new(&[200]);
    let (first, second) = parked_behind_a_probe(&h).await;
    assert!((96..=145).contains(&first), "first holding {first} s");
    assert!((192..=289).contains(&second), "second holding {second} s");
}

/// Parks a delivery twice behind a probe in flight and says how long (s) each parking
/// lasted; then ends the probe and delivers it.
async fn parked_behind_a_probe(h: &Harness) -> (u64, u64) {
    let mut sub = subscription("acct_a", "wh_down", &["call.*"]);
    sub.failing_since = Some(h.now());
    let task = enqueue(h, &sub).await;
    // Another delivery to the endpoint is in flight: its probe.
    let probe = h
        .services
        .limiter
        .try_acquire(&sub, std::time::Instant::now())
        .unwrap();

    let mut parked_for = Vec::new();
    for parkings in 1..=2u32 {
        let (received, failed) = deliver_visible(h).await;
        assert_eq!((received.len(), failed.len()), (1, 0));
        assert!(h.http.sent().is_empty(), "attempted behind the probe");
        let mut waited = Duration::ZERO;
        let parked = loop {
            h.clock.advance(Duration::from_secs(1));
            waited += Duration::from_secs(1);
            let visible = receive_all(&h.services.deliveries_queue).await;
            if let Some(m) = visible.first() {
                break m.clone();
            }
            assert!(waited < Duration::from_secs(600), "never came back");
        };
        let copy: DeliveryTask = serde_json::from_str(&parked.body).unwrap();
        assert_eq!(copy.parkings, parkings);
        assert_eq!(copy.delivery_id, task.delivery_id);
        parked_for.push(waited.as_secs());
        // Put it back as it was, for the next round.
        h.services
            .deliveries_queue
            .change_visibility_batch(vec![(parked.receipt_handle, Duration::ZERO)])
            .await
            .unwrap();
    }
    // Parked without an attempt, it has no outcome yet: nothing is logged.
    assert!(h
        .services
        .deliveries
        .get(&task.account_id, &task.delivery_id)
        .await
        .unwrap()
        .is_none());

    // The probe ends: the parked delivery is attempted when it comes back.
    drop(probe);
    let (_, failed) = deliver_visible(h).await;
    assert!(failed.is_empty());
    assert_eq!(delivery(h, &task).await.status, DeliveryStatus::Succeeded);
    (parked_for[0], parked_for[1])
}

/// Looks at the deliveries queue `rounds` times, `step` apart, leaving what it sees
/// visible: how many messages were visible each time, and which deliveries they were.
async fn visible_over(
    h: &Harness,
    rounds: usize,
    step: Duration,
) -> (Vec<usize>, BTreeSet<DeliveryId>) {
    let mut counts = Vec::new();
    let mut seen = BTreeSet::new();
    for _ in 0..rounds {
        let visible = receive_all(&h.services.deliveries_queue).await;
        counts.push(visible.len());
        seen.extend(visible.iter().map(|m| {
            serde_json::from_str::<DeliveryTask>(&m.body)
                .unwrap()
                .delivery_id
        }));
        h.services
            .deliveries_queue
            .change_visibility_batch(
                visible
                    .into_iter()
                    .map(|m| (m.receipt_handle, Duration::ZERO))
                    .collect(),
            )
            .await
            .unwrap();
        h.clock.advance(step);
    }
    (counts, seen)
}

/// When a failing endpoint's probe succeeds, what was held for it comes back at once, paced
/// (not after its two-minute backstop); another endpoint's held deliveries stay held.
#[tokio::test]
async fn a_succeeding_probe_releases_what_was_held_for_its_endpoint() {
    let h = Harness::new(&[200, 200, 200, 200]);
    let mut sub = subscription("acct_a", "wh_down", &["call.*"]);
    sub.failing_since = Some(h.now());
    let mut other = subscription("acct_b", "wh_other", &["call.*"]);
    other.failing_since = Some(h.now());
    h.services.subscriptions.put(&sub).await.unwrap();
    h.services.subscriptions.put(&other).await.unwrap();
    let held: Vec<DeliveryTask> = (0..3)
        .map(|i| {
            let e = event("acct_a", &format!("evt_held_{i}"), "call.ended");
            Delivery::new(&e, &sub, h.now()).task(Payload::of(&e))
        })
        .collect();
    let e = event("acct_b", "evt_other", "call.ended");
    let other_task = Delivery::new(&e, &other, h.now()).task(Payload::of(&e));
    for task in held.iter().chain([&other_task]) {
        send(&h, task).await;
    }
    // Both endpoints' probes are in flight: all four are held.
    let probes = [&sub, &other].map(|s| {
        h.services
            .limiter
            .try_acquire(s, std::time::Instant::now())
            .unwrap()
    });
    let (received, _) = deliver_visible(&h).await;
    assert_eq!(received.len(), 4);
    assert!(receive_all(&h.services.deliveries_queue).await.is_empty());

    // The probes end without an answer (as if timed out elsewhere); a new delivery to the
    // first endpoint is its next probe, and it succeeds.
    drop(probes);
    let e = event("acct_a", "evt_probe", "call.ended");
    let probe = Delivery::new(&e, &sub, h.now()).task(Payload::of(&e));
    send(&h, &probe).await;
    let (received, failed) = deliver_visible(&h).await;
    assert_eq!((received.len(), failed.len()), (1, 0));
    assert_eq!(delivery(&h, &probe).await.status, DeliveryStatus::Succeeded);

    // Its held deliveries come back one every 10 ms (100 a second), in the order they were
    // due; the other endpoint's do not.
    let (visible_counts, back) = visible_over(&h, 3, Duration::from_millis(10)).await;
    assert_eq!(visible_counts, [1, 2, 3]);
    assert_eq!(back, held.iter().map(|t| t.delivery_id.clone()).collect());
    let (received, failed) = deliver_visible(&h).await;
    assert_eq!((received.len(), failed.len()), (3, 0));
    for task in &held {
        assert_eq!(delivery(&h, task).await.status, DeliveryStatus::Succeeded);
    }
    assert!(h
        .services
        .deliveries
        .get(&other_task.account_id, &other_task.delivery_id)
        .await
        .unwrap()
        .is_none());
}

/// When a failing endpoint's probe fails and its delivery is not tried again (a
/// subscription allowing one attempt), the endpoint has no probe left: what was held for it
/// comes back one a second, the first at once, to be the next probe, not after the
/// two-minute backstop.
#[tokio::test]
async fn a_probe_that_gives_up_releases_what_was_held_one_a_second() {
    let h = Harness::new(&[500, 500, 500, 500]);
    let mut sub = subscription("acct_a", "wh_down", &["call.*"]);
    sub.failing_since = Some(h.now());
    sub.max_attempts = Some(1);
    h.services.subscriptions.put(&sub).await.unwrap();
    let held: Vec<DeliveryTask> = (0..3)
        .map(|i| {
            let e = event("acct_a", &format!("evt_held_{i}"), "call.ended");
            Delivery::new(&e, &sub, h.now()).task(Payload::of(&e))
        })
        .collect();
    for task in &held {
        send(&h, task).await;
    }
    let probe = h
        .services
        .limiter
        .try_acquire(&sub, std::time::Instant::now())
        .unwrap();
    let (received, _) = deliver_visible(&h).await;
    assert_eq!(received.len(), 3);
    assert!(receive_all(&h.services.deliveries_queue).await.is_empty());

    // That probe ends elsewhere; a new delivery is the next probe, fails, and is dead.
    drop(probe);
    let e = event("acct_a", "evt_probe", "call.ended");
    let last_probe = Delivery::new(&e, &sub, h.now()).task(Payload::of(&e));
    send(&h, &last_probe).await;
    let (received, failed) = deliver_visible(&h).await;
    assert_eq!((received.len(), failed.len()), (1, 0));
    assert_eq!(delivery(&h, &last_probe).await.status, DeliveryStatus::Dead);

    // The held come back one a second, the first at once.
    let (visible_counts, back) = visible_over(&h, 3, Duration::from_secs(1)).await;
    assert_eq!(visible_counts, [1, 2, 3]);
    assert_eq!(back, held.iter().map(|t| t.delivery_id.clone()).collect());
    // Tried in turn, within seconds: each is the next probe, and dies after its one
    // attempt; the others, held again behind it, come back when it gives up.
    for _ in 0..10 {
        deliver_visible(&h).await;
        h.clock.advance(Duration::from_secs(1));
    }
    for task in &held {
        assert_eq!(delivery(&h, task).await.status, DeliveryStatus::Dead);
    }
}

/// The events the service announced, oldest first.
async fn announced(h: &Harness) -> Vec<Event> {
    let mut events: Vec<Event> = receive_all(&h.services.events_queue)
        .await
        .iter()
        .map(|m| serde_json::from_str(&m.body).unwrap())
        .collect();
    events.sort_by_key(|e| e.received_at);
    events
}

#[tokio::test]
async fn a_run_of_failures_is_announced_once_as_failing_then_as_recovered() {
    let mut h = Harness::new(&[500, 500, 500, 200]);
    h.services.settings.failing_after_failures = 2;
    let mut sub = subscription("acct_a", "wh_1", &["call.*"]);
    sub.retry_schedule = Some(vec![1, 1, 1]);
    let task = enqueue(&h, &sub).await;

    deliver_visible(&h).await;
    assert!(
        announced(&h).await.is_empty(),
        "one failure is under the threshold"
    );
    for _ in 0..2 {
        h.clock.advance(Duration::from_secs(2));
        deliver_visible(&h).await;
    }
    let failing = announced(&h).await;
    assert_eq!(
        failing.len(),
        1,
        "announced once, not at every failure past the threshold: {failing:#?}"
    );
    assert_eq!(failing[0].event_type.as_str(), "webhook.failing");
    assert_eq!(failing[0].about_webhook(), Some("wh_1"));
    let data = &failing[0].data;
    assert_eq!(
        (&data["consecutive_failures"], &data["threshold"]),
        (&json!(2), &json!(2))
    );
    assert_eq!(data["cause"], "http_500");
    assert_eq!(data["last_error"], "endpoint answered 500");
    assert_eq!(data["failing_since"], json!(at(START_MS).to_rfc3339()));

    h.clock.advance(Duration::from_secs(2));
    deliver_visible(&h).await;
    assert_eq!(delivery(&h, &task).await.status, DeliveryStatus::Succeeded);
    let recovered = announced(&h).await;
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].event_type.as_str(), "webhook.recovered");
    assert_eq!(
        recovered[0].data["failing_since"],
        json!(at(START_MS).to_rfc3339())
    );
    let sub = h
        .services
        .subscriptions
        .get(&account("acct_a"), &SubscriptionId::from_static("wh_1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((sub.failing_since, sub.consecutive_failures), (None, 0));
    // Kept past the run: the next run is announced only an hour after this one was.
    assert!(sub.failing_announced_at.is_some());
}

#[tokio::test]
async fn an_accounts_own_threshold_decides_when_its_endpoint_is_failing() {
    let h = Harness::new(&[500, 500]);
    assert_eq!(h.services.settings.failing_after_failures, 5);
    let own = AlertSettings {
        failing_after_failures: Some(2),
        ..AlertSettings::default()
    };
    h.services
        .alerts
        .put_settings(&account("acct_a"), &own)
        .await
        .unwrap();
    let mut sub = subscription("acct_a", "wh_1", &["call.*"]);
    sub.retry_schedule = Some(vec![1, 1, 1]);
    let task = enqueue(&h, &sub).await;
    deliver_visible(&h).await;
    assert!(announced(&h).await.is_empty());
    h.clock.advance(Duration::from_secs(2));
    deliver_visible(&h).await;
    let failing = announced(&h).await;
    assert_eq!(
        failing.len(),
        1,
        "two failures cross the account's threshold of 2"
    );
    assert_eq!(failing[0].data["threshold"], 2);
    assert_eq!(failing[0].data["delivery_id"], json!(task.delivery_id));
}

#[tokio::test]
async fn a_delivery_whose_attempts_run_out_is_announced_dead_but_never_one_of_an_announcement() {
    let h = Harness::new(&[500, 500]);
    let mut sub = subscription("acct_a", "wh_1", &["*"]);
    sub.max_attempts = Some(1);
    let task = enqueue(&h, &sub).await;
    deliver_visible(&h).await;
    assert_eq!(delivery(&h, &task).await.status, DeliveryStatus::Dead);
    let dead = announced(&h).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].event_type.as_str(), "delivery.dead");
    let data = &dead[0].data;
    assert_eq!(data["delivery_id"], json!(task.delivery_id));
    assert_eq!(data["webhook_id"], "wh_1");
    assert_eq!(data["event_type"], "call.ended");
    assert_eq!(data["attempts"], 1);
    assert_eq!(data["cause"], "http_500");
    assert_eq!(data["url"], json!(sub.url));
    assert_eq!(dead[0].about_webhook(), Some("wh_1"));

    // The delivery of an announcement that runs out is not announced in turn.
    let mut op = event("acct_a", "evt_op", "delivery.dead");
    op.data = data.clone();
    op.data["webhook_id"] = json!("wh_elsewhere");
    let delivery = Delivery::new(&op, &sub, h.now());
    h.services
        .deliveries
        .create_batch(std::slice::from_ref(&delivery))
        .await
        .unwrap();
    h.services
        .deliveries_queue
        .send_batch(vec![OutgoingMessage {
            id: "0".into(),
            body: serde_json::to_string(&delivery.task(Payload::of(&op))).unwrap(),
            delay: Duration::ZERO,
            held_for: None,
        }])
        .await
        .unwrap();
    deliver_visible(&h).await;
    assert_eq!(
        h.services
            .deliveries
            .get(&account("acct_a"), &delivery.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        DeliveryStatus::Dead
    );
    assert!(
        announced(&h).await.is_empty(),
        "a dead announcement was announced"
    );
}

/// As [`deliver_visible`], then acknowledges what the batch did not report failed.
async fn deliver_and_acknowledge(h: &Harness) -> (Vec<QueueMessage>, Vec<String>) {
    let (received, failed) = deliver_visible(h).await;
    acknowledge(h, &received, &failed).await;
    (received, failed)
}

/// Deletes the `received` messages not among `failed`, as Lambda's event source does.
async fn acknowledge(h: &Harness, received: &[QueueMessage], failed: &[String]) {
    let done: Vec<String> = received
        .iter()
        .filter(|m| !failed.contains(&m.message_id))
        .map(|m| m.receipt_handle.clone())
        .collect();
    h.services
        .deliveries_queue
        .delete_batch(done)
        .await
        .unwrap();
}

/// `n` deliveries to `sub` of `call.ended` events, as fan-out makes them from one request.
async fn tasks_of_one_request(h: &Harness, sub: &Subscription, n: usize) -> Vec<DeliveryTask> {
    h.services.subscriptions.put(sub).await.unwrap();
    (0..n)
        .map(|i| {
            let event = event(&sub.account_id, &format!("evt_{i}"), "call.ended");
            Delivery::new(&event, sub, h.now()).task(Payload::of(&event))
        })
        .collect()
}

/// Puts `tasks` on the deliveries queue as one pack, as fan-out sends a request's
/// deliveries to one subscription.
async fn send_pack(h: &Harness, tasks: &[DeliveryTask]) {
    h.services
        .deliveries_queue
        .send_batch(vec![OutgoingMessage {
            id: "0".into(),
            body: pack_body(tasks),
            delay: Duration::ZERO,
            held_for: None,
        }])
        .await
        .unwrap();
}

/// The statuses of `tasks`' deliveries, in order (`None` where not logged).
async fn statuses(h: &Harness, tasks: &[DeliveryTask]) -> Vec<Option<DeliveryStatus>> {
    let mut out = Vec::new();
    for t in tasks {
        let d = h
            .services
            .deliveries
            .get(&t.account_id, &t.delivery_id)
            .await
            .unwrap();
        out.push(d.map(|d| d.status));
    }
    out
}

#[tokio::test]
async fn a_pack_is_acknowledged_once_its_failure_is_split_off_and_that_is_retried_alone() {
    // The first of a pack goes first; the other two then together, in order.
    let h = Harness::new(&[200, 500, 200, 200]);
    let sub = subscription("acct_a", "wh_1", &["call.*"]);
    let tasks = tasks_of_one_request(&h, &sub, 3).await;
    send_pack(&h, &tasks).await;

    let (received, failed) = deliver_and_acknowledge(&h).await;
    assert_eq!(received.len(), 1);
    assert!(
        failed.is_empty(),
        "the pack itself is done with: {failed:?}"
    );
    assert_eq!(h.http.sent().len(), 3);
    use DeliveryStatus::{Pending, Succeeded};
    assert_eq!(
        statuses(&h, &tasks).await,
        [Some(Succeeded), Some(Pending), Some(Succeeded)]
    );
    let retry_in = delivery(&h, &tasks[1])
        .await
        .next_attempt_at
        .expect("a retry is scheduled")
        .as_millis()
        - START_MS;

    // Not before its retry: the failure travels in a message of its own.
    h.clock
        .advance(Duration::from_millis(retry_in as u64 - 500));
    assert!(receive_all(&h.services.deliveries_queue).await.is_empty());
    h.clock.advance(Duration::from_secs(1));
    let (again, failed) = deliver_and_acknowledge(&h).await;
    assert_eq!(again.len(), 1);
    assert!(failed.is_empty());
    let (split, packed) = task_message::parse(&again[0].body).unwrap();
    assert!(!packed);
    assert_eq!(split[0].delivery_id, tasks[1].delivery_id);
    assert_eq!((split[0].prior_receives, again[0].receive_count), (1, 1));
    assert_eq!(
        attempts(&h, &tasks[1]).await,
        [(1, Some(500)), (2, Some(200))]
    );
    assert_eq!(statuses(&h, &tasks).await, [Some(Succeeded); 3]);
    assert_eq!(h.http.sent().len(), 4, "nothing else was sent twice");
    h.clock.advance(DAY);
    assert!(receive_all(&h.services.deliveries_queue).await.is_empty());
}

/// SQS delays a message 15 minutes at most: a split-off retry due later comes back early
/// and goes back for the rest of its wait, its attempt not spent.
#[tokio::test]
async fn a_split_off_retry_received_before_its_time_waits_without_spending_an_attempt() {
    let h = Harness::new(&[200]);
    let sub = subscription("acct_a", "wh_1", &["call.*"]);
    let mut task = tasks_of_one_request(&h, &sub, 1).await.remove(0);
    task.prior_receives = 1;
    task.not_before = Some(h.now() + Duration::from_secs(3600));
    send(&h, &task).await;

    let (received, failed) = deliver_and_acknowledge(&h).await;
    assert_eq!((received.len(), failed.len()), (1, 0));
    assert!(h.http.sent().is_empty(), "received early: not attempted");
    h.clock.advance(Duration::from_secs(3590));
    assert!(receive_all(&h.services.deliveries_queue).await.is_empty());
    h.clock.advance(Duration::from_secs(10));
    let back = receive_all(&h.services.deliveries_queue).await;
    assert_eq!(back.len(), 1);
    let (copy, _) = task_message::parse(&back[0].body).unwrap();
    assert_eq!(
        (back[0].receive_count, copy[0].prior_receives),
        (1, 1),
        "a new message, the early receive not counted"
    );
    let response = handle_deliveries(&h.services, sqs_event(records_of(&back))).await;
    assert!(failures(&response).is_empty());
    assert_eq!(h.http.sent().len(), 1);
    assert_eq!(delivery(&h, &task).await.status, DeliveryStatus::Succeeded);
}

/// A pack that comes back (its batch timed out, or its split-off could not be sent) sends
/// again only what has not ended.
#[tokio::test]
async fn a_pack_that_comes_back_sends_only_the_deliveries_that_have_not_ended() {
    let h = Harness::new(&[200, 200, 200]);
    let sub = subscription("acct_a", "wh_1", &["call.*"]);
    let tasks = tasks_of_one_request(&h, &sub, 3).await;
    // The first was delivered on the pack's first receive; then the batch was lost.
    send(&h, &tasks[0]).await;
    assert!(deliver_and_acknowledge(&h).await.1.is_empty());
    send_pack(&h, &tasks).await;
    assert_eq!(receive_all(&h.services.deliveries_queue).await.len(), 1);
    h.clock.advance(Duration::from_secs(600));

    let (again, failed) = deliver_and_acknowledge(&h).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
    assert!(failed.is_empty());
    assert_eq!(
        h.http.sent().len(),
        3,
        "the delivered one is not sent again"
    );
    assert_eq!(
        statuses(&h, &tasks).await,
        [Some(DeliveryStatus::Succeeded); 3]
    );
    assert_eq!(attempts(&h, &tasks[0]).await, [(1, Some(200))]);
}

#[tokio::test]
async fn a_delivery_of_a_pack_that_runs_out_of_attempts_is_dead_lettered_alone() {
    let h = Harness::new(&[200, 500]);
    let mut sub = subscription("acct_a", "wh_1", &["call.*"]);
    sub.max_attempts = Some(1);
    let tasks = tasks_of_one_request(&h, &sub, 2).await;
    send_pack(&h, &tasks).await;

    let (_, failed) = deliver_and_acknowledge(&h).await;
    assert!(failed.is_empty());
    assert_eq!(
        statuses(&h, &tasks).await,
        [Some(DeliveryStatus::Succeeded), Some(DeliveryStatus::Dead)]
    );
    let letters = receive_all(&h.services.dead_letter_queue).await;
    assert_eq!(letters.len(), 1);
    let letter: Value = serde_json::from_str(&letters[0].body).unwrap();
    assert_eq!(
        letter["delivery"]["delivery_id"],
        json!(tasks[1].delivery_id)
    );
    h.clock.advance(DAY);
    assert!(receive_all(&h.services.deliveries_queue).await.is_empty());
}

/// Where batches run side by side in one process (the runner's pollers), two packs to one
/// endpoint ask for more attempts at once than its in-flight cap: the deliveries over it
/// wait for their turn within their batch instead of each being split off.
#[tokio::test]
async fn packs_to_one_endpoint_in_batches_side_by_side_wait_for_its_turn() {
    let h = Harness::new(&[200; 24]);
    h.http.answer_after(Duration::from_millis(20));
    let sub = subscription("acct_a", "wh_1", &["call.*"]);
    let tasks = tasks_of_one_request(&h, &sub, 24).await;
    send_pack(&h, &tasks[..12]).await;
    let first = receive_all(&h.services.deliveries_queue).await;
    send_pack(&h, &tasks[12..]).await;
    let second = receive_all(&h.services.deliveries_queue).await;
    assert_eq!((first.len(), second.len()), (1, 1));

    let (a, b) = tokio::join!(
        handle_deliveries(&h.services, sqs_event(records_of(&first))),
        handle_deliveries(&h.services, sqs_event(records_of(&second))),
    );
    assert!(failures(&a).is_empty() && failures(&b).is_empty());
    assert_eq!(h.http.sent().len(), 24);
    assert_eq!(
        statuses(&h, &tasks).await,
        [Some(DeliveryStatus::Succeeded); 24]
    );
    h.clock.advance(Duration::from_secs(2));
    assert!(
        receive_all(&h.services.deliveries_queue).await.is_empty(),
        "nothing was split off"
    );
}

/// The body of a pack of `tasks`.
fn pack_body(tasks: &[DeliveryTask]) -> String {
    let mut packer = Packer::default();
    for task in tasks {
        assert!(packer.add(task_message::single(task)).is_none());
    }
    packer.close().unwrap()
}

/// A pack whose split-off cannot be sent is reported failed and comes back; then only what
/// did not end is sent again.
#[tokio::test]
async fn a_pack_whose_split_off_cannot_be_sent_comes_back_and_sends_only_the_rest() {
    let h = Harness::with_stores(&[200, 500, 200], |stores| {
        stores.deliveries_queue = Arc::new(RefusingQueue);
    });
    let sub = subscription("acct_a", "wh_1", &["call.*"]);
    let tasks = tasks_of_one_request(&h, &sub, 2).await;
    let body = pack_body(&tasks);

    let response = handle_deliveries(&h.services, sqs_event(vec![record("m1", &body, 1)])).await;
    assert_eq!(failures(&response), ["m1"]);
    h.clock.advance(Duration::from_secs(10));
    let response = handle_deliveries(&h.services, sqs_event(vec![record("m1", &body, 2)])).await;
    assert!(failures(&response).is_empty(), "{response:?}");
    assert_eq!(
        h.http.sent().len(),
        3,
        "the delivered one is not sent again"
    );
    assert_eq!(
        statuses(&h, &tasks).await,
        [Some(DeliveryStatus::Succeeded); 2]
    );
}

/// A pack's dead letters are moved before anything of it is split off: when a move fails
/// the pack comes back with nothing split off, so none of its deliveries travels twice.
#[tokio::test]
async fn a_pack_whose_dead_letter_cannot_be_moved_splits_nothing_off() {
    let h = Harness::with_stores(&[500], |stores| {
        stores.dead_letter_queue = Arc::new(RefusingQueue);
    });
    let mut sub = subscription("acct_a", "wh_1", &["call.*"]);
    sub.max_attempts = Some(1);
    let mut tasks = tasks_of_one_request(&h, &sub, 2).await;
    // Not due for an hour: split off to wait.
    tasks[1].not_before = Some(h.now() + Duration::from_secs(3600));
    let body = pack_body(&tasks);

    let response = handle_deliveries(&h.services, sqs_event(vec![record("m1", &body, 1)])).await;
    assert_eq!(failures(&response), ["m1"]);
    assert_eq!(
        statuses(&h, &tasks).await,
        [Some(DeliveryStatus::Dead), None]
    );
    h.clock.advance(DAY);
    assert!(
        receive_all(&h.services.deliveries_queue).await.is_empty(),
        "nothing was split off"
    );
}
