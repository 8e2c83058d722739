//! Nothing left `pending` without a message: what the deliveries queue itself gives up on
//! is marked dead (and so listed and redrivable), and the sweep sends again a pending
//! delivery that is long overdue.

mod support;

use std::time::Duration;

use app::deliver_function::{self, Invocation, Response};
use app::redrive::{can_redrive, redrive};
use app::sweep::{sweep, SweepReport, DEFAULT_GRACE};
use app::topology;
use app::{handle_deliveries, handle_stranded};
use domain::delivery::{Delivery, DeliveryStatus};
use serde_json::{json, Value};
/// Time enough to read every page of these small logs.
const BUDGET: Duration = Duration::from_secs(60);

use support::{
    account, event, failures, receive_all, record, records_of, sqs_event, subscription, Harness,
};

/// An account with one subscription and one event, and the event's delivery, not logged
/// (as before its first outcome); whether a message is behind it is up to the test.
async fn unlogged_delivery(h: &Harness) -> Delivery {
    let sub = subscription("acct_s", "wh_s", &["call.ended"]);
    h.services.subscriptions.put(&sub).await.unwrap();
    let event = event("acct_s", "evt_s", "call.ended");
    h.services
        .events
        .insert_batch(std::slice::from_ref(&event))
        .await
        .unwrap();
    Delivery::new(&event, &sub, h.now())
}

/// The same, with the delivery in the log pending, as layout 1's fan-out made it.
async fn pending_delivery(h: &Harness) -> Delivery {
    let delivery = unlogged_delivery(h).await;
    h.services
        .deliveries
        .create_batch(std::slice::from_ref(&delivery))
        .await
        .unwrap();
    delivery
}

async fn current(h: &Harness, d: &Delivery) -> Delivery {
    h.services
        .deliveries
        .get(&d.account_id, &d.id)
        .await
        .unwrap()
        .unwrap()
}

/// Sends the delivery's task on the deliveries queue, then receives it as often as the
/// queue allows without ever finishing it (a crash on every receive), until the queue
/// moves it on by its redrive policy.
async fn strand(h: &Harness, d: &Delivery) {
    let e = h
        .services
        .events
        .get(&d.account_id, &d.event_id)
        .await
        .unwrap()
        .unwrap();
    let task = d.task(domain::delivery::Payload::of(&e));
    h.services
        .deliveries_queue
        .send_batch(vec![app::ports::OutgoingMessage {
            id: "0".into(),
            body: serde_json::to_string(&task).unwrap(),
            delay: Duration::ZERO,
            held_for: None,
        }])
        .await
        .unwrap();
    for _ in 0..topology::DELIVERIES.max_receives.unwrap() {
        assert_eq!(receive_all(&h.services.deliveries_queue).await.len(), 1);
        h.clock.advance(topology::DELIVERIES.visibility);
    }
    assert!(receive_all(&h.services.deliveries_queue).await.is_empty());
}

/// Redrives the dead delivery `dead` and delivers it: it ends succeeded.
async fn redrive_and_deliver(h: &Harness, dead: &Delivery) {
    assert!(can_redrive(dead.status));
    assert_eq!(
        redrive(&h.services, std::slice::from_ref(dead))
            .await
            .unwrap(),
        1
    );
    let sent = receive_all(&h.services.deliveries_queue).await;
    let response = handle_deliveries(&h.services, sqs_event(records_of(&sent))).await;
    assert!(failures(&response).is_empty(), "{response:?}");
    assert_eq!(current(h, dead).await.status, DeliveryStatus::Succeeded);
}

