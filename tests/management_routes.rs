//! The management API as a whole, through real HTTP against the local runner: every
//! account route answers 404 to another account's key (and changes nothing), and the
//! OpenAPI document lists every route.

use e2e::{assert_error, event, Behavior, Receiver, TestRunner, WAIT};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_account_route_answers_404_to_another_accounts_key() {
    let t = TestRunner::start().await;
    let r = Receiver::start().await;
    let outsider = t.account_key("acct_out").await;
    let (status, insider) = t
        .call(Method::POST, "/v1/accounts/acct_in/api-keys", None, None)
        .await;
    assert_eq!(status, 201, "{insider}");
    let insider_key_id = insider["id"].as_str().unwrap();
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
    let dlv = t.delivery_id("acct_in", "evt_in", wh).await;
    let base = "/v1/accounts/acct_in";
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("{base}/api-keys"), None),
        (
            Method::DELETE,
            format!("{base}/api-keys/{insider_key_id}"),
            None,
        ),
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
        (Method::POST, format!("{base}/webhooks/{wh}/diagnose"), None),
        (
            Method::POST,
            format!("{base}/webhooks/{wh}/rotate-secret"),
            None,
        ),
        (
            Method::POST,
            format!("{base}/webhooks/{wh}/expire-previous-secrets"),
            None,
        ),
        (
            Method::GET,
            format!("{base}/webhooks/{wh}/deliveries"),
            None,
        ),
        (Method::GET, format!("{base}/webhooks/{wh}/stats"), None),
        (Method::GET, format!("{base}/stats"), None),
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
    let (status, _) = t
        .call(
            Method::GET,
            &format!("{base}/webhooks"),
            insider["key"].as_str(),
            None,
        )
        .await;
    assert_eq!(status, 200, "a refused revocation still revoked");
    assert_eq!(
        r.received("in").len(),
        1,
        "a refused test or retry still sent"
    );
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
        ("/v1/accounts/{account_id}/api-keys", "get"),
        ("/v1/accounts/{account_id}/api-keys/{key_id}", "delete"),
        ("/v1/accounts/{account_id}/webhooks", "get"),
        ("/v1/accounts/{account_id}/webhooks", "post"),
        ("/v1/accounts/{account_id}/webhooks/{webhook_id}", "patch"),
        ("/v1/accounts/{account_id}/webhooks/{webhook_id}", "delete"),
        (
            "/v1/accounts/{account_id}/webhooks/{webhook_id}/test",
            "post",
        ),
        (
            "/v1/accounts/{account_id}/webhooks/{webhook_id}/diagnose",
            "post",
        ),
        (
            "/v1/accounts/{account_id}/webhooks/{webhook_id}/rotate-secret",
            "post",
        ),
        (
            "/v1/accounts/{account_id}/webhooks/{webhook_id}/expire-previous-secrets",
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
        ("/v1/accounts/{account_id}/stats", "get"),
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

/// Ids are checked once, where text from the request becomes one: an account id that breaks
/// the id rule is a 400 naming the rule, on every account route (reads too, where it once
/// gave an empty list); any other id that breaks it cannot exist, so it is a 404; and an
/// account key never learns whether another account's id was well formed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_checked_once_at_the_edge() {
    let t = TestRunner::start().await;
    let own = t.account_key("acct_edge").await;
    for path in [
        "/v1/accounts/a%20b/webhooks",
        "/v1/accounts/a%20b/dead-letters",
        "/v1/accounts/a%2Fb/events",
        "/v1/accounts/a%20b/api-keys",
    ] {
        let (status, body) = t.call(Method::GET, path, None, None).await;
        assert_error(status, &body, 400, "validation_failed");
        assert_eq!(
            body["error"]["details"][0]["pointer"], "/account_id",
            "{path}"
        );
        let (status, body) = t.call(Method::GET, path, Some(&own), None).await;
        assert_error(status, &body, 404, "not_found");
    }
    for path in [
        "/v1/accounts/acct_edge/webhooks/wh%20x",
        "/v1/accounts/acct_edge/webhooks/wh%20x/stats",
        "/v1/accounts/acct_edge/deliveries/msg%20x",
        "/v1/accounts/acct_edge/events/evt%20x",
    ] {
        let (status, body) = t.call(Method::GET, path, Some(&own), None).await;
        assert_error(status, &body, 404, "not_found");
    }
    let (status, body) = t
        .call(
            Method::DELETE,
            "/v1/accounts/acct_edge/api-keys/key%20x",
            Some(&own),
            None,
        )
        .await;
    assert_error(status, &body, 404, "not_found");
}
