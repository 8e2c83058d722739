//! Faults end to end through the embedded runner: an endpoint answering 410 (the delivery
//! fails and the subscription is disabled), a redirect (a failed attempt, retried), a 429's
//! `Retry-After` honoured within the retry schedule, and a destination the SSRF guard refuses
//! at delivery time (failed once, never retried).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use e2e::server::serve;
use e2e::{event, eventually, Behavior, Receiver, TestRunner, WAIT};
use serde_json::{json, Value};

fn status_codes(delivery: &Value) -> Vec<Value> {
    delivery["attempts"]
        .as_array()
        .expect("a delivery with its attempts")
        .iter()
        .map(|a| a["status_code"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_fails_the_delivery_and_disables_the_subscription() {
    let t = TestRunner::start().await;
    let r = Receiver::start().await;
    let sub = t
        .create_webhook(
            "acct_gone",
            json!({"url": r.url("gone", Behavior::Status(410)), "event_types": ["*"],
                   "retry_schedule": [1]}),
        )
        .await;
    let sub_id = sub["id"].as_str().unwrap();
    t.send_event(event("call.ended", "acct_gone", Some("evt_gone_1")))
        .await;
    let id = t.delivery_id("acct_gone", "evt_gone_1", sub_id).await;
    let d = t.wait_for_status("acct_gone", &id, "failed", WAIT).await;
    assert_eq!(d["attempt_count"], 1, "{d}");
    assert_eq!(status_codes(&d), [json!(410)]);

    // Disabled once the outcome is settled (just after it is logged).
    let disabled = eventually("the subscription to be disabled", WAIT, || async {
        let s = t.get_webhook("acct_gone", sub_id).await;
        if s["enabled"] == false {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    })
    .await;
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "no disabled_reason: {disabled}"
    );

    t.send_event(event("call.ended", "acct_gone", Some("evt_gone_2")))
        .await;
    let later = t.delivery_id("acct_gone", "evt_gone_2", sub_id).await;
    let d = t
        .wait_for_status("acct_gone", &later, "skipped", WAIT)
        .await;
    assert_eq!(d["attempt_count"], 0, "{d}");
    // The first delivery is not retried either.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        r.received("gone").len(),
        1,
        "the gone endpoint was called again"
    );
    t.runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_a_failed_attempt_and_is_retried() {
    let t = TestRunner::start().await;
    let r = Receiver::start().await;
    let sub = t
        .create_webhook(
            "acct_301",
            json!({"url": r.url("moved", Behavior::Sequence(vec![301])), "event_types": ["*"],
                   "retry_schedule": [1]}),
        )
        .await;
    t.send_event(event("call.ended", "acct_301", Some("evt_moved")))
        .await;
    let id = t
        .delivery_id("acct_301", "evt_moved", sub["id"].as_str().unwrap())
        .await;
    let d = t.wait_for_status("acct_301", &id, "succeeded", WAIT).await;
    assert_eq!(d["attempt_count"], 2, "{d}");
    assert_eq!(status_codes(&d), [json!(301), json!(200)]);
    assert_eq!(r.received("moved").len(), 2);
    t.runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_of_a_429_is_honoured_within_the_schedule() {
    let t = TestRunner::start().await;
    let calls: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = calls.clone();
    let app = Router::new().route(
        "/limited",
        post(move || {
            let seen = seen.clone();
            async move {
                let n = {
                    let mut c = seen.lock().unwrap();
                    c.push(Instant::now());
                    c.len()
                };
                if n == 1 {
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [(header::RETRY_AFTER, "2")],
                        "slow down",
                    )
                        .into_response()
                } else {
                    (StatusCode::OK, "ok").into_response()
                }
            }
        }),
    );
    let (addr, _) = serve(app).await;
    let sub = t
        .create_webhook(
            "acct_429",
            json!({"url": format!("http://{addr}/limited"), "event_types": ["*"],
                   "retry_schedule": [1]}),
        )
        .await;
    t.send_event(event("call.ended", "acct_429", Some("evt_limited")))
        .await;
    let id = t
        .delivery_id("acct_429", "evt_limited", sub["id"].as_str().unwrap())
        .await;
    let d = t.wait_for_status("acct_429", &id, "succeeded", WAIT).await;
    assert_eq!(status_codes(&d), [json!(429), json!(200)]);

    let at = calls.lock().unwrap().clone();
    assert_eq!(at.len(), 2);
    let gap = at[1] - at[0];
    // The step is 1 s (0.8–1.2 s with jitter); Retry-After: 2 lies within [1 s, 2 s], so
    // the retry waits the 2 s asked for: not less, and not some far longer wait (bounded
    // with room for a loaded machine).
    assert!(
        gap >= Duration::from_millis(1900),
        "Retry-After: 2 was not honoured: retried after {gap:?}"
    );
    assert!(gap < Duration::from_secs(15), "retried only after {gap:?}");
    t.runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_refused_at_delivery_time_fails_once_without_retry() {
    let t = TestRunner::start().await;
    let r = Receiver::start().await;
    let created = t
        .create_webhook(
            "acct_ssrf",
            json!({"url": r.url("x", Behavior::Status(200)), "event_types": ["*"],
                   "retry_schedule": [1]}),
        )
        .await;
    let sub_id = created["id"].as_str().unwrap();
    // Bypassing the API's validation, as a DNS change or an old record could.
    let mut sub = t
        .runner
        .services
        .subscriptions
        .get(
            &domain::ids::AccountId::from_static("acct_ssrf"),
            &domain::ids::SubscriptionId::parse(sub_id).unwrap(),
        )
        .await
        .unwrap()
        .expect("the subscription is stored");
    sub.url = "http://10.0.0.1/x".into();
    t.runner.services.subscriptions.put(&sub).await.unwrap();

    t.send_event(event("call.ended", "acct_ssrf", Some("evt_refused")))
        .await;
    let id = t.delivery_id("acct_ssrf", "evt_refused", sub_id).await;
    let d = t.wait_for_status("acct_ssrf", &id, "failed", WAIT).await;
    let mentions_refused = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.to_ascii_lowercase().contains("refused"))
    };
    assert!(mentions_refused(&d["last_error"]), "{d}");
    assert_eq!(d["attempt_count"], 1, "{d}");
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{d}");
    assert!(attempts[0]["status_code"].is_null(), "{d}");
    assert!(mentions_refused(&attempts[0]["error"]), "{d}");

    // Longer than the 1 s retry step: nothing more happens.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let d = t.delivery("acct_ssrf", &id).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(
        d["attempt_count"], 1,
        "a refused destination was retried: {d}"
    );
    assert!(t
        .runner
        .services
        .deliveries_queue
        .receive(10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    assert!(r.received("x").is_empty());
    t.runner.shutdown().await;
}
