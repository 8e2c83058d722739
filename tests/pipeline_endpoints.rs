//! The pipeline end to end, on the embedded default and on SQS and DynamoDB (moto): how an
//! endpoint's behaviour and its subscription's settings shape delivery. A slow endpoint does
//! not hold up the fast ones in its batch; a paused subscription's skip is recorded; each
//! attempt uses the subscription as it is now; a rate-limited endpoint is paced without
//! spending attempts; an endpoint failing for the whole auto-disable period is disabled and
//! announced. Each case runs on both backends, as `backend::case`.

use std::time::{Duration, Instant};

use e2e::{
    event, eventually, on_backend, verify_signature, Behavior, Gate, Receiver, TestRunner, WAIT,
};
use serde_json::json;

async fn a_slow_endpoint_does_not_hold_up_the_fast_ones_in_its_batch(t: TestRunner) {
    let r = Receiver::start().await;
    t.create_webhook(
        "acct_s",
        json!({"url": r.url("slow", Behavior::Sleep(Duration::from_secs(60))), "event_types": ["*"],
               "timeout_seconds": 30}),
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
        // for its 30 s timeout, not after it (the bound leaves a loaded machine its slack).
        let offset = fast[0].at.saturating_duration_since(slow[0].at);
        assert!(
            offset < Duration::from_secs(15),
            "fast{i} waited for the slow endpoint: {offset:?}"
        );
    }
    // Not shut down: that would wait for the slow attempt to time out.
}

async fn a_paused_subscription_receives_nothing_and_the_skip_is_recorded(t: TestRunner) {
    let r = Receiver::start().await;
    let paused = t
        .create_webhook("acct_p", json!({"url": r.url("paused", Behavior::Status(200)), "event_types": ["*"], "enabled": false}))
        .await;
    t.send_event(event("system.maintenance", "acct_p", Some("evt_paused")))
        .await;
    let id = t
        .delivery_id("acct_p", "evt_paused", paused["id"].as_str().unwrap())
        .await;
    let d = t.wait_for_status("acct_p", &id, "skipped", WAIT).await;
    assert_eq!(d["attempt_count"], 0);
    assert!(r.received("paused").is_empty());
    t.runner.shutdown().await;
}

async fn each_attempt_uses_the_subscription_as_it_is_now(t: TestRunner) {
    let r = Receiver::start().await;
    // The first attempt is answered only once the subscription is paused, so however slow
    // the pause, it lands before the retry.
    let gate = Gate::new();
    let sub = t
        .create_webhook(
            "acct_n",
            json!({"url": r.url("changing", Behavior::Held(500, gate.clone())), "event_types": ["*"], "retry_schedule": [2]}),
        )
        .await;
    t.send_event(event(
        "knowledge_base.updated",
        "acct_n",
        Some("evt_pause_later"),
    ))
    .await;
    r.wait_for("changing", 1, WAIT).await;
    // Paused before its retry: the retry is skipped, not sent.
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
    gate.open();
    let id = t
        .delivery_id("acct_n", "evt_pause_later", sub["id"].as_str().unwrap())
        .await;
    let (got, d) = t
        .wait_for_logged("acct_n", &id, "skipped", &r, "changing", WAIT)
        .await;
    // One attempt (or a copy of it, sent at once, where a queue may hand out two).
    if !t.may_duplicate {
        assert_eq!(got.len(), 1, "{d}");
        assert_eq!(d["attempt_count"], 1);
    }
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
    let sent = Instant::now();
    t.send_event(json!({ "events": events })).await;
    let got = r.wait_for("paced", 6, WAIT).await;
    // A burst of 2, then 2 per second: six requests take 2 s of tokens from the first one,
    // which went out after the events were sent. Load only spreads them further.
    let spread = got[5].at.saturating_duration_since(sent);
    assert!(
        spread >= Duration::from_millis(1900),
        "not paced: the sixth request {spread:?} after the events were sent"
    );
    // Deferred deliveries spent no attempt: with a budget of one, all succeed.
    for i in 0..6 {
        let id = t
            .delivery_id(
                "acct_rl",
                &format!("evt_rl{i}"),
                sub["id"].as_str().unwrap(),
            )
            .await;
        let (got, d) = t
            .wait_for_logged("acct_rl", &id, "succeeded", &r, "paced", WAIT)
            .await;
        if !t.may_duplicate {
            assert_eq!(got.len(), 1, "{d}");
            assert_eq!(d["attempt_count"], 1);
        }
    }
    // Let any stray delivery arrive before asserting there was none.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = r.received("paced");
    if t.may_duplicate {
        let ids: std::collections::HashSet<&str> =
            got.iter().map(|g| g.header("webhook-id")).collect();
        assert_eq!(ids.len(), 6, "{ids:?}");
    } else {
        assert_eq!(got.len(), 6);
    }
}

/// The auto-disable period these runners use.
const AUTO_DISABLE_AFTER_SECONDS: u64 = 2;
/// The failing threshold these runners use: the first failure, so that it is announced
/// before the short auto-disable period can end (counting up to a higher threshold is the
/// app's unit tests' business).
const FAILING_AFTER_FAILURES: u32 = 1;

