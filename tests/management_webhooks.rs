//! The webhook (subscription) routes through real HTTP against the local runner: PATCH
//! and its validation, auth and custom headers arriving at the receiver (masked in the
//! log), the synchronous test event, and a rotated secret signing beside the new one until
//! it expires.

use e2e::{assert_error, event, verify_signature, Behavior, Receiver, TestRunner, WAIT};
use reqwest::Method;
use serde_json::{json, Value};

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
    // Custom header values are masked like credentials...
    assert_eq!(patched["headers"]["X-Env"], "********");
    assert_eq!(patched["secret"], "whsec_********");
    // ...and a read-modify-write round trip keeps them: sent back masked, a value stays.
    let (status, again) = t
        .call(
            Method::PATCH,
            &path,
            None,
            Some(json!({"headers": {"X-Env": "********", "X-Region": "eu"}})),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    let stored = t
        .runner
        .services
        .subscriptions
        .get(
            &domain::ids::AccountId::from_static("acct_p"),
            &domain::ids::SubscriptionId::parse(sub["id"].as_str().unwrap()).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.headers["X-Env"], "prod", "the mask was stored");
    assert_eq!(stored.headers["X-Region"], "eu");
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
    // Custom header values too: they often carry tenant tokens.
    assert_eq!(d["request"]["headers"]["x-tenant"], "********");
    assert!(!d.to_string().contains("t-9"));
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
    // The response's headers are in the attempt, as pairs in the order received.
    let headers = logged["attempts"][0]["response_headers"]
        .as_array()
        .unwrap();
    assert!(
        headers.contains(&json!(["content-type", "text/plain; charset=utf-8"])),
        "{headers:?}"
    );

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
async fn a_test_may_be_any_catalog_type_with_its_example_or_given_data() {
    let t = TestRunner::start().await;
    let r = Receiver::start().await;
    let sub = t
        .create_webhook(
            "acct_t",
            json!({"url": r.url("typed", Behavior::Status(200)), "event_types": ["call.*"]}),
        )
        .await;
    let path = format!(
        "/v1/accounts/acct_t/webhooks/{}/test",
        sub["id"].as_str().unwrap()
    );
    let example = domain::catalog::find("call.ended").unwrap().example.clone();

    // The type's example when no data is given.
    let (status, result) = t
        .call(
            Method::POST,
            &path,
            None,
            Some(json!({"event_type": "call.ended"})),
        )
        .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["success"], true);
    let got = r.received("typed");
    assert_eq!(got[0].json()["type"], "call.ended");
    assert_eq!(got[0].json()["data"], example);
    assert!(verify_signature(sub["secret"].as_str().unwrap(), &got[0]));

    // Given data, held to the type's schema.
    let mut edited = example.clone();
    edited["call_id"] = json!("call_edited_in_the_console");
    let (status, result) = t
        .call(
            Method::POST,
            &path,
            None,
            Some(json!({"event_type": "call.ended", "data": edited})),
        )
        .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(r.received("typed")[1].json()["data"], edited);

    // Refused, and nothing sent: an unknown type, data that breaks the schema, data that
    // is not an object, an unknown field.
    let mut broken = example.clone();
    broken["call_id"] = json!(42);
    for (body, pointer) in [
        (json!({"event_type": "call.nope"}), "/event_type"),
        (
            json!({"event_type": "call.ended", "data": broken}),
            "/data/call_id",
        ),
        (json!({"event_type": "call.ended", "data": [1]}), "/data"),
    ] {
        let (status, err) = t.call(Method::POST, &path, None, Some(body)).await;
        assert_error(status, &err, 400, "validation_failed");
        assert_eq!(err["error"]["details"][0]["pointer"], pointer, "{err}");
    }
    let (status, err) = t
        .call(
            Method::POST,
            &path,
            None,
            Some(json!({"type": "call.ended"})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(r.received("typed").len(), 2);
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
        .get(
            &domain::ids::AccountId::from_static("acct_s"),
            &domain::ids::SubscriptionId::parse(id).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.secrets.len(), 2);
    let in_a_day =
        stored.secrets[1].expires_at.unwrap().as_millis() - t.runner.services.clock.now_ms();
    assert!(
        (86_000_000..=86_400_000).contains(&in_a_day),
        "overlap is not 24 h: {in_a_day} ms"
    );
    stored.secrets[1].expires_at = Some(t.runner.services.clock.now().plus_millis(-1));
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
async fn previous_secrets_can_stop_signing_at_once_after_a_rotation() {
    let t = TestRunner::start().await;
    let r = Receiver::start().await;
    let sub = t
        .create_webhook(
            "acct_x",
            json!({"url": r.url("leak", Behavior::Status(200)), "event_types": ["*"]}),
        )
        .await;
    let id = sub["id"].as_str().unwrap();
    let leaked = sub["secret"].as_str().unwrap().to_string();
    let base = format!("/v1/accounts/acct_x/webhooks/{id}");
    let (_, rotated) = t
        .call(Method::POST, &format!("{base}/rotate-secret"), None, None)
        .await;
    let new = rotated["secret"].as_str().unwrap().to_string();
    let (status, expired) = t
        .call(
            Method::POST,
            &format!("{base}/expire-previous-secrets"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{expired}");
    assert_eq!(expired["expired"], 1);

    t.send_event(event("user.action", "acct_x", Some("evt_after_leak")))
        .await;
    let got = r.wait_for("leak", 1, WAIT).await;
    assert_eq!(got[0].header("webhook-signature").split(' ').count(), 1);
    assert!(verify_signature(&new, &got[0]));
    assert!(
        !verify_signature(&leaked, &got[0]),
        "the leaked secret still signs"
    );

    // Nothing left to expire: answered, nothing changed.
    let (status, again) = t
        .call(
            Method::POST,
            &format!("{base}/expire-previous-secrets"),
            None,
            None,
        )
        .await;
    assert_eq!((status, again["expired"].as_u64()), (200, Some(0)));
}
