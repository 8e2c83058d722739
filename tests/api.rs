//! The API routes of the core pipeline: authentication, account isolation, and clear JSON
//! errors for bad input.

use e2e::{event, TestRunner};
use reqwest::Method;
use serde_json::{json, Value};

fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_need_a_valid_key_except_healthz() {
    let t = TestRunner::start().await;
    let resp = t.http.get(t.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = t
        .http
        .get(t.url("/v1/accounts/a/webhooks"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, body) = t
        .call(
            Method::GET,
            "/v1/accounts/a/webhooks",
            Some("whk_wrong"),
            None,
        )
        .await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, body) = t.call(Method::GET, "/v1/nothing", None, None).await;
    assert_error(status, &body, 404, "route_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_key_sees_only_its_own_account() {
    let t = TestRunner::start().await;
    let (status, key) = t
        .call(Method::POST, "/v1/accounts/acct_1/api-keys", None, None)
        .await;
    assert_eq!(status, 201, "{key}");
    let key = key["key"].as_str().unwrap().to_string();
    let other = t
        .create_webhook(
            "acct_2",
            json!({"url": "https://example.com/a", "event_types": ["*"]}),
        )
        .await;
    let own = t
        .call(
            Method::POST,
            "/v1/accounts/acct_1/webhooks",
            Some(&key),
            Some(json!({"url": "https://example.com/b", "event_types": ["call.*"]})),
        )
        .await;
    assert_eq!(own.0, 201, "{}", own.1);

    let other_id = other["id"].as_str().unwrap();
    for (method, path) in [
        (Method::GET, "/v1/accounts/acct_2/webhooks".to_string()),
        (
            Method::GET,
            format!("/v1/accounts/acct_2/webhooks/{other_id}"),
        ),
        (
            Method::DELETE,
            format!("/v1/accounts/acct_2/webhooks/{other_id}"),
        ),
        (
            Method::GET,
            "/v1/accounts/acct_2/deliveries/msg_x".to_string(),
        ),
    ] {
        let (status, body) = t.call(method, &path, Some(&key), None).await;
        assert_error(status, &body, 404, "not_found");
    }
    // Its own account works; ingest and key creation need the platform key.
    let (status, list) = t
        .call(
            Method::GET,
            "/v1/accounts/acct_1/webhooks",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let (status, body) = t
        .call(
            Method::POST,
            "/v1/events",
            Some(&key),
            Some(event("call.ended", "acct_1", None)),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = t
        .call(
            Method::POST,
            "/v1/accounts/acct_1/api-keys",
            Some(&key),
            None,
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    // The other account's subscription is untouched.
    let (status, _) = t
        .call(
            Method::GET,
            &format!("/v1/accounts/acct_2/webhooks/{other_id}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_created_listed_read_masked_and_deleted() {
    let t = TestRunner::start().await;
    let created = t
        .create_webhook(
            "acct_w",
            json!({
            "url": "https://example.com/hook", "event_types": ["call.*", "agent.status_changed"],
            "description": "CRM", "auth": {"type": "bearer", "token": "s3cret-token"},
            "headers": {"X-Tenant": "t1"}, "max_attempts": 5, "timeout_seconds": 5,
            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
        )
        .await;
    assert_eq!(created["secret"], "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    assert_eq!(created["auth"]["token"], "********");
    let id = created["id"].as_str().unwrap();
    let (status, read) = t
        .call(
            Method::GET,
            &format!("/v1/accounts/acct_w/webhooks/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(read["secret"], "whsec_********");
    assert!(!read.to_string().contains("s3cret-token"));
    // Custom header values are masked like credentials.
    assert_eq!(read["headers"]["X-Tenant"], "********");
    assert_eq!(read["max_attempts"], 5);

    for i in 0..4 {
        t.create_webhook(
            "acct_w",
            json!({"url": format!("https://example.com/{i}"), "event_types": ["*"]}),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/accounts/acct_w/webhooks?limit=2&cursor={c}"),
            None => "/v1/accounts/acct_w/webhooks?limit=2".to_string(),
        };
        let (status, page) = t.call(Method::GET, &path, None, None).await;
        assert_eq!(status, 200);
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique.len(), 5);

    let (status, _) = t
        .call(
            Method::DELETE,
            &format!("/v1/accounts/acct_w/webhooks/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = t
        .call(
            Method::GET,
            &format!("/v1/accounts/acct_w/webhooks/{id}"),
            None,
            None,
        )
        .await;
    assert_error(status, &body, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_subscriptions_are_refused_with_pointers() {
    let t = TestRunner::start().await;
    let path = "/v1/accounts/acct_v/webhooks";
    let (status, body) = t
        .call(
            Method::POST,
            path,
            None,
            Some(json!({
        "url": "ftp://example.com", "event_types": ["call.nope", "agent.*"], "timeout_seconds": 31,
        "retry_schedule": [0], "headers": {"webhook-id": "x"}})),
        )
        .await;
    assert_error(status, &body, 400, "validation_failed");
    let pointers: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["pointer"].as_str().unwrap())
        .collect();
    for p in [
        "/url",
        "/event_types/0",
        "/timeout_seconds",
        "/retry_schedule/0",
        "/headers/webhook-id",
    ] {
        assert!(pointers.contains(&p), "{p} missing from {pointers:?}");
    }
    let (status, body) = t
        .call(
            Method::POST,
            path,
            None,
            Some(json!({"url": "https://example.com", "event_types": []})),
        )
        .await;
    assert_error(status, &body, 400, "validation_failed");
    let (status, body) = t
        .call(
            Method::POST,
            path,
            None,
            Some(json!({"url": "https://example.com", "event_types": ["*"], "colour": "red"})),
        )
        .await;
    assert_error(status, &body, 400, "unknown_field");
    let (status, body) = t
        .call(
            Method::POST,
            path,
            None,
            Some(json!({"url": "https://example.com", "event_types": ["*"], "secret": "nope"})),
        )
        .await;
    assert_error(status, &body, 400, "validation_failed");
    // The SSRF guard: loopback is exempt in tests, the metadata address is not.
    let (status, body) = t
        .call(
            Method::POST,
            path,
            None,
            Some(json!({"url": "http://169.254.169.254/latest", "event_types": ["*"]})),
        )
        .await;
    assert_error(status, &body, 400, "destination_not_allowed");
    let resp = t
        .http
        .post(t.url(path))
        .bearer_auth(&t.runner.platform_key)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_are_refused_and_nothing_is_stored() {
    let t = TestRunner::start().await;
    let mut bad = event("call.ended", "acct_e", Some("evt_bad"));
    bad["data"]["duration_seconds"] = json!("long");
    let (status, body) = t.call(Method::POST, "/v1/events", None, Some(bad)).await;
    assert_error(status, &body, 400, "validation_failed");
    assert_eq!(
        body["error"]["details"][0]["pointer"],
        "/data/duration_seconds"
    );
    // A batch with one bad event is refused whole, with the event's index in the pointer.
    let batch = json!({"events": [event("call.ended", "acct_e", Some("evt_ok")), {"type": "nope", "account_id": "acct_e", "data": {}}]});
    let (status, body) = t.call(Method::POST, "/v1/events", None, Some(batch)).await;
    assert_error(status, &body, 400, "validation_failed");
    assert_eq!(body["error"]["details"][0]["pointer"], "/events/1/type");
    let accepted = t
        .send_event(event("call.ended", "acct_e", Some("evt_ok")))
        .await;
    assert_eq!(
        accepted["duplicate"], false,
        "a refused batch stored its valid event"
    );

    let too_many = json!({"events": (0..101).map(|_| event("call.ended", "acct_e", None)).collect::<Vec<_>>()});
    let (status, body) = t
        .call(Method::POST, "/v1/events", None, Some(too_many))
        .await;
    assert_error(status, &body, 400, "validation_failed");
    let mut huge = event("call.ended", "acct_e", None);
    huge["data"]["padding"] = json!("x".repeat(300 * 1024));
    let (status, body) = t.call(Method::POST, "/v1/events", None, Some(huge)).await;
    assert_error(status, &body, 413, "event_too_large");
    let resp = t
        .http
        .post(t.url("/v1/events"))
        .bearer_auth(&t.runner.platform_key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");
    let (status, body) = t.call(Method::GET, "/v1/event-types", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().unwrap().len(), 21);
}