#[tokio::test]
async fn a_delivery_the_queue_gave_up_on_is_marked_dead_listed_and_redrivable() {
    let h = Harness::new(&[200]);
    let d = pending_delivery(&h).await;
    strand(&h, &d).await;
    assert_eq!(current(&h, &d).await.status, DeliveryStatus::Pending);

    let stranded = receive_all(&h.services.stranded_queue).await;
    assert_eq!(
        stranded.len(),
        1,
        "the queue moves it to the stranded queue"
    );
    let response = handle_stranded(&h.services, sqs_event(records_of(&stranded))).await;
    assert!(failures(&response).is_empty(), "{response:?}");

    let dead = current(&h, &d).await;
    assert_eq!(dead.status, DeliveryStatus::Dead);
    let listed = h
        .services
        .deliveries
        .list_dead(&account("acct_s"), None, 10)
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    // An ordinary dead letter for the review queue and its alarm.
    let letters = receive_all(&h.services.dead_letter_queue).await;
    assert_eq!(letters.len(), 1);
    let letter: Value = serde_json::from_str(&letters[0].body).unwrap();
    assert_eq!(letter["delivery"]["delivery_id"], json!(d.id.as_str()));

    redrive_and_deliver(&h, &dead).await;
}

/// A first try whose every receive crashed was never logged (a delivery is logged from its
/// first outcome): the stranded consumer logs it dead, so it is listed and redrivable.
#[tokio::test]
async fn a_first_try_the_queue_gave_up_on_is_logged_dead_listed_and_redrivable() {
    let h = Harness::new(&[200]);
    let d = unlogged_delivery(&h).await;
    strand(&h, &d).await;
    assert!(h
        .services
        .deliveries
        .get(&d.account_id, &d.id)
        .await
        .unwrap()
        .is_none());

    let stranded = receive_all(&h.services.stranded_queue).await;
    let response = handle_stranded(&h.services, sqs_event(records_of(&stranded))).await;
    assert!(failures(&response).is_empty(), "{response:?}");
    let dead = current(&h, &d).await;
    assert_eq!(
        (dead.status, dead.attempt_count, dead.created_at),
        (DeliveryStatus::Dead, 0, d.created_at)
    );
    assert!(dead.last_error.unwrap().contains("gave up"));
    let listed = h
        .services
        .deliveries
        .list_dead(&account("acct_s"), None, 10)
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(receive_all(&h.services.dead_letter_queue).await.len(), 1);

    // Handed over again (a duplicate of the stranded message): nothing changes.
    let response = handle_stranded(&h.services, sqs_event(records_of(&stranded))).await;
    assert!(failures(&response).is_empty(), "{response:?}");
    assert!(receive_all(&h.services.dead_letter_queue).await.is_empty());

    redrive_and_deliver(&h, &current(&h, &d).await).await;
}

#[tokio::test]
async fn a_stranded_message_of_a_finished_delivery_changes_nothing() {
    let h = Harness::new(&[200]);
    let d = pending_delivery(&h).await;
    assert!(h
        .services
        .deliveries
        .move_status(
            &d.account_id,
            &d.id,
            (DeliveryStatus::Pending, 0),
            DeliveryStatus::Succeeded,
            h.now()
        )
        .await
        .unwrap());
    strand(&h, &d).await;
    let stranded = receive_all(&h.services.stranded_queue).await;
    let response = handle_stranded(&h.services, sqs_event(records_of(&stranded))).await;
    assert!(failures(&response).is_empty(), "{response:?}");
    assert_eq!(current(&h, &d).await.status, DeliveryStatus::Succeeded);
    assert!(receive_all(&h.services.dead_letter_queue).await.is_empty());

    // An unreadable one is set aside for a human, and acknowledged.
    let response = handle_stranded(&h.services, sqs_event(vec![record("m1", "{", 1)])).await;
    assert!(failures(&response).is_empty(), "{response:?}");
    let set_aside = receive_all(&h.services.dead_letter_queue).await;
    assert_eq!(set_aside.len(), 1);
    assert!(set_aside[0].body.contains("unprocessable"));
}

