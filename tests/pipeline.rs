//! The pipeline end to end on the embedded default: real HTTP in, real SQLite, real HTTP out.

use std::time::Duration;

use e2e::{delivery_id, event, verify_signature, Behavior, Receiver, TestRunner};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

async fn an_event_reaches_each_matching_subscription_of_its_account_once_signed(t: TestRunner) {
    let r = Receiver::start().await;
    let family = t
        .create_webhook(
            "acct_a",
            json!({"url": r.url("family", Behavior::Status(204)), "event_types": ["call.*"]}),
        )
        .await;
    let exact = t
        .create_webhook(
            "acct_a",
            json!({"url": r.url("exact", Behavior::Status(200)), "event_types": ["call.ended"]}),
        )
        .await;
    let all = t
        .create_webhook(
            "acct_a",
            json!({"url": r.url("all", Behavior::Status(202)), "event_types": ["*"]}),
        )
        .await;
    t.create_webhook("acct_a", json!({"url": r.url("other_type", Behavior::Status(200)), "event_types": ["agent.*", "call.started"]}))
        .await;
    t.create_webhook(
        "acct_b",
        json!({"url": r.url("other_account", Behavior::Status(200)), "event_types": ["*"]}),
    )
    .await;

    let accepted = t
        .send_event(event("call.ended", "acct_a", Some("evt_fanout_1")))
        .await;
    assert_eq!(accepted, json!({"id": "evt_fanout_1", "duplicate": false}));

    for (path, sub) in [("family", &family), ("exact", &exact), ("all", &all)] {
        let got = r.wait_for(path, 1, WAIT).await;
        let request = &got[0];
        let secret = sub["secret"].as_str().unwrap();
        assert!(
            verify_signature(secret, request),
            "{path}: signature does not verify"
        );
        assert_eq!(
            request.header("webhook-id"),
            delivery_id("acct_a", "evt_fanout_1", sub["id"].as_str().unwrap())
        );
        assert_eq!(request.header("content-type"), "application/json");
        assert!(request
            .header("user-agent")
            .starts_with("VoiceHooks-Webhooks/"));
        let body = request.json();
        assert_eq!(body["id"], "evt_fanout_1");
        assert_eq!(body["type"], "call.ended");
        assert_eq!(body["account_id"], "acct_a");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            body["data"]["call_id"],
            event("call.ended", "x", None)["data"]["call_id"]
        );
        // Another subscription's secret must not verify it.
        let other = if path == "family" { &exact } else { &family };
        assert!(!verify_signature(
            other["secret"].as_str().unwrap(),
            request
        ));
    }
    // Let any stray delivery arrive before asserting there was none.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for path in ["family", "exact", "all"] {
        assert_eq!(r.received(path).len(), 1, "{path} got a duplicate");
    }
    assert!(
        r.received("other_type").is_empty(),
        "a non-matching subscription got the event"
    );
    assert!(
        r.received("other_account").is_empty(),
        "another account got the event"
    );

    let d = t
        .wait_for_status(
            "acct_a",
            &delivery_id("acct_a", "evt_fanout_1", family["id"].as_str().unwrap()),
            "succeeded",
            WAIT,
        )
        .await;
    assert_eq!(d["attempts"][0]["status_code"], 204);
    t.runner.shutdown().await;
}

