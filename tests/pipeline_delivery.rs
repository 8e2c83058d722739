//! The pipeline end to end, on the embedded default (real HTTP in, real SQLite, real HTTP
//! out) and on SQS and DynamoDB (moto): an event fanned out to each matching subscription of
//! its account, signed; a failing endpoint retried with growing gaps and the same
//! `webhook-id`; an endpoint that always fails ending in the dead-letter queue; a repeated
//! event id delivering nothing new. Each case runs on both backends, as `backend::case`.

use std::time::Duration;

use e2e::{event, eventually, on_backend, verify_signature, Behavior, Receiver, TestRunner, WAIT};
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
            t.delivery_id("acct_a", "evt_fanout_1", sub["id"].as_str().unwrap())
                .await
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
    let mut ids: Vec<(&str, String)> = Vec::new();
    for (path, sub) in [("family", &family), ("exact", &exact), ("all", &all)] {
        let id = t
            .delivery_id("acct_a", "evt_fanout_1", sub["id"].as_str().unwrap())
            .await;
        ids.push((path, id));
    }
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

    let id = t
        .delivery_id("acct_r", "evt_retry", sub["id"].as_str().unwrap())
        .await;
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
    let id = t
        .delivery_id("acct_d", "evt_dead", sub["id"].as_str().unwrap())
        .await;
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

/// A request of several events travels to each subscription in one queue message (a pack):
/// each event reaches each endpoint, and a failure among them is retried on its own, with
/// the same `webhook-id`, while the others are not sent again.
async fn a_batch_is_delivered_in_packs_and_a_failure_among_them_is_retried_alone(t: TestRunner) {
    let r = Receiver::start().await;
    let steady = t
        .create_webhook(
            "acct_p",
            json!({"url": r.url("steady", Behavior::Status(204)), "event_types": ["call.*"]}),
        )
        .await;
    let flaky = t
        .create_webhook(
            "acct_p",
            json!({"url": r.url("flaky", Behavior::Sequence(vec![500])),
                   "event_types": ["call.*"], "retry_schedule": [1]}),
        )
        .await;
    let ids: Vec<String> = (0..5).map(|i| format!("evt_pack_{i}")).collect();
    let events: Vec<_> = ids
        .iter()
        .map(|id| event("call.ended", "acct_p", Some(id)))
        .collect();
    let accepted = t.send_event(json!({ "events": events })).await;
    assert_eq!(accepted["results"].as_array().unwrap().len(), 5);

    let mut retried = Vec::new();
    for (path, sub) in [("steady", &steady), ("flaky", &flaky)] {
        for event_id in &ids {
            let id = t
                .delivery_id("acct_p", event_id, sub["id"].as_str().unwrap())
                .await;
            let (got, d) = t
                .wait_for_logged("acct_p", &id, "succeeded", &r, path, WAIT)
                .await;
            assert!(got.iter().all(|g| g.json()["id"] == event_id.as_str()));
            assert!(got
                .iter()
                .all(|g| verify_signature(sub["secret"].as_str().unwrap(), g)));
            let codes: Vec<u64> = d["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["status_code"].as_u64().unwrap())
                .collect();
            if codes.contains(&500) {
                retried.push((path, codes));
            }
        }
    }
    // The endpoint answered 500 once: that delivery alone was tried again.
    assert_eq!(retried.len(), 1, "{retried:?}");
    let (path, codes) = &retried[0];
    assert_eq!(*path, "flaky");
    assert_eq!(codes.first(), Some(&500));
    assert_eq!(codes.last(), Some(&200));
    if !t.may_duplicate {
        assert_eq!(codes, &[500, 200]);
        assert_eq!(r.received("steady").len(), 5);
        assert_eq!(r.received("flaky").len(), 6);
    }
    t.runner.shutdown().await;
}

/// A request's deliveries to one endpoint, dead together and redriven together, are logged
/// delivered: their rows are updated (a store keeps no first try of theirs elsewhere).
async fn a_requests_dead_deliveries_redriven_together_are_logged_delivered(t: TestRunner) {
    let r = Receiver::start().await;
    let sub = t
        .create_webhook(
            "acct_rd",
            json!({"url": r.url("down", Behavior::Status(500)),
                   "event_types": ["call.*"], "max_attempts": 1}),
        )
        .await;
    let wh = sub["id"].as_str().unwrap();
    let event_ids: Vec<String> = (0..3).map(|i| format!("evt_rd_{i}")).collect();
    let events: Vec<_> = event_ids
        .iter()
        .map(|id| event("call.ended", "acct_rd", Some(id)))
        .collect();
    t.send_event(json!({ "events": events })).await;
    let mut ids = Vec::new();
    for e in &event_ids {
        let id = t.delivery_id("acct_rd", e, wh).await;
        t.wait_for_status("acct_rd", &id, "dead", WAIT).await;
        ids.push(id);
    }
    // The endpoint recovers, and a new event's success says so: redriven deliveries are
    // then sent together (to a failing endpoint they go one at a time).
    r.url("down", Behavior::Status(200));
    t.send_event(event("call.ended", "acct_rd", Some("evt_rd_ok")))
        .await;
    let ok = t.delivery_id("acct_rd", "evt_rd_ok", wh).await;
    t.wait_for_status("acct_rd", &ok, "succeeded", WAIT).await;
    let (status, done) = t
        .call(
            reqwest::Method::POST,
            "/v1/accounts/acct_rd/dead-letters/redrive",
            None,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 202, "{done}");
    assert_eq!(done["redriven"], 3, "{done}");
    for id in &ids {
        let d = t.wait_for_status("acct_rd", id, "succeeded", WAIT).await;
        assert_eq!(d["attempt_count"], 2, "{d}");
    }
    let (status, dead) = t
        .call(
            reqwest::Method::GET,
            "/v1/accounts/acct_rd/dead-letters",
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(dead["data"].as_array().unwrap().is_empty(), "{dead}");
    t.runner.shutdown().await;
}

on_backend!(embedded, TestRunner::start_embedded;
    an_event_reaches_each_matching_subscription_of_its_account_once_signed,
    a_failing_endpoint_is_retried_with_growing_gaps_and_the_same_webhook_id,
    an_endpoint_that_always_fails_ends_dead_in_the_dead_letter_queue,
    a_repeated_event_id_delivers_nothing_new,
    a_batch_is_delivered_in_packs_and_a_failure_among_them_is_retried_alone,
    a_requests_dead_deliveries_redriven_together_are_logged_delivered
);
on_backend!(moto, TestRunner::start_moto;
    an_event_reaches_each_matching_subscription_of_its_account_once_signed,
    a_failing_endpoint_is_retried_with_growing_gaps_and_the_same_webhook_id,
    an_endpoint_that_always_fails_ends_dead_in_the_dead_letter_queue,
    a_repeated_event_id_delivers_nothing_new,
    a_batch_is_delivered_in_packs_and_a_failure_among_them_is_retried_alone,
    a_requests_dead_deliveries_redriven_together_are_logged_delivered
);
