//! Every management route through real HTTP against the local runner: success paths,
//! validation errors, and the 404 an account key gets for another account.

use e2e::{delivery_id, event, verify_signature, Behavior, Receiver, TestRunner, WAIT};
use reqwest::Method;
use serde_json::{json, Value};

fn assert_error(status: u16, body: &Value, expected: u16, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
}

async fn account_key(t: &TestRunner, account: &str) -> String {
    let (status, key) = t
        .call(
            Method::POST,
            &format!("/v1/accounts/{account}/api-keys"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 201, "{key}");
    key["key"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_account_route_answers_404_to_another_accounts_key() {
    let t = TestRunner::start().await;
    let r = Receiver::start().await;
    let outsider = account_key(&t, "acct_out").await;
    let sub = t
        .create_webhook(
            "acct_in",
            json!({"url": r.url("in", Behavior::Status(200)), "event_types": ["*"]}),
        )
        .await;
    let wh = sub["id"].as_str().unwrap();
    t.send_event(event("call.ended", "acct_in", Some("evt_in")))
        .await;
    r.wait_for("in", 1, WAIT).await;
    let dlv = delivery_id("acct_in", "evt_in", wh);
    let base = "/v1/accounts/acct_in";
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("{base}/webhooks"), None),
        (
            Method::POST,
            format!("{base}/webhooks"),
            Some(json!({"url": "https://example.com", "event_types": ["*"]})),
        ),
        (Method::GET, format!("{base}/webhooks/{wh}"), None),
        (
            Method::PATCH,
            format!("{base}/webhooks/{wh}"),
            Some(json!({"enabled": false})),
        ),
        (Method::DELETE, format!("{base}/webhooks/{wh}"), None),
        (Method::POST, format!("{base}/webhooks/{wh}/test"), None),
        (
            Method::POST,
            format!("{base}/webhooks/{wh}/rotate-secret"),
            None,
        ),
        (
            Method::GET,
            format!("{base}/webhooks/{wh}/deliveries"),
            None,
        ),
        (Method::GET, format!("{base}/webhooks/{wh}/stats"), None),
        (
            Method::POST,
            format!("{base}/webhooks/{wh}/recover"),
            Some(json!({"since": "2020-01-01T00:00:00Z"})),
        ),
        (Method::GET, format!("{base}/deliveries/{dlv}"), None),
        (Method::POST, format!("{base}/deliveries/{dlv}/retry"), None),
        (Method::GET, format!("{base}/dead-letters"), None),
        (
            Method::POST,
            format!("{base}/dead-letters/redrive"),
            Some(json!({})),
        ),
        (Method::GET, format!("{base}/events"), None),
        (Method::GET, format!("{base}/events/evt_in"), None),
    ];
    for (method, path, body) in routes {
        let (status, answer) = t.call(method.clone(), &path, Some(&outsider), body).await;
        assert_error(status, &answer, 404, "not_found");
        assert!(
            !answer.to_string().contains("acct_in"),
            "{method} {path} leaks: {answer}"
        );
    }
    // Nothing changed: the subscription is still there and enabled.
    let (status, still) = t
        .call(Method::GET, &format!("{base}/webhooks/{wh}"), None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(still["enabled"], true);
    assert_eq!(
        r.received("in").len(),
        1,
        "a refused test or retry still sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_changes_settings_and_validates_them() {
    let t = TestRunner::start().await;
    let sub = t
        .create_webhook("acct_p", json!({"url": "https://example.com/a", "event_types": ["*"], "description": "old", "max_attempts": 3}))
        .await;
    let path = format!(
        "/v1/accounts/acct_p/webhooks/{}",
        sub["id"].as_str().unwrap()
    );
    let (status, patched) = t
        .call(Method::PATCH, &path, None, Some(json!({"url": "https://example.com/b", "event_types": ["call.*"],
            "description": null, "max_attempts": null, "timeout_seconds": 20, "headers": {"X-Env": "prod"}})))
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["url"], "https://example.com/b");
    assert_eq!(patched["event_types"], json!(["call.*"]));
    assert_eq!(patched["description"], Value::Null);
    assert_eq!(patched["max_attempts"], Value::Null);
    assert_eq!(patched["timeout_seconds"], 20);
    assert_eq!(patched["headers"]["X-Env"], "prod");
    assert_eq!(patched["secret"], "whsec_********");
    for (body, pointer) in [
        (json!({"timeout_seconds": 0}), "/timeout_seconds"),
        (json!({"event_types": ["nope.*"]}), "/event_types/0"),
        (json!({"url": "http://[::1"}), "/url"),
    ] {
        let (status, err) = t.call(Method::PATCH, &path, None, Some(body)).await;
        assert_error(status, &err, 400, "validation_failed");
        assert_eq!(err["error"]["details"][0]["pointer"], pointer);
    }
    let (status, err) = t
        .call(
            Method::PATCH,
            &path,
            None,
            Some(json!({"secret": "whsec_x"})),
        )
        .await;
    assert_error(status, &err, 400, "unknown_field");
    let (status, err) = t
        .call(
            Method::PATCH,
            "/v1/accounts/acct_p/webhooks/wh_missing",
            None,
            Some(json!({})),
        )
        .await;
    assert_error(status, &err, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_custom_headers_arrive_at_the_receiver() {
    let t = TestRunner::start().await;
    let r = Receiver::start().await;
    for (path, auth) in [
        (
            "apikey",
            json!({"type": "api_key", "header": "X-Api-Key", "value": "k-123"}),
        ),
        (
            "basic",
            json!({"type": "basic", "username": "crm", "password": "p@ss"}),
        ),
        ("bearer", json!({"type": "bearer", "token": "tok-456"})),
    ] {
        t.create_webhook(
            "acct_h",
            json!({"url": r.url(path, Behavior::Status(200)), "event_types": ["*"],
            "auth": auth, "headers": {"X-Tenant": "t-9"}}),
        )
        .await;
    }
    t.send_event(event("phone_number.updated", "acct_h", Some("evt_h")))
        .await;
    let apikey = r.wait_for("apikey", 1, WAIT).await;
    assert_eq!(apikey[0].header("x-api-key"), "k-123");
    assert_eq!(apikey[0].header("x-tenant"), "t-9");
    let basic = r.wait_for("basic", 1, WAIT).await;
    assert_eq!(basic[0].header("authorization"), "Basic Y3JtOnBAc3M=");
    let bearer = r.wait_for("bearer", 1, WAIT).await;
    assert_eq!(bearer[0].header("authorization"), "Bearer tok-456");
    // The inspector shows the request with the credentials masked.
    let sub_id = |req: &e2e::Received| req.header("webhook-id").to_string();
    let d = t
        .wait_for_status("acct_h", &sub_id(&bearer[0]), "succeeded", WAIT)
        .await;
    assert_eq!(d["request"]["headers"]["authorization"], "Bearer ********");
    assert!(!d.to_string().contains("tok-456"));
    let d = t
        .wait_for_status("acct_h", &sub_id(&apikey[0]), "succeeded", WAIT)
        .await;
    assert_eq!(d["request"]["headers"]["x-api-key"], "********");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_endpoint_sends_a_signed_test_event_now_and_logs_it() {
    let t = TestRunner::start().await;
    let r = Receiver::start().await;
    let ok = t
        .create_webhook(
            "acct_t",
            json!({"url": r.url("ok", Behavior::Status(200)), "event_types": ["call.ended"]}),
        )
        .await;
    let (status, result) = t
        .call(
            Method::POST,
            &format!(
                "/v1/accounts/acct_t/webhooks/{}/test",
                ok["id"].as_str().unwrap()
            ),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["success"], true);
    assert_eq!(result["status_code"], 200);
    assert_eq!(result["response_body"], "ok");
    assert!(result["latency_ms"].is_u64());
    let got = r.received("ok");
    assert_eq!(got.len(), 1, "the test event was not sent synchronously");
    assert_eq!(got[0].json()["type"], "webhook.test");
    assert!(verify_signature(ok["secret"].as_str().unwrap(), &got[0]));
    let logged = t
        .delivery("acct_t", result["delivery_id"].as_str().unwrap())
        .await;
    assert_eq!(logged["status"], "succeeded");
    assert_eq!(logged["attempts"].as_array().unwrap().len(), 1);

    let failing = t
        .create_webhook(
            "acct_t",
            json!({"url": r.url("fail", Behavior::Status(500)), "event_types": ["*"]}),
        )
        .await;
    let (status, result) = t
        .call(
            Method::POST,
            &format!(
                "/v1/accounts/acct_t/webhooks/{}/test",
                failing["id"].as_str().unwrap()
            ),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(result["success"], false);
    assert_eq!(result["status_code"], 500);
    assert_eq!(result["error"], Value::Null);
    let logged = t
        .delivery("acct_t", result["delivery_id"].as_str().unwrap())
        .await;
    assert_eq!(logged["status"], "failed");
    let (status, err) = t
        .call(
            Method::POST,
            "/v1/accounts/acct_t/webhooks/wh_nope/test",
            None,
            None,
        )
        .await;
    assert_error(status, &err, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_beside_the_new_one_until_it_expires() {
    let t = TestRunner::start().await;
    let r = Receiver::start().await;
    let sub = t
        .create_webhook(
            "acct_s",
            json!({"url": r.url("rot", Behavior::Status(200)), "event_types": ["*"]}),
        )
        .await;
    let id = sub["id"].as_str().unwrap();
    let old = sub["secret"].as_str().unwrap().to_string();
    let (status, rotated) = t
        .call(
            Method::POST,
            &format!("/v1/accounts/acct_s/webhooks/{id}/rotate-secret"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert!(new.starts_with("whsec_") && new != old);

    t.send_event(event("user.action", "acct_s", Some("evt_overlap")))
        .await;
    let during = r.wait_for("rot", 1, WAIT).await;
    assert_eq!(during[0].header("webhook-signature").split(' ').count(), 2);
    assert!(
        verify_signature(&new, &during[0]),
        "the new secret does not verify"
    );
    assert!(
        verify_signature(&old, &during[0]),
        "the old secret stopped verifying during the overlap"
    );

    // 24 h later: move the old secret's expiry into the past, as time would.
    let mut stored = t
        .runner
        .services
        .subscriptions
        .get("acct_s", id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.secrets.len(), 2);
    let in_a_day = stored.secrets[1].expires_at.unwrap() - t.runner.services.clock.now_ms();
    assert!(
        (86_000_000..=86_400_000).contains(&in_a_day),
        "overlap is not 24 h: {in_a_day} ms"
    );
    stored.secrets[1].expires_at = Some(t.runner.services.clock.now_ms() - 1);
    t.runner.services.subscriptions.put(&stored).await.unwrap();

    t.send_event(event("user.action", "acct_s", Some("evt_after")))
        .await;
    let after = r.wait_for("rot", 2, WAIT).await;
    assert_eq!(after[1].header("webhook-signature").split(' ').count(), 1);
    assert!(verify_signature(&new, &after[1]));
    assert!(
        !verify_signature(&old, &after[1]),
        "the expired secret still signs"
    );
}

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
            &delivery_id("acct_l", &format!("evt_l{i}"), wh),
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
    let ids: Vec<String> = ["evt_d1", "evt_d2", "evt_d3"]
        .iter()
        .map(|e| delivery_id("acct_d", e, wh))
        .collect();
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
    let id = delivery_id("acct_q", "evt_q", sub["id"].as_str().unwrap());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route() {
    let t = TestRunner::start().await;
    let resp = t.http.get(t.url("/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/events", "post"),
        ("/v1/event-types", "get"),
        ("/v1/accounts/{account_id}/api-keys", "post"),
        ("/v1/accounts/{account_id}/webhooks", "get"),
        ("/v1/accounts/{account_id}/webhooks", "post"),
        ("/v1/accounts/{account_id}/webhooks/{webhook_id}", "patch"),
        ("/v1/accounts/{account_id}/webhooks/{webhook_id}", "delete"),
        (
            "/v1/accounts/{account_id}/webhooks/{webhook_id}/test",
            "post",
        ),
        (
            "/v1/accounts/{account_id}/webhooks/{webhook_id}/rotate-secret",
            "post",
        ),
        (
            "/v1/accounts/{account_id}/webhooks/{webhook_id}/deliveries",
            "get",
        ),
        (
            "/v1/accounts/{account_id}/webhooks/{webhook_id}/stats",
            "get",
        ),
        (
            "/v1/accounts/{account_id}/webhooks/{webhook_id}/recover",
            "post",
        ),
        ("/v1/accounts/{account_id}/deliveries/{delivery_id}", "get"),
        (
            "/v1/accounts/{account_id}/deliveries/{delivery_id}/retry",
            "post",
        ),
        ("/v1/accounts/{account_id}/dead-letters", "get"),
        ("/v1/accounts/{account_id}/dead-letters/redrive", "post"),
        ("/v1/accounts/{account_id}/events", "get"),
        ("/v1/accounts/{account_id}/events/{event_id}", "get"),
        ("/healthz", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}