#[tokio::test]
async fn the_sweep_sends_again_a_pending_delivery_long_overdue_and_only_that() {
    let h = Harness::new(&[200]);
    let d = pending_delivery(&h).await;
    // Within the grace: it may have a message on its way.
    h.clock.advance(DEFAULT_GRACE - Duration::from_secs(1));
    assert_eq!(
        sweep(&h.services, DEFAULT_GRACE, BUDGET).await.unwrap(),
        SweepReport::default()
    );
    assert!(receive_all(&h.services.deliveries_queue).await.is_empty());

    h.clock.advance(Duration::from_secs(2));
    let report = sweep(&h.services, DEFAULT_GRACE, BUDGET).await.unwrap();
    assert_eq!((report.overdue, report.requeued), (1, 1), "{report:?}");
    // Rescheduled: the next run does not send it again.
    assert_eq!(
        sweep(&h.services, DEFAULT_GRACE, BUDGET)
            .await
            .unwrap()
            .overdue,
        0
    );
    let sent = receive_all(&h.services.deliveries_queue).await;
    assert_eq!(sent.len(), 1);
    let response = handle_deliveries(&h.services, sqs_event(records_of(&sent))).await;
    assert!(failures(&response).is_empty(), "{response:?}");
    let done = current(&h, &d).await;
    assert_eq!(
        (done.status, done.attempt_count),
        (DeliveryStatus::Succeeded, 1)
    );
}

#[tokio::test]
async fn the_sweep_leaves_a_failing_endpoints_deliveries_parked_and_retires_expired_events() {
    let h = Harness::new(&[]);
    let d = pending_delivery(&h).await;
    let mut sub = h
        .services
        .subscriptions
        .get(&d.account_id, &d.subscription_id)
        .await
        .unwrap()
        .unwrap();
    sub.failing_since = Some(h.now());
    h.services.subscriptions.put(&sub).await.unwrap();
    h.clock.advance(DEFAULT_GRACE * 3);
    let report = sweep(&h.services, DEFAULT_GRACE, BUDGET).await.unwrap();
    assert_eq!(
        (report.endpoint_failing, report.requeued),
        (1, 0),
        "{report:?}"
    );

    // Answering again, but the event has passed its retention: nothing left to send.
    sub.failing_since = None;
    h.services.subscriptions.put(&sub).await.unwrap();
    let mut gone = d.clone();
    gone.id = domain::ids::DeliveryId::from_static("dlv_gone");
    gone.event_id = domain::ids::EventId::from_static("evt_expired");
    h.services
        .deliveries
        .create_batch(std::slice::from_ref(&gone))
        .await
        .unwrap();
    let report = sweep(&h.services, DEFAULT_GRACE, BUDGET).await.unwrap();
    assert_eq!(
        (report.overdue, report.requeued, report.event_expired),
        (2, 1, 1),
        "{report:?}"
    );
    assert_eq!(current(&h, &gone).await.status, DeliveryStatus::Dead);
}

#[tokio::test]
async fn the_deliver_function_routes_each_invocation() {
    let h = Harness::new(&[200]);
    let d = pending_delivery(&h).await;
    strand(&h, &d).await;
    let stranded = receive_all(&h.services.stranded_queue).await;
    let mut records = records_of(&stranded);
    records[0]["eventSourceARN"] =
        json!("arn:aws:sqs:eu-west-1:123456789012:webhooks-prod-deliveries-stranded");
    let invocation: Invocation = serde_json::from_value(json!({ "Records": records })).unwrap();
    let response =
        deliver_function::handle(&h.services, "webhooks-prod-deliveries-stranded", invocation)
            .await
            .unwrap();
    assert!(matches!(response, Response::Batch(_)));
    assert_eq!(current(&h, &d).await.status, DeliveryStatus::Dead);

    let scheduled: Invocation =
        serde_json::from_value(json!({"detail-type": "Scheduled Event", "source": "aws.events"}))
            .unwrap();
    let Response::Sweep(report) =
        deliver_function::handle(&h.services, "webhooks-prod-deliveries-stranded", scheduled)
            .await
            .unwrap()
    else {
        panic!("a schedule runs the sweep")
    };
    assert_eq!(report, SweepReport::default());
}