/// The operational events `ops` received, as (type, the endpoint it is about).
fn kinds(notes: &[e2e::Received]) -> Vec<(String, String)> {
    let mut kinds: Vec<(String, String)> = notes
        .iter()
        .map(|n| {
            let body = n.json();
            (
                body["type"].as_str().unwrap_or_default().to_string(),
                body["data"]["webhook_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

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
    if !t.may_duplicate {
        assert_eq!(flaky_seen.len(), 2);
    }
    // Both are announced failing at their first failure; the flaky one recovered,
    // the other was disabled. Nothing about an endpoint goes to that endpoint.
    let flaky_id = flaky["id"].as_str().unwrap();
    let expected = {
        let mut e = vec![
            ("webhook.disabled".to_string(), failing_id.to_string()),
            ("webhook.failing".to_string(), failing_id.to_string()),
            ("webhook.failing".to_string(), flaky_id.to_string()),
            ("webhook.recovered".to_string(), flaky_id.to_string()),
        ];
        e.sort();
        e
    };
    let announced = eventually("ops to hear of both endpoints", WAIT, || async {
        let got = r.received("ops");
        if kinds(&got) == expected {
            Ok(got)
        } else {
            Err(format!("{:?}", kinds(&got)))
        }
    })
    .await;
    let of = |kind: &str, about: &str| {
        announced
            .iter()
            .find(|n| n.json()["type"] == kind && n.json()["data"]["webhook_id"] == about)
            .unwrap()
            .clone()
    };
    let failing_note = of("webhook.failing", failing_id).json();
    assert_eq!(
        failing_note["data"]["consecutive_failures"],
        FAILING_AFTER_FAILURES
    );
    assert_eq!(failing_note["data"]["threshold"], FAILING_AFTER_FAILURES);
    assert_eq!(failing_note["data"]["cause"], "http_500");
    let recovered = of("webhook.recovered", flaky_id).json();
    assert!(
        recovered["data"]["failing_since"].is_string(),
        "{recovered}"
    );
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
    let requests = r.received("down").len();
    assert!(requests >= 2, "disabled after {requests} attempt");
    // Timed as the service timed the attempts, by their starts: arrivals at the endpoint lag
    // those by a latency a loaded machine can stretch for the first and not the last.
    let logged = t
        .runner
        .services
        .deliveries
        .attempts(
            &domain::ids::AccountId::parse(acct).unwrap(),
            &domain::ids::DeliveryId::parse(t.delivery_id(acct, "evt_health_1", failing_id).await)
                .unwrap(),
        )
        .await
        .unwrap();
    let starts = || logged.iter().map(|a| a.at);
    let span_ms = starts().max().unwrap().as_millis() - starts().min().unwrap().as_millis();
    assert!(
        span_ms >= AUTO_DISABLE_AFTER_SECONDS as i64 * 1000,
        "disabled after failures over {span_ms} ms"
    );

    let note = &of("webhook.disabled", failing_id);
    assert!(verify_signature(ops["secret"].as_str().unwrap(), note));
    let body = note.json();
    assert_eq!(body["type"], "webhook.disabled");
    assert_eq!(body["account_id"], acct);
    assert_eq!(body["data"]["webhook_id"], failing_id);
    assert_eq!(body["data"]["url"], failing["url"]);
    assert_eq!(body["data"]["reason"], "failing");
    assert_eq!(body["data"]["failing_since"], disabled["failing_since"]);
    assert_eq!(body["data"]["disabled_at"], disabled["disabled_at"]);

    // Its success recorded (just after the endpoint answered), the flaky one is healthy.
    eventually("the flaky endpoint to be healthy", WAIT, || async {
        let healthy = t.get_webhook(acct, flaky_id).await;
        if healthy["enabled"] == true && healthy["failing_since"].is_null() {
            Ok(())
        } else {
            Err(healthy.to_string())
        }
    })
    .await;

    // No more attempts once disabled, and one announcement only.
    let calls = r.received("down").len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(r.received("down").len(), calls);
    let notes = r.received("ops");
    assert_eq!(kinds(&notes), expected);
    if t.may_duplicate {
        // Delivered at least once: a second copy is the same announcement.
        let mut ids: Vec<&str> = notes.iter().map(|n| n.header("webhook-id")).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), expected.len(), "announced twice");
    } else {
        assert_eq!(notes.len(), expected.len(), "announced twice");
    }

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
    let t = TestRunner::start_with(|c| {
        c.auto_disable_after_seconds = AUTO_DISABLE_AFTER_SECONDS;
        c.failing_after_failures = FAILING_AFTER_FAILURES;
    })
    .await;
    an_endpoint_failing_for_the_whole_period_is_disabled_and_announced(t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_auto_disable() {
    let t = TestRunner::start_moto_with("auto_disable", |c| {
        c.auto_disable_after_seconds = AUTO_DISABLE_AFTER_SECONDS;
        c.failing_after_failures = FAILING_AFTER_FAILURES;
    })
    .await;
    an_endpoint_failing_for_the_whole_period_is_disabled_and_announced(t).await;
}

on_backend!(embedded, TestRunner::start_embedded;
    a_slow_endpoint_does_not_hold_up_the_fast_ones_in_its_batch,
    a_paused_subscription_receives_nothing_and_the_skip_is_recorded,
    each_attempt_uses_the_subscription_as_it_is_now,
    a_rate_limited_endpoint_is_paced_without_spending_attempts
);
on_backend!(moto, TestRunner::start_moto;
    a_slow_endpoint_does_not_hold_up_the_fast_ones_in_its_batch,
    a_paused_subscription_receives_nothing_and_the_skip_is_recorded,
    each_attempt_uses_the_subscription_as_it_is_now,
    a_rate_limited_endpoint_is_paced_without_spending_attempts
);
