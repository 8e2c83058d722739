//! Alert e-mail over the in-memory stores: who is e-mailed, the hourly throttle, the
//! digest, and what happens when the mail server fails.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use app::alerts::{notify, send_digests, Notified};
use app::handle_events;
use app::ports::Mailer;
use app::{Error, Result};
use domain::alerts::{AlertSettings, Mail};
use domain::catalog::EventType;
use domain::event::Event;
use domain::ids::EventId;
use support::{account, at, event, failures, record, sqs_event, Harness, START_MS};

/// Keeps what it was asked to send; fails the next `fail_next` sends first.
#[derive(Default)]
struct RecordingMailer {
    sent: Mutex<Vec<Mail>>,
    fail_next: AtomicUsize,
    permanent: bool,
}

#[async_trait]
impl Mailer for RecordingMailer {
    async fn send(&self, mail: &Mail) -> Result<()> {
        if self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::Mail {
                message: "the mail server is down".into(),
                permanent: self.permanent,
                cause: None,
            });
        }
        self.sent.lock().unwrap().push(mail.clone());
        Ok(())
    }
}

impl RecordingMailer {
    fn sent(&self) -> Vec<Mail> {
        self.sent.lock().unwrap().clone()
    }
}

fn harness() -> (Harness, Arc<RecordingMailer>) {
    let mut h = Harness::new(&[]);
    let mailer = Arc::new(RecordingMailer::default());
    h.services = h.services.clone().with_mailer(mailer.clone());
    (h, mailer)
}

async fn want_alerts(h: &Harness, events: &[&str]) {
    let settings = AlertSettings {
        emails: vec!["ops@example.com".into(), "oncall@example.com".into()],
        events: events.iter().map(|e| e.to_string()).collect(),
        failing_after_failures: None,
    };
    h.services
        .alerts
        .put_settings(&account("acct_a"), &settings)
        .await
        .unwrap();
}

fn failing(id: &str, webhook: &str, cause: &str) -> Event {
    let mut e = event("acct_a", id, "webhook.failing");
    e.event_type = EventType::known("webhook.failing").unwrap();
    e.data = json!({
        "webhook_id": webhook, "url": format!("https://{webhook}.example.com/hook"),
        "consecutive_failures": 5, "threshold": 5, "failing_since": at(START_MS).to_rfc3339(),
        "last_error": "endpoint answered 500", "cause": cause, "delivery_id": "dlv_1",
    });
    e
}

#[tokio::test]
async fn a_failing_endpoint_is_emailed_once_an_hour_and_the_digest_counts_the_rest() {
    let (h, mailer) = harness();
    want_alerts(&h, &["webhook.failing"]).await;

    assert_eq!(
        notify(&h.services, &failing("evt_1", "wh_1", "http_500"))
            .await
            .unwrap(),
        Notified::Sent
    );
    let sent = mailer.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, ["ops@example.com", "oncall@example.com"]);
    assert!(sent[0].subject.contains("Endpoint failing (HTTP 500)"));
    assert!(sent[0]
        .text
        .contains("https://hooks.example.com/console/#/deliveries/dlv_1"));

    // Within the hour: the same endpoint and cause is held; another cause is not.
    h.clock.advance(Duration::from_secs(600));
    for id in ["evt_2", "evt_3"] {
        let outcome = notify(&h.services, &failing(id, "wh_1", "http_500")).await;
        assert_eq!(outcome.unwrap(), Notified::Held);
    }
    let other_cause = notify(&h.services, &failing("evt_4", "wh_1", "timeout")).await;
    assert_eq!(other_cause.unwrap(), Notified::Sent);
    let other_endpoint = notify(&h.services, &failing("evt_5", "wh_2", "http_500")).await;
    assert_eq!(other_endpoint.unwrap(), Notified::Sent);
    assert_eq!(mailer.sent().len(), 3);

    // Not due yet: nothing.
    assert_eq!(send_digests(&h.services).await.unwrap().sent, 0);
    // The hour after the first e-mail is over: one digest reports the two held.
    h.clock.advance(Duration::from_secs(3000));
    let report = send_digests(&h.services).await.unwrap();
    assert_eq!((report.due, report.sent, report.reported), (1, 1, 2));
    let digest = mailer.sent().pop().unwrap();
    assert_eq!(digest.subject, "[Webhooks] Digest: 2 held alerts");
    assert!(
        digest
            .text
            .contains("- 2 × webhook.failing (HTTP 500) on https://wh_1.example.com/hook"),
        "{}",
        digest.text
    );
    // Reported once.
    h.clock.advance(Duration::from_secs(600));
    assert_eq!(send_digests(&h.services).await.unwrap().sent, 0);
    assert_eq!(mailer.sent().len(), 4);
}

