//! Alert e-mail end to end: the runner, pointed at a local SMTP sink, e-mails an account
//! whose endpoint fails, once per endpoint and cause within the hour, with the endpoint,
//! the cause, the count and a link to the delivery in the console.

use std::time::Duration;

use e2e::smtp::{SmtpSink, SunkMail};
use e2e::{assert_error, event, eventually, Behavior, Receiver, TestRunner, WAIT};
use reqwest::Method;
use serde_json::{json, Value};

async fn put_alerts(t: &TestRunner, account: &str, body: Value) -> (u16, Value) {
    t.call(
        Method::PUT,
        &format!("/v1/accounts/{account}/alerts"),
        None,
        Some(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_emailed_once_per_cause_with_a_link_to_its_delivery() {
    let sink = SmtpSink::start().await;
    let smtp_url = sink.url();
    let t = TestRunner::start_with(|c| {
        c.smtp_url = Some(smtp_url);
        c.smtp_from = "Webhooks <alerts@example.com>".into();
    })
    .await;
    let receiver = Receiver::start().await;
    let account = "acct_alerts";

    let (status, settings) = put_alerts(
        &t,
        account,
        json!({"emails": ["ops@example.com"], "events": ["webhook.failing", "delivery.dead"],
               "failing_after_failures": 2}),
    )
    .await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["email_sending"], true);
    assert_eq!(settings["effective_failing_after_failures"], 2);

    let url = receiver.url("down", Behavior::Status(500));
    let webhook = t
        .create_webhook(
            account,
            json!({"url": url, "event_types": ["call.ended"], "max_attempts": 1}),
        )
        .await;
    let webhook_id = webhook["id"].as_str().unwrap().to_string();
    // Two: once an endpoint has failed, its next new deliveries wait behind its probes,
    // which would only slow the test.
    let ids = ["evt_a1", "evt_a2"];
    for id in ids {
        t.send_event(event("call.ended", account, Some(id))).await;
    }
    let mut deliveries = Vec::new();
    for id in ids {
        let delivery = t.delivery_id(account, id, &webhook_id).await;
        t.wait_for_status(account, &delivery, "dead", WAIT).await;
        deliveries.push(delivery);
    }

    // Two e-mails: the endpoint failing (at the second failure), and the first dead
    // delivery; the one dead after it is held for the digest.
    let alerts = &t.runner.services.alerts;
    let account_id = domain::ids::AccountId::parse(account).unwrap();
    let dead_topic = format!("{webhook_id}/delivery.dead/http_500");
    eventually("the second dead delivery held", WAIT, || async {
        match alerts.throttle(&account_id, &dead_topic).await.unwrap() {
            Some(state) if state.held == 1 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    sink.wait_for(2, WAIT).await;
    // Time for a third, which must not come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mails = sink.messages();
    assert_eq!(mails.len(), 2, "{mails:#?}");

    let subject = |m: &SunkMail| m.header("Subject").unwrap_or_default();
    let failing = mails
        .iter()
        .find(|m| subject(m).contains("Endpoint failing"))
        .expect("a webhook.failing e-mail");
    let dead = mails
        .iter()
        .find(|m| subject(m).contains("Delivery dead"))
        .expect("a delivery.dead e-mail");
    for m in [failing, dead] {
        assert_eq!(m.from, "alerts@example.com");
        assert_eq!(m.to, ["ops@example.com"]);
        assert!(subject(m).contains("HTTP 500"), "{}", subject(m));
        assert!(subject(m).contains(&url), "{}", subject(m));
    }
    let console = format!("http://{}/console/#/deliveries/", t.runner.addr);
    let links_one_of_the_deliveries = |text: &str| {
        deliveries
            .iter()
            .any(|d| text.contains(&format!("{console}{d}\n")))
    };
    let text = failing.text();
    assert!(
        text.contains(&format!("Endpoint: {url} ({webhook_id})")),
        "{text}"
    );
    assert!(text.contains("Cause:    HTTP 500"), "{text}");
    assert!(
        text.contains("Count:    2 attempts in a row failed (threshold 2)"),
        "{text}"
    );
    assert!(links_one_of_the_deliveries(&text), "{text}");
    let text = dead.text();
    assert!(
        text.contains("Count:    1 attempt, none succeeded"),
        "{text}"
    );
    assert!(links_one_of_the_deliveries(&text), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_settings_are_validated_kept_and_scoped_to_the_account() {
    let t = TestRunner::start().await;
    let (status, defaults) = t
        .call(Method::GET, "/v1/accounts/acct_x/alerts", None, None)
        .await;
    assert_eq!(status, 200, "{defaults}");
    assert_eq!(defaults["emails"], json!([]));
    assert_eq!(defaults["events"].as_array().unwrap().len(), 4);
    assert_eq!(defaults["email_sending"], false, "no --smtp-url");
    assert_eq!(defaults["failing_after_failures"], Value::Null);
    assert_eq!(defaults["effective_failing_after_failures"], 5);
    assert_eq!(defaults["default_failing_after_failures"], 5);

    let (status, body) = put_alerts(
        &t,
        "acct_x",
        json!({"emails": ["ops@example.com\r\nBcc: evil@example.com", "ok@example.com"],
               "events": ["call.ended"], "failing_after_failures": 0}),
    )
    .await;
    assert_error(status, &body, 400, "validation_failed");
    let pointers: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        ["/emails/0", "/events/0", "/failing_after_failures"]
    );
    let (status, body) = put_alerts(&t, "acct_x", json!({"emails": [], "extra": 1})).await;
    assert_eq!(status, 400, "{body}");

    let (status, saved) = put_alerts(&t, "acct_x", json!({"emails": [" ops@example.com "]})).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["emails"], json!(["ops@example.com"]));
    assert_eq!(
        saved["events"].as_array().unwrap().len(),
        4,
        "all by default"
    );

    // Another account's key sees its own settings, and cannot touch these.
    let other = t.account_key("acct_y").await;
    let (status, _) = t
        .call(
            Method::GET,
            "/v1/accounts/acct_x/alerts",
            Some(&other),
            None,
        )
        .await;
    assert_eq!(
        status, 404,
        "another account's settings do not exist for it"
    );
    let own = t.account_key("acct_x").await;
    let (status, read) = t
        .call(Method::GET, "/v1/accounts/acct_x/alerts", Some(&own), None)
        .await;
    assert_eq!(
        (status, &read["emails"]),
        (200, &json!(["ops@example.com"]))
    );
}