async fn a_failing_endpoint_is_retried_with_growing_gaps_and_the_same_webhook_id(t: TestRunner) {
    let r = Receiver::start().await;
    let sub = t
        .create_webhook(
            "acct_r",
            json!({"url": r.url("flaky", Behavior::Sequence(vec![500, 500])),
                   "event_types": ["call.failed"], "retry_schedule": [1, 3]}),
        )
        .await;
    t.send_event(event("call.failed", "acct_r", Some("evt_retry")))
        .await;

    let got = r.wait_for("flaky", 3, WAIT).await;
    let ids: Vec<&str> = got.iter().map(|g| g.header("webhook-id")).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "webhook-id changed across retries: {ids:?}"
    );
    let first_gap = got[1].at - got[0].at;
    let second_gap = got[2].at - got[1].at;
    // Schedule [1 s, 3 s] with ±20 % jitter: 0.8–1.2 s, then 2.4–3.6 s (SQS rounds up
    // to whole seconds).
    assert!(
        first_gap >= Duration::from_millis(790),
        "first gap {first_gap:?}"
    );
    assert!(
        second_gap > first_gap,
        "gaps did not grow: {first_gap:?}, {second_gap:?}"
    );
    for g in &got {
        assert!(verify_signature(sub["secret"].as_str().unwrap(), g));
    }

    let id = delivery_id("acct_r", "evt_retry", sub["id"].as_str().unwrap());
    let d = t.wait_for_status("acct_r", &id, "succeeded", WAIT).await;
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    let codes: Vec<_> = attempts
        .iter()
        .map(|a| a["status_code"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [500, 500, 200]);
    assert_eq!(
        attempts
            .iter()
            .map(|a| a["attempt"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(attempts.iter().all(|a| a["latency_ms"].is_u64()));
    assert_eq!(d["attempt_count"], 3);
    assert_eq!(d["request"]["headers"]["webhook-id"], id);
    assert_eq!(d["request"]["body"]["id"], "evt_retry");
    assert!(t
        .runner
        .services
        .deliveries_queue
        .receive(10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    t.runner.shutdown().await;
}

async fn an_endpoint_that_always_fails_ends_dead_in_the_dead_letter_queue(t: TestRunner) {
    let r = Receiver::start().await;
    let sub = t
        .create_webhook(
            "acct_d",
            json!({"url": r.url("down", Behavior::Status(503)), "event_types": ["agent.*"],
                   "max_attempts": 3, "retry_schedule": [1]}),
        )
        .await;
    t.send_event(event("agent.status_changed", "acct_d", Some("evt_dead")))
        .await;
    let id = delivery_id("acct_d", "evt_dead", sub["id"].as_str().unwrap());
    let d = t.wait_for_status("acct_d", &id, "dead", WAIT).await;
    assert_eq!(d["attempt_count"], 3);
    assert_eq!(d["attempts"].as_array().unwrap().len(), 3);
    assert!(d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["status_code"] == 503));
    assert_eq!(r.received("down").len(), 3);

    let dead = t
        .runner
        .services
        .dead_letter_queue
        .receive(10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    let letter: serde_json::Value = serde_json::from_str(&dead[0].body).unwrap();
    assert_eq!(letter["delivery"]["delivery_id"], id);
    assert_eq!(letter["attempts"].as_array().unwrap().len(), 3);
    // Gone from the work queue: nothing comes back later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(r.received("down").len(), 3);
    t.runner.shutdown().await;
}

async fn a_repeated_event_id_delivers_nothing_new(t: TestRunner) {
    let r = Receiver::start().await;
    t.create_webhook(
        "acct_i",
        json!({"url": r.url("once", Behavior::Status(200)), "event_types": ["*"]}),
    )
    .await;
    let first = t
        .send_event(event("user.action", "acct_i", Some("evt_same")))
        .await;
    assert_eq!(first["duplicate"], false);
    r.wait_for("once", 1, WAIT).await;
    let again = t
        .send_event(event("user.action", "acct_i", Some("evt_same")))
        .await;
    assert_eq!(again, json!({"id": "evt_same", "duplicate": true}));
    let batch = t
        .send_event(
            json!({"events": [event("user.action", "acct_i", Some("evt_same")),
                                     event("user.action", "acct_i", Some("evt_new"))]}),
        )
        .await;
    assert_eq!(batch["results"][0]["duplicate"], true);
    assert_eq!(batch["results"][1]["duplicate"], false);
    r.wait_for("once", 2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids: Vec<String> = r
        .received("once")
        .iter()
        .map(|g| g.json()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["evt_same", "evt_new"]);
    t.runner.shutdown().await;
}

async fn a_slow_endpoint_does_not_hold_up_the_fast_ones_in_its_batch(t: TestRunner) {
    let r = Receiver::start().await;
    t.create_webhook(
        "acct_s",
        json!({"url": r.url("slow", Behavior::Sleep(Duration::from_secs(5))), "event_types": ["*"],
               "timeout_seconds": 3}),
    )
    .await;
    for i in 0..3 {
        t.create_webhook(
            "acct_s",
            json!({"url": r.url(&format!("fast{i}"), Behavior::Status(200)), "event_types": ["*"]}),
        )
        .await;
    }
    // One event: its four deliveries go out in the same queue batch.
    t.send_event(event("call.queued", "acct_s", Some("evt_slow")))
        .await;
    let slow = r.wait_for("slow", 1, WAIT).await;
    for i in 0..3 {
        let fast = r.wait_for(&format!("fast{i}"), 1, WAIT).await;
        // Sent concurrently: each fast request arrives while the slow one is still waiting
        // for its 3 s timeout, not after it.
        let offset = if fast[0].at > slow[0].at {
            fast[0].at - slow[0].at
        } else {
            Duration::ZERO
        };
        assert!(
            offset < Duration::from_secs(2),
            "fast{i} waited for the slow endpoint: {offset:?}"
        );
    }
    t.runner.shutdown().await;
}

async fn a_paused_subscription_receives_nothing_and_the_skip_is_recorded(t: TestRunner) {
    let r = Receiver::start().await;
    let paused = t
        .create_webhook("acct_p", json!({"url": r.url("paused", Behavior::Status(200)), "event_types": ["*"], "enabled": false}))
        .await;
    t.send_event(event("system.maintenance", "acct_p", Some("evt_paused")))
        .await;
    let id = delivery_id("acct_p", "evt_paused", paused["id"].as_str().unwrap());
    let d = t.wait_for_status("acct_p", &id, "skipped", WAIT).await;
    assert_eq!(d["attempt_count"], 0);
    assert!(r.received("paused").is_empty());
    t.runner.shutdown().await;
}

async fn each_attempt_uses_the_subscription_as_it_is_now(t: TestRunner) {
    let r = Receiver::start().await;
    let sub = t
        .create_webhook(
            "acct_n",
            json!({"url": r.url("changing", Behavior::Status(500)), "event_types": ["*"], "retry_schedule": [2]}),
        )
        .await;
    t.send_event(event(
        "knowledge_base.updated",
        "acct_n",
        Some("evt_pause_later"),
    ))
    .await;
    r.wait_for("changing", 1, WAIT).await;
    // Paused while its retry waits: the retry is skipped, not sent.
    let (status, _) = t
        .call(
            reqwest::Method::PATCH,
            &format!(
                "/v1/accounts/acct_n/webhooks/{}",
                sub["id"].as_str().unwrap()
            ),
            None,
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 200);
    let id = delivery_id("acct_n", "evt_pause_later", sub["id"].as_str().unwrap());
    let d = t.wait_for_status("acct_n", &id, "skipped", WAIT).await;
    assert_eq!(d["attempt_count"], 1);
    assert_eq!(r.received("changing").len(), 1);
    t.runner.shutdown().await;
}

async fn a_rate_limited_endpoint_is_paced_without_spending_attempts(t: TestRunner) {
    let r = Receiver::start().await;
    let sub = t
        .create_webhook(
            "acct_rl",
            json!({"url": r.url("paced", Behavior::Status(200)), "event_types": ["*"],
                   "rate_limit_per_second": 2, "max_attempts": 1}),
        )
        .await;
    let events: Vec<_> = (0..6)
        .map(|i| {
            event(
                "call.cost_calculated",
                "acct_rl",
                Some(&format!("evt_rl{i}")),
            )
        })
        .collect();
    t.send_event(json!({ "events": events })).await;
    let got = r.wait_for("paced", 6, Duration::from_secs(30)).await;
    // A burst of 2, then 2 per second: the last arrives at least ~1.5 s after the first.
    let spread = got[5].at - got[0].at;
    assert!(
        spread >= Duration::from_millis(1400),
        "not paced: {spread:?}"
    );
    // Deferred deliveries spent no attempt: with a budget of one, all succeed.
    for i in 0..6 {
        let id = delivery_id(
            "acct_rl",
            &format!("evt_rl{i}"),
            sub["id"].as_str().unwrap(),
        );
        let d = t.wait_for_status("acct_rl", &id, "succeeded", WAIT).await;
        assert_eq!(d["attempt_count"], 1);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(r.received("paced").len(), 6);
}

/// The auto-disable period these runners use.
const AUTO_DISABLE_AFTER_SECONDS: u64 = 2;

async fn an_endpoint_failing_for_the_whole_period_is_disabled_and_announced(t: TestRunner) {
    let r = Receiver::start().await;
    let acct = "acct_health";
    let failing = t
        .create_webhook(
            acct,
            json!({"url": r.url("down", Behavior::Status(500)), "event_types": ["call.ended"],
                   "retry_schedule": [1], "max_attempts": 10}),
        )
        .await;
    let flaky = t
        .create_webhook(
            acct,
            json!({"url": r.url("flaky", Behavior::Sequence(vec![500])),
                   "event_types": ["call.ended"], "retry_schedule": [1], "max_attempts": 10}),
        )
        .await;
    let ops = t
        .create_webhook(
            acct,
            json!({"url": r.url("ops", Behavior::Status(204)), "event_types": ["webhook.*"]}),
        )
        .await;
    let failing_id = failing["id"].as_str().unwrap();
    t.send_event(event("call.ended", acct, Some("evt_health_1")))
        .await;

    // The first failure starts the clock; a success stops it.
    let flaky_seen = r.wait_for("flaky", 2, WAIT).await;
    assert_eq!(flaky_seen.len(), 2);
    let announced = r.wait_for("ops", 1, WAIT).await;
    let disabled = t.get_webhook(acct, failing_id).await;
    assert_eq!(disabled["enabled"], false, "{disabled}");
    let reason = disabled["disabled_reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("every attempt failed for ") && reason.contains(" seconds (since "),
        "{disabled}"
    );
    assert!(disabled["failing_since"].is_string(), "{disabled}");
    assert!(disabled["disabled_at"].is_string(), "{disabled}");
    // Not before the period had passed since the first failure.
    let attempts = r.received("down");
    assert!(
        attempts.len() >= 2,
        "disabled after {} attempt",
        attempts.len()
    );
    let span = attempts.last().unwrap().at - attempts[0].at;
    // (Less a little: the receiver stamps arrival, the service the start of the attempt.)
    assert!(
        span + Duration::from_millis(100) >= Duration::from_secs(AUTO_DISABLE_AFTER_SECONDS),
        "{span:?}"
    );

    let note = &announced[0];
    assert!(verify_signature(ops["secret"].as_str().unwrap(), note));
    let body = note.json();
    assert_eq!(body["type"], "webhook.disabled");
    assert_eq!(body["account_id"], acct);
    assert_eq!(body["data"]["webhook_id"], failing_id);
    assert_eq!(body["data"]["url"], failing["url"]);
    assert_eq!(body["data"]["reason"], "failing");
    assert_eq!(body["data"]["failing_since"], disabled["failing_since"]);
    assert_eq!(body["data"]["disabled_at"], disabled["disabled_at"]);

    let healthy = t.get_webhook(acct, flaky["id"].as_str().unwrap()).await;
    assert_eq!(healthy["enabled"], true, "{healthy}");
    assert!(healthy["failing_since"].is_null(), "{healthy}");

    // No more attempts once disabled, and one announcement only.
    let calls = r.received("down").len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(r.received("down").len(), calls);
    assert_eq!(r.received("ops").len(), 1);

    // Re-enabled, it starts afresh.
    let (status, back) = t
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/accounts/{acct}/webhooks/{failing_id}"),
            None,
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(back["enabled"], true);
    assert!(
        back["disabled_reason"].is_null()
            && back["failing_since"].is_null()
            && back["disabled_at"].is_null(),
        "{back}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_auto_disable() {
    let t =
        TestRunner::start_with(|c| c.auto_disable_after_seconds = AUTO_DISABLE_AFTER_SECONDS).await;
    an_endpoint_failing_for_the_whole_period_is_disabled_and_announced(t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_auto_disable() {
    let t = TestRunner::start_moto_with("auto_disable", |c| {
        c.auto_disable_after_seconds = AUTO_DISABLE_AFTER_SECONDS
    })
    .await;
    an_endpoint_failing_for_the_whole_period_is_disabled_and_announced(t).await;
}

/// Instantiates every case for one backend.
macro_rules! on_backend {
    ($backend:ident, $start:path; $($case:ident),* $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($start(stringify!($case)).await).await;
                }
            )*
        }
    };
}

async fn embedded(_: &str) -> TestRunner {
    TestRunner::start().await
}

on_backend!(embedded, embedded; an_event_reaches_each_matching_subscription_of_its_account_once_signed, a_failing_endpoint_is_retried_with_growing_gaps_and_the_same_webhook_id, an_endpoint_that_always_fails_ends_dead_in_the_dead_letter_queue, a_repeated_event_id_delivers_nothing_new, a_slow_endpoint_does_not_hold_up_the_fast_ones_in_its_batch, a_paused_subscription_receives_nothing_and_the_skip_is_recorded, each_attempt_uses_the_subscription_as_it_is_now, a_rate_limited_endpoint_is_paced_without_spending_attempts);
on_backend!(moto, TestRunner::start_moto; an_event_reaches_each_matching_subscription_of_its_account_once_signed, a_failing_endpoint_is_retried_with_growing_gaps_and_the_same_webhook_id, an_endpoint_that_always_fails_ends_dead_in_the_dead_letter_queue, a_repeated_event_id_delivers_nothing_new, a_slow_endpoint_does_not_hold_up_the_fast_ones_in_its_batch, a_paused_subscription_receives_nothing_and_the_skip_is_recorded, each_attempt_uses_the_subscription_as_it_is_now, a_rate_limited_endpoint_is_paced_without_spending_attempts);