#[tokio::test]
async fn the_next_alert_after_the_hour_reports_what_was_held() {
    let (h, mailer) = harness();
    want_alerts(&h, &["webhook.failing"]).await;
    notify(&h.services, &failing("evt_1", "wh_1", "http_500"))
        .await
        .unwrap();
    h.clock.advance(Duration::from_secs(60));
    notify(&h.services, &failing("evt_2", "wh_1", "http_500"))
        .await
        .unwrap();
    h.clock.advance(Duration::from_secs(3600));
    assert_eq!(
        notify(&h.services, &failing("evt_3", "wh_1", "http_500"))
            .await
            .unwrap(),
        Notified::Sent
    );
    let last = mailer.sent().pop().unwrap();
    assert!(last
        .text
        .contains("1 more alert about this endpoint and cause was held"));
    assert_eq!(
        send_digests(&h.services).await.unwrap().sent,
        0,
        "the alert reported it: no digest"
    );
}

#[tokio::test]
async fn only_accounts_with_an_address_and_the_event_chosen_are_emailed() {
    let (h, mailer) = harness();
    let outcome = notify(&h.services, &failing("evt_1", "wh_1", "http_500")).await;
    assert_eq!(outcome.unwrap(), Notified::NotWanted, "no settings saved");
    want_alerts(&h, &["delivery.dead"]).await;
    let outcome = notify(&h.services, &failing("evt_2", "wh_1", "http_500")).await;
    assert_eq!(
        outcome.unwrap(),
        Notified::NotWanted,
        "another event chosen"
    );
    let call = event("acct_a", "evt_3", "call.ended");
    assert_eq!(
        notify(&h.services, &call).await.unwrap(),
        Notified::NotAnAlert
    );
    assert!(mailer.sent().is_empty());

    // E-mail off on the deployment: nothing, whatever the account chose.
    let h = Harness::new(&[]);
    want_alerts(&h, &["webhook.failing"]).await;
    let outcome = notify(&h.services, &failing("evt_4", "wh_1", "http_500")).await;
    assert_eq!(outcome.unwrap(), Notified::NotAnAlert);
}

#[tokio::test]
async fn a_failed_send_gives_the_event_back_and_it_is_sent_once_when_it_returns() {
    let (h, mailer) = harness();
    want_alerts(&h, &["webhook.failing"]).await;
    mailer.fail_next.store(1, Ordering::SeqCst);
    let event = failing("evt_1", "wh_1", "http_500");
    let body = serde_json::to_string(&event).unwrap();

    let first = handle_events(&h.services, sqs_event(vec![record("m1", &body, 1)])).await;
    assert_eq!(failures(&first), ["m1"], "the message comes back");
    assert!(mailer.sent().is_empty());

    let second = handle_events(&h.services, sqs_event(vec![record("m1", &body, 2)])).await;
    assert!(failures(&second).is_empty());
    assert_eq!(mailer.sent().len(), 1, "sent when it came back");

    // A third receive (the batch's other work failed, say) sends nothing more.
    let third = handle_events(&h.services, sqs_event(vec![record("m1", &body, 3)])).await;
    assert!(failures(&third).is_empty());
    assert_eq!(mailer.sent().len(), 1);
    assert_eq!(
        notify(&h.services, &event).await.unwrap(),
        Notified::Duplicate
    );
}

