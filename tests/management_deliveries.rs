//! The delivery log routes through real HTTP against the local runner: deliveries and
//! events listed newest first across pages with their filters, a subscription's stats, and
//! dead letters redriven, retried and recovered with the same `webhook-id` (and a pending
//! delivery not retried twice at once).

use e2e::{assert_error, event, Behavior, Receiver, TestRunner, WAIT};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_and_events_are_listed_newest_first_across_pages() {
    let t = TestRunner::start().await;
    let r = Receiver::start().await;
    let sub = t
        .create_webhook(
            "acct_l",
            json!({"url": r.url("l", Behavior::Status(200)), "event_types": ["*"]}),
        )
        .await;
    let wh = sub["id"].as_str().unwrap();
    for i in 0..5 {
        let ty = if i % 2 == 0 {
            "call.ended"
        } else {
            "agent.status_changed"
        };
        t.send_event(event(ty, "acct_l", Some(&format!("evt_l{i}"))))
            .await;
        r.wait_for("l", i + 1, WAIT).await;
    }
    for i in 0..5 {
        t.wait_for_status(
            "acct_l",
            &t.delivery_id("acct_l", &format!("evt_l{i}"), wh).await,
            "succeeded",
            WAIT,
        )
        .await;
    }
    let walk = |path: String| {
        let t = &t;
        async move {
            let mut ids = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let url = match &cursor {
                    Some(c) => format!("{path}&cursor={c}"),
                    None => path.clone(),
                };
                let (status, page) = t.call(Method::GET, &url, None, None).await;
                assert_eq!(status, 200, "{page}");
                assert!(page["data"].as_array().unwrap().len() <= 2);
                ids.extend(page["data"].as_array().unwrap().iter().map(|d| {
                    d["event_id"]
                        .as_str()
                        .or(d["id"].as_str())
                        .unwrap()
                        .to_string()
                }));
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => return ids,
                }
            }
        }
    };
    let deliveries = walk(format!(
        "/v1/accounts/acct_l/webhooks/{wh}/deliveries?limit=2"
    ))
    .await;
    assert_eq!(
        deliveries,
        ["evt_l4", "evt_l3", "evt_l2", "evt_l1", "evt_l0"]
    );
    let succeeded = walk(format!(
        "/v1/accounts/acct_l/webhooks/{wh}/deliveries?limit=2&status=succeeded"
    ))
    .await;
    assert_eq!(succeeded.len(), 5);
    let (status, none) = t
        .call(
            Method::GET,
            &format!("/v1/accounts/acct_l/webhooks/{wh}/deliveries?status=dead"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(none["data"], json!([]));
    let (status, err) = t
        .call(
            Method::GET,
            &format!("/v1/accounts/acct_l/webhooks/{wh}/deliveries?status=lost"),
            None,
            None,
        )
        .await;
    assert_error(status, &err, 400, "validation_failed");
    let (status, err) = t
        .call(
            Method::GET,
            &format!("/v1/accounts/acct_l/webhooks/{wh}/deliveries?limit=0"),
            None,
            None,
        )
        .await;
    assert_error(status, &err, 400, "validation_failed");
    let (status, err) = t
        .call(
            Method::GET,
            &format!("/v1/accounts/acct_l/webhooks/{wh}/deliveries?cursor=garbage"),
            None,
            None,
        )
        .await;
    assert_error(status, &err, 400, "validation_failed");

    let events = walk("/v1/accounts/acct_l/events?limit=2".to_string()).await;
    assert_eq!(events, ["evt_l4", "evt_l3", "evt_l2", "evt_l1", "evt_l0"]);
    let calls = walk("/v1/accounts/acct_l/events?limit=2&type=call.ended".to_string()).await;
    assert_eq!(calls, ["evt_l4", "evt_l2", "evt_l0"]);
    let (status, one) = t
        .call(Method::GET, "/v1/accounts/acct_l/events/evt_l3", None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["type"], "agent.status_changed");
    assert_eq!(one["deliveries"][0]["status"], "succeeded");
    assert_eq!(one["deliveries"][0]["webhook_id"], wh);
    let (status, err) = t
        .call(
            Method::GET,
            "/v1/accounts/acct_l/events/evt_none",
            None,
            None,
        )
        .await;
    assert_error(status, &err, 404, "not_found");
    let (status, err) = t
        .call(
            Method::GET,
            "/v1/accounts/acct_l/events?colour=red",
            None,
            None,
        )
        .await;
    assert_eq!(status, 400, "{err}");

    let (status, stats) = t
        .call(
            Method::GET,
            &format!("/v1/accounts/acct_l/webhooks/{wh}/stats?window=1h"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["counts"]["succeeded"], 5);
    assert_eq!(stats["total"], 5);
    assert_eq!(stats["success_rate"], 1.0);
    assert!(stats["latency_ms"]["p50"].is_u64() && stats["latency_ms"]["p99"].is_u64());
    let (status, err) = t
        .call(
            Method::GET,
            &format!("/v1/accounts/acct_l/webhooks/{wh}/stats?window=1y"),
            None,
            None,
        )
        .await;
    assert_error(status, &err, 400, "validation_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_redriven_retried_and_recovered_with_the_same_webhook_id() {
    let t = TestRunner::start().await;
    let r = Receiver::start().await;
    let sub = t
        .create_webhook("acct_d", json!({"url": r.url("d", Behavior::Status(500)), "event_types": ["*"], "max_attempts": 1}))
        .await;
    let wh = sub["id"].as_str().unwrap();
    for id in ["evt_d1", "evt_d2", "evt_d3"] {
        t.send_event(event("call.failed", "acct_d", Some(id))).await;
    }
    let mut ids: Vec<String> = Vec::new();
    for e in ["evt_d1", "evt_d2", "evt_d3"] {
        ids.push(t.delivery_id("acct_d", e, wh).await);
    }
    for id in &ids {
        t.wait_for_status("acct_d", id, "dead", WAIT).await;
    }
    let (status, dead) = t
        .call(
            Method::GET,
            "/v1/accounts/acct_d/dead-letters?limit=2",
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(dead["data"].as_array().unwrap().len(), 2);
    assert!(dead["next_cursor"].is_string());

    // A pending or unknown delivery cannot be retried; the endpoint recovers.
    r.url("d", Behavior::Status(200));
    let (status, err) = t
        .call(
            Method::POST,
            "/v1/accounts/acct_d/dead-letters/redrive",
            None,
            Some(json!({"ids": ["msg_unknown"]})),
        )
        .await;
    assert_error(status, &err, 404, "not_found");
    let (status, done) = t
        .call(
            Method::POST,
            "/v1/accounts/acct_d/dead-letters/redrive",
            None,
            Some(json!({"ids": [ids[0]]})),
        )
        .await;
    assert_eq!(status, 202, "{done}");
    assert_eq!(done["redriven"], 1);
    let d = t
        .wait_for_status("acct_d", &ids[0], "succeeded", WAIT)
        .await;
    assert_eq!(d["attempt_count"], 2);

    let (status, done) = t
        .call(
            Method::POST,
            &format!("/v1/accounts/acct_d/webhooks/{wh}/recover"),
            None,
            Some(json!({"since": "2000-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, 202, "{done}");
    assert_eq!(done["requeued"], 2);
    for id in &ids[1..] {
        t.wait_for_status("acct_d", id, "succeeded", WAIT).await;
    }
    let got = r.received("d");
    for id in &ids {
        assert_eq!(
            got.iter().filter(|g| g.header("webhook-id") == id).count(),
            2,
            "{id} not resent with its webhook-id"
        );
    }
    let (status, empty) = t
        .call(Method::GET, "/v1/accounts/acct_d/dead-letters", None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(empty["data"], json!([]));
    let (status, none) = t
        .call(
            Method::POST,
            "/v1/accounts/acct_d/dead-letters/redrive",
            None,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(none["redriven"], 0);

    // A manual retry of a delivered one sends it once more, with a fresh budget.
    let (status, retried) = t
        .call(
            Method::POST,
            &format!("/v1/accounts/acct_d/deliveries/{}/retry", ids[0]),
            None,
            None,
        )
        .await;
    assert_eq!(status, 202, "{retried}");
    r.wait_for("d", 7, WAIT).await;
    let (status, err) = t
        .call(
            Method::POST,
            "/v1/accounts/acct_d/deliveries/msg_nope/retry",
            None,
            None,
        )
        .await;
    assert_error(status, &err, 404, "not_found");
    let (status, err) = t
        .call(
            Method::POST,
            &format!("/v1/accounts/acct_d/webhooks/{wh}/recover"),
            None,
            Some(json!({"since": "yesterday"})),
        )
        .await;
    assert_error(status, &err, 400, "validation_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_delivery_cannot_be_retried_twice_at_once() {
    let t = TestRunner::start().await;
    let r = Receiver::start().await;
    let sub = t
        .create_webhook("acct_q", json!({"url": r.url("q", Behavior::Status(500)), "event_types": ["*"], "retry_schedule": [60]}))
        .await;
    t.send_event(event("call.started", "acct_q", Some("evt_q")))
        .await;
    r.wait_for("q", 1, WAIT).await;
    let id = t
        .delivery_id("acct_q", "evt_q", sub["id"].as_str().unwrap())
        .await;
    t.wait_for_status("acct_q", &id, "pending", WAIT).await;
    let (status, err) = t
        .call(
            Method::POST,
            &format!("/v1/accounts/acct_q/deliveries/{id}/retry"),
            None,
            None,
        )
        .await;
    assert_error(status, &err, 409, "delivery_pending");
}

/// The account's stats: outcomes counted in their bucket, failures grouped by cause with
/// example deliveries, each webhook's totals; a webhook's own stats see only its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_stats_count_outcomes_over_time_and_group_failures_by_cause() {
    let t = TestRunner::start().await;
    let r = Receiver::start().await;
    let ok = t
        .create_webhook(
            "acct_s",
            json!({"url": r.url("ok", Behavior::Status(204)), "event_types": ["call.*"]}),
        )
        .await;
    let failing = t
        .create_webhook(
            "acct_s",
            json!({"url": r.url("bad", Behavior::Status(500)), "event_types": ["call.*"], "max_attempts": 1}),
        )
        .await;
    // Nothing listens on a port that was just freed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let refused = t
        .create_webhook(
            "acct_s",
            json!({"url": closed_url, "event_types": ["call.ended"], "max_attempts": 1}),
        )
        .await;
    let (ok, failing, refused) = (
        ok["id"].as_str().unwrap(),
        failing["id"].as_str().unwrap(),
        refused["id"].as_str().unwrap(),
    );
    for i in 0..3 {
        t.send_event(event("call.ended", "acct_s", Some(&format!("evt_s{i}"))))
            .await;
    }
    for i in 0..3 {
        let evt = format!("evt_s{i}");
        t.wait_for_status(
            "acct_s",
            &t.delivery_id("acct_s", &evt, ok).await,
            "succeeded",
            WAIT,
        )
        .await;
        for wh in [failing, refused] {
            t.wait_for_status(
                "acct_s",
                &t.delivery_id("acct_s", &evt, wh).await,
                "dead",
                WAIT,
            )
            .await;
        }
    }

    let (status, stats) = t
        .call(
            Method::GET,
            "/v1/accounts/acct_s/stats?window=1h&bucket=5m",
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["bucket"], "5m");
    assert_eq!(
        stats["counts"],
        json!({"succeeded": 3, "failed": 6, "dead": 6})
    );
    assert_eq!(stats["total"], 9);
    let series = stats["series"].as_array().unwrap();
    assert!((12..=13).contains(&series.len()), "{}", series.len());
    let summed = |field: &str| {
        series
            .iter()
            .map(|b| b[field].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(
        (summed("succeeded"), summed("failed"), summed("dead")),
        (3, 6, 6)
    );
    // Everything happened in the last seconds: in the last bucket, or the one before when
    // the run crossed a bucket's edge.
    let busy: Vec<usize> = (0..series.len())
        .filter(|i| series[*i]["succeeded"].as_u64().unwrap() > 0)
        .collect();
    assert!(
        busy.iter().all(|i| *i + 2 >= series.len()),
        "{busy:?} of {}",
        series.len()
    );

    let errors = stats["errors"].as_array().unwrap();
    let group = |cause: &str| {
        errors
            .iter()
            .find(|g| g["cause"] == cause)
            .unwrap_or_else(|| panic!("no {cause} group in {errors:?}"))
    };
    let http_500 = group("http_500");
    assert_eq!(http_500["count"], 3);
    let examples = http_500["example_delivery_ids"].as_array().unwrap();
    assert!(!examples.is_empty() && examples.len() <= 3);
    for id in examples {
        let (status, d) = t
            .call(
                Method::GET,
                &format!("/v1/accounts/acct_s/deliveries/{}", id.as_str().unwrap()),
                None,
                None,
            )
            .await;
        assert_eq!(status, 200, "an example opens in the inspector: {d}");
        assert_eq!(d["webhook_id"], failing);
    }
    assert_eq!(group("connection_refused")["count"], 3);
    assert_eq!(errors.len(), 2, "{errors:?}");

    let webhooks = stats["webhooks"].as_array().unwrap();
    let totals = |wh: &str| {
        webhooks
            .iter()
            .find(|w| w["webhook_id"] == wh)
            .unwrap()
            .clone()
    };
    assert_eq!(totals(ok)["succeeded"], 3);
    assert_eq!(totals(ok)["success_rate"], 1.0);
    assert_eq!(totals(failing)["dead"], 3);
    assert_eq!(totals(refused)["failed"], 3);

    let (status, one) = t
        .call(
            Method::GET,
            &format!("/v1/accounts/acct_s/webhooks/{failing}/stats?window=1h"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(
        one["counts"],
        json!({"succeeded": 0, "failed": 3, "dead": 3})
    );
    assert_eq!(one["errors"].as_array().unwrap().len(), 1);
    assert_eq!(one["success_rate"], 0.0);
    assert!(one.get("webhooks").is_none());

    for (query, pointer) in [
        ("window=1h&bucket=7m", "/bucket"),
        ("window=30d&bucket=5m", "/bucket"),
        ("window=2d&bucket=2d", "/bucket"),
        ("window=soon", "/window"),
    ] {
        let (status, err) = t
            .call(
                Method::GET,
                &format!("/v1/accounts/acct_s/stats?{query}"),
                None,
                None,
            )
            .await;
        assert_error(status, &err, 400, "validation_failed");
        assert_eq!(
            err["error"]["details"][0]["pointer"], pointer,
            "{query}: {err}"
        );
    }
}
