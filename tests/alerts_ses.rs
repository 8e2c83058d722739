//! Alert e-mail on the AWS backend: the SES adapter on a moto server, with the alert
//! settings and throttles in DynamoDB, as the fan-out function sends it.

use std::sync::Arc;

use app::alerts::{notify, Notified};
use app::ports::{Mailer, SystemClock};
use domain::alerts::{AlertSettings, Mail};
use domain::catalog::EventType;
use domain::event::Event;
use domain::ids::{AccountId, EventId};
use e2e::{moto, test_config};
use mail_ses::SesMailer;
use serde_json::{json, Value};

/// What moto's SES kept of the messages sent to `to`.
async fn sent_to(to: &str) -> Vec<Value> {
    let data: Value = reqwest::get(format!("{}/moto-api/data.json", moto::endpoint()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    data["ses"]["Message"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m["destinations"]["ToAddresses"] == json!([to]))
        .collect()
}

async fn verified_sender(config: &aws_config::SdkConfig, address: &str) {
    aws_sdk_sesv2::Client::new(config)
        .create_email_identity()
        .email_identity(address)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_goes_out_through_ses_once_and_an_unknown_sender_is_a_permanent_refusal() {
    let config = moto::config().await;
    let prefix = moto::unique_prefix("ses");
    let sender = format!("{prefix}alerts@example.com");
    let to = format!("{prefix}ops@example.com");
    verified_sender(&config, &sender).await;

    let (clients, resources) = moto::deployment("alerts-ses").await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = runner::settings(&test_config(dir.path()), "k");
    settings.console_url = "https://hooks.example.com".into();
    let services = app::Services::new(
        store_aws::stores(&clients, &resources),
        Arc::new(app::ports::NoOutboundHttp),
        Arc::new(SystemClock),
        settings,
    )
    .with_mailer(Arc::new(SesMailer::new(&config, &sender)));
    let account = AccountId::parse("acct_ses").unwrap();
    services
        .alerts
        .put_settings(
            &account,
            &AlertSettings {
                emails: vec![to.clone()],
                ..AlertSettings::default()
            },
        )
        .await
        .unwrap();
    let event = |id: &str| Event {
        id: EventId::parse(id).unwrap(),
        event_type: EventType::known("delivery.dead").unwrap(),
        account_id: account.clone(),
        occurred_at: "2026-11-29T10:00:00Z".into(),
        received_at: domain::time::Timestamp::from_millis(1_800_000_000_000),
        data: json!({"delivery_id": "msg_1", "webhook_id": "wh_1", "url": "https://crm.example.com/h",
                     "event_id": "evt_x", "event_type": "call.ended", "attempts": 3,
                     "last_error": "endpoint answered 503", "cause": "http_503"}),
    };
    assert_eq!(
        notify(&services, &event("evt_1")).await.unwrap(),
        Notified::Sent
    );
    assert_eq!(
        notify(&services, &event("evt_1")).await.unwrap(),
        Notified::Duplicate
    );
    assert_eq!(
        notify(&services, &event("evt_2")).await.unwrap(),
        Notified::Held
    );
    let sent = sent_to(&to).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["source"], json!(sender));
    assert_eq!(
        sent[0]["subject"],
        "[Webhooks] Delivery dead (HTTP 503): https://crm.example.com/h"
    );
    let body = sent[0]["body"].as_str().unwrap();
    assert!(
        body.contains("https://hooks.example.com/console/#/deliveries/msg_1"),
        "{body}"
    );
    assert!(
        body.contains("Count:    3 attempts, none succeeded"),
        "{body}"
    );

    // A sender SES does not know: refused the same way every time, so not retried.
    let unknown = SesMailer::new(&config, &format!("{prefix}nobody@example.com"));
    let err = unknown
        .send(&Mail {
            to: vec![to.clone()],
            subject: "s".into(),
            text: "t".into(),
        })
        .await
        .unwrap_err();
    assert!(!err.retryable(), "{err}");
}