#[tokio::test]
async fn a_refusal_that_will_not_change_is_dropped_not_retried() {
    let mut h = Harness::new(&[]);
    let mailer = Arc::new(RecordingMailer {
        permanent: true,
        ..RecordingMailer::default()
    });
    mailer.fail_next.store(1, Ordering::SeqCst);
    h.services = h.services.clone().with_mailer(mailer.clone());
    want_alerts(&h, &["webhook.failing"]).await;
    let body = serde_json::to_string(&failing("evt_1", "wh_1", "http_500")).unwrap();
    let response = handle_events(&h.services, sqs_event(vec![record("m1", &body, 1)])).await;
    assert!(
        failures(&response).is_empty(),
        "not received again and again"
    );
    assert_eq!(
        mailer.fail_next.load(Ordering::SeqCst),
        0,
        "the mail server was asked"
    );
    assert!(mailer.sent().is_empty());
}

#[tokio::test]
async fn a_mail_outage_gives_the_event_back_a_few_times_then_gives_up() {
    let (h, mailer) = harness();
    want_alerts(&h, &["webhook.failing"]).await;
    mailer.fail_next.store(usize::MAX, Ordering::SeqCst);
    let body = serde_json::to_string(&failing("evt_1", "wh_1", "http_500")).unwrap();
    for receive in 1..app::alerts::MAX_ALERT_RECEIVES {
        let response =
            handle_events(&h.services, sqs_event(vec![record("m1", &body, receive)])).await;
        assert_eq!(failures(&response), ["m1"], "receive {receive}");
    }
    let last = app::alerts::MAX_ALERT_RECEIVES;
    let response = handle_events(&h.services, sqs_event(vec![record("m1", &body, last)])).await;
    assert!(
        failures(&response).is_empty(),
        "not held until the dead-letter queue"
    );
}

#[tokio::test]
async fn a_batch_of_alerts_about_one_endpoint_sends_one_and_holds_the_rest() {
    let (h, mailer) = harness();
    want_alerts(&h, &["webhook.failing"]).await;
    let records = |receive_count: u32| -> Vec<serde_json::Value> {
        (1..=10)
            .map(|i| {
                let event = failing(&format!("evt_{i}"), "wh_1", "http_500");
                let body = serde_json::to_string(&event).unwrap();
                record(&format!("m{i}"), &body, receive_count)
            })
            .collect()
    };
    let held = |h: &Harness| {
        let alerts = h.services.alerts.clone();
        async move {
            alerts
                .throttle(&account("acct_a"), "wh_1/webhook.failing/http_500")
                .await
                .unwrap()
                .unwrap()
                .held
        }
    };
    let response = handle_events(&h.services, sqs_event(records(1))).await;
    assert!(failures(&response).is_empty());
    assert_eq!(mailer.sent().len(), 1);
    assert_eq!(held(&h).await, 9);
    // The whole batch again (a fan-out retry): nothing sent, nothing counted twice.
    let response = handle_events(&h.services, sqs_event(records(2))).await;
    assert!(failures(&response).is_empty());
    assert_eq!(mailer.sent().len(), 1);
    assert_eq!(held(&h).await, 9);
}

#[tokio::test]
async fn a_producers_event_with_an_operational_looking_body_is_never_an_email() {
    let (h, mailer) = harness();
    want_alerts(&h, &["webhook.failing"]).await;
    // Only the service's own operational types are alerts, whatever the data says.
    let mut e = failing("evt_1", "wh_1", "http_500");
    e.event_type = EventType::known("call.failed").unwrap();
    e.id = EventId::parse("evt_9").unwrap();
    assert_eq!(notify(&h.services, &e).await.unwrap(), Notified::NotAnAlert);
    assert!(mailer.sent().is_empty());
}
