//! Ed25519 signatures end to end, on both backends: a subscription made with
//! `"signature": "ed25519"` shows its public key and never its private key, and each
//! delivery's `v1a` signature verifies with ring's Ed25519 (not the service's own code)
//! under that public key, before and after a rotation.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use e2e::{event, on_backend, Behavior, Received, Receiver, TestRunner, WAIT};
use reqwest::Method;
use ring::signature::{UnparsedPublicKey, ED25519};
use serde_json::json;

/// Whether any `v1a` signature of the request verifies under `public_key` (`whpk_…`).
fn verifies(public_key: &str, request: &Received) -> bool {
    let key = STANDARD
        .decode(public_key.strip_prefix("whpk_").expect("a whpk_ key"))
        .unwrap();
    let content = format!(
        "{}.{}.{}",
        request.header("webhook-id"),
        request.header("webhook-timestamp"),
        request.body
    );
    request
        .header("webhook-signature")
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1a,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .any(|sig| {
            UnparsedPublicKey::new(&ED25519, &key)
                .verify(content.as_bytes(), &sig)
                .is_ok()
        })
}

async fn ed25519_deliveries_verify_with_the_public_key_alone(t: TestRunner) {
    let receiver = Receiver::start().await;
    let account = "acct_ed";
    let created = t
        .create_webhook(
            account,
            json!({"url": receiver.url("ed", Behavior::Status(204)),
                   "event_types": ["call.ended"], "signature": "ed25519"}),
        )
        .await;
    assert_eq!(created["signature"], "ed25519");
    assert_eq!(
        created["secret"],
        json!(null),
        "the private key is never shown"
    );
    let first_key = created["public_key"].as_str().unwrap().to_string();
    assert!(first_key.starts_with("whpk_"), "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let read = t.get_webhook(account, &id).await;
    assert_eq!(
        (&read["public_key"], &read["secret"]),
        (&json!(first_key), &json!(null))
    );
    assert!(!read.to_string().contains("whsk_"), "{read}");

    t.send_event(event("call.ended", account, Some("evt_ed1")))
        .await;
    let got = receiver.wait_for("ed", 1, WAIT).await;
    let signature = got[0].header("webhook-signature");
    assert!(
        signature.starts_with("v1a,") && !signature.contains("v1,"),
        "{signature}"
    );
    assert!(verifies(&first_key, &got[0]), "{signature}");

    // Rotated: both keys sign for the overlap, each verifies its own signature.
    let (status, rotated) = t
        .call(
            Method::POST,
            &format!("/v1/accounts/{account}/webhooks/{id}/rotate-secret"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["secret"], json!(null));
    let second_key = rotated["public_key"].as_str().unwrap().to_string();
    assert_ne!(second_key, first_key);
    t.send_event(event("call.ended", account, Some("evt_ed2")))
        .await;
    let got = receiver.wait_for("ed", 2, WAIT).await;
    let second_id = t.delivery_id(account, "evt_ed2", &id).await;
    let second = got
        .iter()
        .find(|r| r.header("webhook-id") == second_id)
        .unwrap();
    assert_eq!(second.header("webhook-signature").split(' ').count(), 2);
    assert!(verifies(&first_key, second) && verifies(&second_key, second));
    let read = t.get_webhook(account, &id).await;
    assert_eq!(read["public_key"], json!(second_key));

    // A secret of one's own is for HMAC only.
    let (status, refused) = t
        .call(
            Method::POST,
            &format!("/v1/accounts/{account}/webhooks"),
            None,
            Some(json!({"url": receiver.url("x", Behavior::Status(204)),
                        "event_types": ["*"], "signature": "ed25519",
                        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["details"][0]["pointer"], "/secret");

    // At rest the private key is sealed like any secret.
    if let Some(raw) = t.raw_subscriptions_table().await {
        assert!(
            !raw.contains("whsk_"),
            "a private key is stored in clear: {raw}"
        );
    }
}

on_backend!(embedded, TestRunner::start_embedded;
    ed25519_deliveries_verify_with_the_public_key_alone,
);
on_backend!(moto, TestRunner::start_moto;
    ed25519_deliveries_verify_with_the_public_key_alone,
);