/// A failing endpoint's backlog, parked without the log knowing, is overdue in the log: it
/// is passed over page after page, and never hides another account's stranded delivery.
/// A disabled endpoint's is sent again, for the deliver use case to settle.
#[tokio::test]
async fn the_sweep_reads_past_a_failing_endpoints_backlog_and_resends_a_disabled_ones() {
    let h = Harness::new(&[200]);
    let stranded = pending_delivery(&h).await;
    let mut noisy = subscription("acct_n", "wh_n", &["call.ended"]);
    noisy.failing_since = Some(h.now());
    h.services.subscriptions.put(&noisy).await.unwrap();
    let backlog: Vec<Delivery> = (0..(app::sweep::PAGE * 2 + 7))
        .map(|i| {
            let e = event("acct_n", &format!("evt_n{i:04}"), "call.ended");
            Delivery::new(&e, &noisy, h.now())
        })
        .collect();
    h.services.deliveries.create_batch(&backlog).await.unwrap();
    let mut off = subscription("acct_o", "wh_o", &["call.ended"]);
    off.enabled = false;
    off.failing_since = Some(h.now());
    h.services.subscriptions.put(&off).await.unwrap();
    let off_event = event("acct_o", "evt_o", "call.ended");
    h.services
        .events
        .insert_batch(std::slice::from_ref(&off_event))
        .await
        .unwrap();
    let mut disabled = Delivery::new(&off_event, &off, h.now());
    disabled.status = DeliveryStatus::Pending;
    h.services
        .deliveries
        .create_batch(std::slice::from_ref(&disabled))
        .await
        .unwrap();

    h.clock.advance(DEFAULT_GRACE * 2);
    let report = sweep(&h.services, DEFAULT_GRACE, BUDGET).await.unwrap();
    assert_eq!(report.endpoint_failing, backlog.len(), "{report:?}");
    assert_eq!(report.requeued, 2, "{report:?}");
    assert!(!report.cut_short);
    let sent: Vec<String> = receive_all(&h.services.deliveries_queue)
        .await
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(sent.len(), 2);
    for d in [&stranded, &disabled] {
        assert!(
            sent.iter().any(|b| b.contains(d.id.as_str())),
            "{} not sent",
            d.id
        );
    }

    // Out of time after the first page: it stops there and says so.
    h.clock.advance(DEFAULT_GRACE * 2);
    let report = sweep(&h.services, DEFAULT_GRACE, Duration::ZERO)
        .await
        .unwrap();
    assert!(report.cut_short, "{report:?}");
    assert_eq!(report.overdue, app::sweep::PAGE, "{report:?}");
}

/// A pack (a request's deliveries to one subscription, see `task_message`) the queue gave
/// up on strands each of its deliveries: those not ended are marked dead, one by one.
#[tokio::test]
async fn a_stranded_pack_marks_each_of_its_unfinished_deliveries_dead() {
    let h = Harness::new(&[]);
    let sub = subscription("acct_s", "wh_s", &["call.ended"]);
    h.services.subscriptions.put(&sub).await.unwrap();
    let deliveries: Vec<Delivery> = (0..3)
        .map(|i| {
            let e = event("acct_s", &format!("evt_{i}"), "call.ended");
            Delivery::new(&e, &sub, h.now())
        })
        .collect();
    // The first was delivered before its pack's batches began to crash.
    let mut done = deliveries[0].clone();
    done.status = DeliveryStatus::Succeeded;
    h.services
        .deliveries
        .create_batch(std::slice::from_ref(&done))
        .await
        .unwrap();
    let mut packer = app::task_message::Packer::default();
    for d in &deliveries {
        let e = event("acct_s", d.event_id.as_str(), "call.ended");
        packer.add(app::task_message::single(
            &d.task(domain::delivery::Payload::of(&e)),
        ));
    }
    let body = packer.close().unwrap();
    let response = handle_stranded(&h.services, sqs_event(vec![record("m1", &body, 1)])).await;
    assert!(failures(&response).is_empty(), "{response:?}");

    let mut statuses = Vec::new();
    for d in &deliveries {
        statuses.push(current(&h, d).await.status);
    }
    use DeliveryStatus::{Dead, Succeeded};
    assert_eq!(statuses, [Succeeded, Dead, Dead]);
    assert_eq!(receive_all(&h.services.dead_letter_queue).await.len(), 2);
    assert_eq!(
        h.services
            .deliveries
            .list_dead(&account("acct_s"), None, 10)
            .await
            .unwrap()
            .items
            .len(),
        2
    );
}
