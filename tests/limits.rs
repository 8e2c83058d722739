//! The limits of the management API through real HTTP against the local runner: what one
//! account, one subscription and one request may hold, and the clear error each refusal
//! answers.

use e2e::{verify_signature, Behavior, Receiver, TestRunner};
use reqwest::Method;
use serde_json::{json, Value};

/// An endpoint URL that needs no DNS lookup (the tests' runner accepts http and loopback).
const URL: &str = "http://127.0.0.1:9/hook";

fn assert_error(status: u16, body: &Value, expected: u16, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// A 400 `validation_failed` whose details are exactly `pointers`, in order.
fn assert_invalid(status: u16, body: &Value, pointers: &[&str]) {
    assert_error(status, body, 400, "validation_failed");
    let got: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap_or_else(|| panic!("no details: {body}"))
        .iter()
        .map(|d| d["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(got, pointers, "{body}");
}

async fn create(t: &TestRunner, account: &str, body: Value) -> (u16, Value) {
    t.call(
        Method::POST,
        &format!("/v1/accounts/{account}/webhooks"),
        None,
        Some(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_types_and_headers_are_bounded_on_create_and_patch() {
    let t = TestRunner::start().await;
    let (status, err) = create(
        &t,
        "acct_l",
        json!({"url": URL, "event_types": vec!["*"; 101]}),
    )
    .await;
    assert_invalid(status, &err, &["/event_types"]);
    assert!(
        err["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("100"),
        "{err}"
    );
    let long = format!("call.{}", "x".repeat(124));
    let (status, err) = create(
        &t,
        "acct_l",
        json!({"url": URL, "event_types": ["call.ended", long]}),
    )
    .await;
    assert_invalid(status, &err, &["/event_types/1"]);
    let message = err["error"]["details"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("128") && !message.contains("xxxx"),
        "{err}"
    );

    let name = format!("X-{}", "n".repeat(63));
    let (status, err) = create(
        &t,
        "acct_l",
        json!({"url": URL, "event_types": ["*"], "headers": {name.clone(): "v"}}),
    )
    .await;
    let pointer = format!("/headers/{name}");
    assert_invalid(status, &err, &[&pointer]);
    let (status, err) = create(
        &t,
        "acct_l",
        json!({"url": URL, "event_types": ["*"], "headers": {"X-Big": "v".repeat(1025)}}),
    )
    .await;
    assert_invalid(status, &err, &["/headers/X-Big"]);
    let many: serde_json::Map<String, Value> =
        (0..21).map(|i| (format!("X-H{i}"), json!("v"))).collect();
    let (status, err) = create(
        &t,
        "acct_l",
        json!({"url": URL, "event_types": ["*"], "headers": many}),
    )
    .await;
    assert_invalid(status, &err, &["/headers"]);

    // At the limits is fine.
    let at_most: serde_json::Map<String, Value> = (0..20)
        .map(|i| (format!("X-{i:0>62}"), json!("v".repeat(1024))))
        .collect();
    let sub = t
        .create_webhook(
            "acct_l",
            json!({"url": URL, "event_types": vec!["*"; 100], "headers": at_most}),
        )
        .await;

    // A change is held to the same limits.
    let path = format!(
        "/v1/accounts/acct_l/webhooks/{}",
        sub["id"].as_str().unwrap()
    );
    let (status, err) = t
        .call(
            Method::PATCH,
            &path,
            None,
            Some(json!({"event_types": vec!["call.*"; 101]})),
        )
        .await;
    assert_invalid(status, &err, &["/event_types"]);
    let (status, err) = t
        .call(
            Method::PATCH,
            &path,
            None,
            Some(json!({"headers": {name.clone(): "v"}})),
        )
        .await;
    assert_invalid(status, &err, &[&pointer]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_and_framing_headers_are_refused_in_any_case() {
    let t = TestRunner::start().await;
    for name in [
        "Proxy-Authorization",
        "TE",
        "upgrade",
        "Expect",
        "CONTENT-ENCODING",
        "Keep-Alive",
        "trailer",
    ] {
        let (status, err) = create(
            &t,
            "acct_r",
            json!({"url": URL, "event_types": ["*"], "headers": {name: "x"}}),
        )
        .await;
        assert_invalid(status, &err, &[&format!("/headers/{name}")]);
        let (status, err) = create(
            &t,
            "acct_r",
            json!({"url": URL, "event_types": ["*"],
                "auth": {"type": "api_key", "header": name, "value": "k"}}),
        )
        .await;
        assert_invalid(status, &err, &["/auth/header"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_refused_in_credentials_and_header_values() {
    let t = TestRunner::start().await;
    for bad in ["tok\u{7f}en", "tok\u{85}en", "tok\ten"] {
        for (auth, pointer) in [
            (json!({"type": "bearer", "token": bad}), "/auth/token"),
            (
                json!({"type": "basic", "username": "crm", "password": bad}),
                "/auth/password",
            ),
            (
                json!({"type": "basic", "username": bad, "password": "p"}),
                "/auth/username",
            ),
            (
                json!({"type": "api_key", "header": "X-Key", "value": bad}),
                "/auth/value",
            ),
        ] {
            let (status, err) = create(
                &t,
                "acct_c",
                json!({"url": URL, "event_types": ["*"], "auth": auth}),
            )
            .await;
            assert_invalid(status, &err, &[pointer]);
        }
    }
    for bad in ["v\u{7f}", "v\u{85}v"] {
        let (status, err) = create(
            &t,
            "acct_c",
            json!({"url": URL, "event_types": ["*"], "headers": {"X-A": bad}}),
        )
        .await;
        assert_invalid(status, &err, &["/headers/X-A"]);
    }
    // Printable credentials, non-ASCII included, are fine.
    t.create_webhook(
        "acct_c",
        json!({"url": URL, "event_types": ["*"],
            "auth": {"type": "basic", "username": "crm", "password": "p@ss wörd"},
            "headers": {"X-A": "tab\tinside"}}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_matched_in_any_case() {
    let t = TestRunner::start().await;
    let account = t.account_key("acct_b").await;
    let get = |value: String| {
        let req = t
            .http
            .get(t.url("/v1/accounts/acct_b/webhooks"))
            .header("authorization", value);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let platform = &t.runner.platform_key;
    for value in [
        format!("Bearer {platform}"),
        format!("bearer {platform}"),
        format!("BEARER {platform}"),
        format!("bEaReR   {platform}"),
        format!("bearer {account}"),
        format!("BEARER {account}"),
    ] {
        let (status, body) = get(value.clone()).await;
        assert_eq!(status, 200, "{value}: {body}");
    }
    for value in [
        format!("Basic {platform}"),
        format!("Bearer{platform}"),
        format!("bearers {platform}"),
        "bearer ".to_string(),
        "bearer".to_string(),
    ] {
        let (status, body) = get(value.clone()).await;
        assert_error(status, &body, 401, "unauthorized");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_at_most_three_secrets_signing() {
    let t = TestRunner::start().await;
    let r = Receiver::start().await;
    let sub = t
        .create_webhook(
            "acct_s",
            json!({"url": r.url("rot", Behavior::Status(200)), "event_types": ["*"]}),
        )
        .await;
    let id = sub["id"].as_str().unwrap();
    let mut secrets = vec![sub["secret"].as_str().unwrap().to_string()];
    // Five rotations inside one overlap: without a cap, six secrets would sign.
    for _ in 0..5 {
        let (status, rotated) = t
            .call(
                Method::POST,
                &format!("/v1/accounts/acct_s/webhooks/{id}/rotate-secret"),
                None,
                None,
            )
            .await;
        assert_eq!(status, 200, "{rotated}");
        secrets.push(rotated["secret"].as_str().unwrap().to_string());
    }
    let stored = t
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
    assert_eq!(stored.secrets.len(), 3, "{:?}", stored.secrets);

    let (status, result) = t
        .call(
            Method::POST,
            &format!("/v1/accounts/acct_s/webhooks/{id}/test"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{result}");
    let got = r.wait_for("rot", 1, e2e::WAIT).await;
    assert_eq!(got[0].header("webhook-signature").split(' ').count(), 3);
    // The newest three sign; the two oldest were retired early.
    for (i, secret) in secrets.iter().enumerate() {
        assert_eq!(
            verify_signature(secret, &got[0]),
            i >= 3,
            "secret {i} of {}",
            secrets.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_has_at_most_the_configured_number_of_subscriptions() {
    let t = TestRunner::start_with(|c| c.max_subscriptions_per_account = 2).await;
    let key = t.account_key("acct_m").await;
    let first = t
        .create_webhook("acct_m", json!({"url": URL, "event_types": ["*"]}))
        .await;
    // A paused subscription is kept, so it counts.
    t.create_webhook(
        "acct_m",
        json!({"url": URL, "event_types": ["*"], "enabled": false}),
    )
    .await;
    for key in [None, Some(key.as_str())] {
        let (status, err) = t
            .call(
                Method::POST,
                "/v1/accounts/acct_m/webhooks",
                key,
                Some(json!({"url": URL, "event_types": ["*"]})),
            )
            .await;
        assert_error(status, &err, 409, "limit_exceeded");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("at most 2"),
            "{err}"
        );
    }
    // A body with faults is told them first.
    let (status, err) = create(&t, "acct_m", json!({"url": URL, "event_types": []})).await;
    assert_invalid(status, &err, &["/event_types"]);
    let (status, list) = t
        .call(Method::GET, "/v1/accounts/acct_m/webhooks", None, None)
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");

    // Another account has its own room.
    t.create_webhook("acct_n", json!({"url": URL, "event_types": ["*"]}))
        .await;
    // Deleting one makes room again.
    let (status, _) = t
        .call(
            Method::DELETE,
            &format!(
                "/v1/accounts/acct_m/webhooks/{}",
                first["id"].as_str().unwrap()
            ),
            None,
            None,
        )
        .await;
    assert_eq!(status, 204);
    t.create_webhook("acct_m", json!({"url": URL, "event_types": ["*"]}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscription_cap_defaults_to_100_in_the_runner_and_the_functions() {
    let lookup = |cap: Option<&'static str>| {
        app::config::Vars::new(move |name: &str| match name {
            "PLATFORM_KEY_HASH" => Some("hash".to_string()),
            "WEBHOOKS_MAX_SUBSCRIPTIONS_PER_ACCOUNT" => cap.map(str::to_string),
            _ => None,
        })
    };
    let settings = |cap| app::Settings::from_vars(&lookup(cap));
    assert_eq!(settings(None).unwrap().max_subscriptions_per_account, 100);
    assert_eq!(
        settings(Some("7")).unwrap().max_subscriptions_per_account,
        7
    );
    for bad in ["0", "many"] {
        let err = settings(Some(bad)).unwrap_err().to_string();
        assert!(
            err.contains("WEBHOOKS_MAX_SUBSCRIPTIONS_PER_ACCOUNT"),
            "{err}"
        );
    }

    let t = TestRunner::start().await;
    assert_eq!(
        t.runner.services.settings.max_subscriptions_per_account,
        100
    );
    for i in 0..100 {
        let (status, created) = create(
            &t,
            "acct_d",
            json!({"url": format!("{URL}/{i}"), "event_types": ["*"]}),
        )
        .await;
        assert_eq!(status, 201, "{i}: {created}");
    }
    let (status, err) = create(&t, "acct_d", json!({"url": URL, "event_types": ["*"]})).await;
    assert_error(status, &err, 409, "limit_exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_states_the_limits() {
    let t = TestRunner::start().await;
    let resp = t.http.get(t.url("/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().await.unwrap();
    let create = &doc["paths"]["/v1/accounts/{account_id}/webhooks"]["post"];
    assert!(
        create["responses"]["409"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("limit_exceeded")),
        "{create}"
    );
    for schema in ["CreateWebhook", "UpdateWebhook"] {
        let types = &doc["components"]["schemas"][schema]["properties"]["event_types"];
        assert_eq!(types["maxItems"], 100, "{schema}: {types}");
        assert_eq!(types["minItems"], 1, "{schema}: {types}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_schedule_longer_than_a_queued_delivery_lives_is_refused() {
    let t = TestRunner::start().await;
    // 29 retries 12 h apart would outlive the queues' 14-day retention.
    let (status, body) = create(
        &t,
        "acct_long",
        json!({"url": URL, "event_types": ["*"], "max_attempts": 30, "retry_schedule": [43200]}),
    )
    .await;
    assert_invalid(status, &body, &["/retry_schedule"]);
    let (status, body) = create(
        &t,
        "acct_long",
        json!({"url": URL, "event_types": ["*"], "max_attempts": 20, "retry_schedule": [43200]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // Raising the budget later is checked against the whole subscription.
    let (status, body) = t
        .call(
            Method::PATCH,
            &format!(
                "/v1/accounts/acct_long/webhooks/{}",
                body["id"].as_str().unwrap()
            ),
            None,
            Some(json!({"max_attempts": 30})),
        )
        .await;
    assert_invalid(status, &body, &["/retry_schedule"]);
}
