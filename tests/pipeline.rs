//! The pipeline end to end on the embedded default: real HTTP in, real SQLite, real HTTP out.

use std::time::{Duration, Instant};

use e2e::{
    delivery_id, event, eventually, verify_signature, Behavior, Gate, Receiver, TestRunner, WAIT,
};
use serde_json::json;

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
    // Each request is in the log, as an attempt answered with the endpoint's status.
    let ids: Vec<(&str, String)> = [("family", &family), ("exact", &exact), ("all", &all)]
        .into_iter()
        .map(|(path, sub)| {
            let id = delivery_id("acct_a", "evt_fanout_1", sub["id"].as_str().unwrap());
            (path, id)
        })
        .collect();
    for ((path, id), code) in ids.iter().zip([204, 200, 202]) {
        let (_, d) = t
            .wait_for_logged("acct_a", id, "succeeded", &r, path, WAIT)
            .await;
        let attempts = d["attempts"].as_array().unwrap();
        assert!(attempts.iter().all(|a| a["status_code"] == code), "{d}");
    }
    // Let any stray delivery arrive before asserting there was none.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (path, id) in &ids {
        let got = r.received(path);
        if t.may_duplicate {
            // Delivered at least once: a second copy is the same request again.
            assert!(
                got.iter()
                    .all(|g| g.header("webhook-id") == id.as_str() && g.body == got[0].body),
                "{path} got another delivery"
            );
        } else {
            assert_eq!(got.len(), 1, "{path} got a duplicate");
        }
    }
    assert!(
        r.received("other_type").is_empty(),
        "a non-matching subscription got the event"
    );
    assert!(
        r.received("other_account").is_empty(),
        "another account got the event"
    );
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

    let id = delivery_id("acct_r", "evt_retry", sub["id"].as_str().unwrap());
    // Succeeded, with every request the endpoint got in the log as an attempt of its own
    // (a queue that delivers at least once may have sent a copy as well).
    let (got, d) = t
        .wait_for_logged("acct_r", &id, "succeeded", &r, "flaky", WAIT)
        .await;
    let ids: Vec<String> = r
        .received("flaky")
        .iter()
        .map(|g| g.header("webhook-id").to_string())
        .collect();
    assert!(
        ids.iter().all(|i| *i == id),
        "webhook-id changed across retries: {ids:?}"
    );
    for g in &got {
        assert!(verify_signature(sub["secret"].as_str().unwrap(), g));
    }
    let n = got.len();
    // The endpoint answers 500 twice, then 200: a success took at least three requests.
    assert!(n >= 3, "succeeded after {n} requests: {d}");
    if !t.may_duplicate {
        assert_eq!(n, 3, "{d}");
    }
    let attempts = d["attempts"].as_array().unwrap();
    let codes: Vec<_> = attempts
        .iter()
        .map(|a| a["status_code"].as_u64().unwrap())
        .collect();
    // Attempts are listed in the order they started; two copies sent at once may reach the
    // endpoint the other way round, so beyond the first and the last only the counts tell.
    assert_eq!(codes.iter().filter(|c| **c == 500).count(), 2, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 500 || *c == 200), "{codes:?}");
    assert_eq!((codes[0], codes[n - 1]), (500, 200), "{codes:?}");
    if n == 3 {
        assert_eq!(codes, [500, 500, 200]);
    }
    assert_eq!(
        attempts
            .iter()
            .map(|a| a["attempt"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        (1..=n as u64).collect::<Vec<_>>()
    );
    assert!(attempts.iter().all(|a| a["latency_ms"].is_u64()));
    assert_eq!(d["attempt_count"], n);
    assert_eq!(d["request"]["headers"]["webhook-id"], id);
    assert_eq!(d["request"]["body"]["id"], "evt_retry");

    // Schedule [1 s, 3 s] with ±20 % jitter: at least 0.8 s, then at least 2.4 s (SQS rounds
    // up to whole seconds). A retry waits from the end of the attempt before it, so a gap
    // between arrivals is never shorter than its step; load only makes it longer.
    let gap = |from: usize, to: usize| got[to].at.saturating_duration_since(got[from].at);
    // Whatever copies there were, the first success (the third request) came at least a
    // first step after the first request.
    assert!(
        gap(0, 2) >= Duration::from_millis(790),
        "first success {:?} after the first request",
        gap(0, 2)
    );
    if !t.may_duplicate {
        let (first_gap, second_gap) = (gap(0, 1), gap(1, 2));
        assert!(
            first_gap >= Duration::from_millis(790),
            "first gap {first_gap:?}"
        );
        assert!(
            second_gap >= Duration::from_millis(2390),
            "second gap {second_gap:?}, shorter than its 3 s step (first gap {first_gap:?})"
        );
    }
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
    let (got, d) = t
        .wait_for_logged("acct_d", &id, "dead", &r, "down", WAIT)
        .await;
    // Three attempts, each logged (more only where a queue handed out a copy).
    if t.may_duplicate {
        assert!(got.len() >= 3, "{d}");
    } else {
        assert_eq!(got.len(), 3, "{d}");
    }
    assert!(d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["status_code"] == 503));

    // Moved to the dead-letter queue once its outcome is logged.
    let dead = eventually("the dead letter", WAIT, || async {
        let dead = t
            .runner
            .services
            .dead_letter_queue
            .receive(10, Duration::from_secs(1))
            .await
            .unwrap();
        if dead.is_empty() {
            Err("nothing yet".to_string())
        } else {
            Ok(dead)
        }
    })
    .await;
    if !t.may_duplicate {
        assert_eq!(dead.len(), 1);
    }
    for m in &dead {
        let letter: serde_json::Value = serde_json::from_str(&m.body).unwrap();
        assert_eq!(letter["delivery"]["delivery_id"], id);
        let attempts = letter["attempts"].as_array().unwrap().len();
        if t.may_duplicate {
            assert!(attempts >= 3, "{letter}");
        } else {
            assert_eq!(attempts, 3, "{letter}");
        }
    }
    // Gone from the work queue: nothing comes back later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    if t.may_duplicate {
        // A copy still in flight may land, as an attempt of its own; the delivery stays dead.
        t.wait_for_logged("acct_d", &id, "dead", &r, "down", WAIT)
            .await;
    } else {
        assert_eq!(r.received("down").len(), 3);
    }
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
    let delivered = || -> Vec<String> {
        r.received("once")
            .iter()
            .map(|g| g.json()["id"].as_str().unwrap().to_string())
            .collect()
    };
    eventually("evt_new to be delivered", WAIT, || async {
        let ids = delivered();
        if ids.iter().any(|i| i == "evt_new") {
            Ok(())
        } else {
            Err(format!("{ids:?}"))
        }
    })
    .await;
    // Let any stray delivery arrive before asserting there was none.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = delivered();
    if t.may_duplicate {
        // Delivered at least once: copies aside, each event once, in order.
        let mut distinct: Vec<String> = Vec::new();
        for i in &ids {
            if !distinct.contains(i) {
                distinct.push(i.clone());
            }
        }
        assert_eq!(distinct, ["evt_same", "evt_new"], "{ids:?}");
    } else {
        assert_eq!(ids, ["evt_same", "evt_new"]);
    }
    t.runner.shutdown().await;
}

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
    let id = delivery_id("acct_p", "evt_paused", paused["id"].as_str().unwrap());
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
    let id = delivery_id("acct_n", "evt_pause_later", sub["id"].as_str().unwrap());
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
        let id = delivery_id(
            "acct_rl",
            &format!("evt_rl{i}"),
            sub["id"].as_str().unwrap(),
        );
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
    let requests = r.received("down").len();
    assert!(requests >= 2, "disabled after {requests} attempt");
    // Timed as the service timed the attempts, by their starts: arrivals at the endpoint lag
    // those by a latency a loaded machine can stretch for the first and not the last.
    let logged = t
        .runner
        .services
        .deliveries
        .attempts(acct, &delivery_id(acct, "evt_health_1", failing_id))
        .await
        .unwrap();
    let starts = || logged.iter().map(|a| a.at);
    let span_ms = starts().max().unwrap() - starts().min().unwrap();
    assert!(
        span_ms >= AUTO_DISABLE_AFTER_SECONDS as i64 * 1000,
        "disabled after failures over {span_ms} ms"
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

    // Its success recorded (just after the endpoint answered), the flaky one is healthy.
    let flaky_id = flaky["id"].as_str().unwrap();
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
    if t.may_duplicate {
        // Delivered at least once: a second copy is the same announcement.
        assert!(
            notes
                .iter()
                .all(|n| n.header("webhook-id") == note.header("webhook-id")),
            "announced twice"
        );
    } else {
        assert_eq!(notes.len(), 1);
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
