//! Secrets sealed at rest on AWS (a moto server): the key in SSM Parameter Store is created
//! by whichever api instance needs it first and is the same for all (the deliver function
//! only opens with it), a parameter that holds no
//! key is refused and left alone, and a subscription created through the API is stored
//! sealed in DynamoDB yet still signs and authenticates its deliveries.

use app::ports::{OsRandom, SealingKeys};
use app::ErrorKind;
use aws_sdk_ssm::types::ParameterType;
use domain::sealing::Sealer;
use e2e::{moto, verify_signature, Behavior, Receiver, TestRunner, WAIT};
use serde_json::json;
use store_aws::{SealingKeyAccess, SsmSealingKey};

/// A parameter name no other test uses.
fn parameter(name: &str) -> String {
    format!("/{}sealing-key", moto::unique_prefix(name))
}

/// The parameter's type and decrypted value, as SSM holds them.
async fn stored(ssm: &aws_sdk_ssm::Client, name: &str) -> (ParameterType, String) {
    let out = ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    let p = out.parameter().unwrap();
    (p.r#type().unwrap().clone(), p.value().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_racing_on_a_missing_parameter_end_with_the_same_key() {
    let name = parameter("race");
    // Independent instances: each with its own clients, as separate Lambda instances are.
    let mut instances = Vec::new();
    for _ in 0..6 {
        instances.push(SsmSealingKey::new(moto::clients().await.ssm, &name));
    }
    let sealers = futures::future::try_join_all(instances.iter().map(|i| i.sealer()))
        .await
        .expect("every instance gets a key");

    // What one sealed, every other opens: one key.
    let sealed = sealers[0].seal("whsec_c2VjcmV0", "acct/wh/secret", &OsRandom);
    for (i, sealer) in sealers.iter().enumerate() {
        assert_eq!(
            sealer.open(&sealed, "acct/wh/secret").as_deref(),
            Ok("whsec_c2VjcmV0"),
            "instance {i} has another key"
        );
    }
    // The one stored, as a SecureString; an instance started later reads it.
    let ssm = moto::clients().await.ssm;
    let (kind, key) = stored(&ssm, &name).await;
    assert_eq!(kind, ParameterType::SecureString);
    let stored_key = Sealer::from_base64(&key).expect("a valid key is stored");
    assert_eq!(
        stored_key.open(&sealed, "acct/wh/secret").unwrap(),
        "whsec_c2VjcmV0"
    );
    let later = SsmSealingKey::new(ssm, &name).sealer().await.unwrap();
    assert_eq!(
        later.open(&sealed, "acct/wh/secret").unwrap(),
        "whsec_c2VjcmV0"
    );
}

/// The deliver function only opens what the api sealed: without the parameter it asks
/// again later (a retryable error), and creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_only_instance_never_creates_the_key() {
    let name = parameter("open-only");
    let ssm = moto::clients().await.ssm;
    let opener = SsmSealingKey::with_access(ssm.clone(), &name, SealingKeyAccess::OpenOnly);
    let err = opener.sealer().await.expect_err("no key yet");
    assert!(err.retryable(), "{err}");
    assert!(err.to_string().contains(&name), "{err}");
    let missing = ssm.get_parameter().name(&name).send().await.unwrap_err();
    assert!(
        missing
            .as_service_error()
            .is_some_and(|e| e.is_parameter_not_found()),
        "{missing:?}"
    );
    // Once the api has created it, the same instance opens with it.
    let created = SsmSealingKey::new(ssm.clone(), &name)
        .sealer()
        .await
        .unwrap();
    let sealed = created.seal("whsec_c2VjcmV0", "acct/wh/secret", &OsRandom);
    let opened = opener.sealer().await.unwrap();
    assert_eq!(
        opened.open(&sealed, "acct/wh/secret").as_deref(),
        Ok("whsec_c2VjcmV0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_that_holds_no_key_is_an_error_naming_it_and_is_left_as_it_is() {
    let ssm = moto::clients().await.ssm;
    let valid_key = Sealer::generate_key(&OsRandom);
    for (case, kind, value) in [
        ("malformed", ParameterType::SecureString, "not a key"),
        ("short", ParameterType::SecureString, "c2hvcnQ="),
        // A valid key, but stored in clear.
        ("plain", ParameterType::String, valid_key.as_str()),
    ] {
        let name = parameter(case);
        ssm.put_parameter()
            .name(&name)
            .value(value)
            .r#type(kind.clone())
            .send()
            .await
            .unwrap();
        let err = SsmSealingKey::new(ssm.clone(), &name)
            .sealer()
            .await
            .expect_err(case);
        assert_eq!(err.kind(), ErrorKind::Permanent, "{case}: {err}");
        let text = err.to_string();
        assert!(
            text.contains(&name),
            "{case}: the parameter is not named: {text}"
        );
        assert!(text.contains("left as it is"), "{case}: {text}");
        assert_eq!(
            stored(&ssm, &name).await,
            (kind, value.to_string()),
            "{case}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_created_through_the_api_are_stored_sealed_and_still_sign() {
    const PASSWORD: &str = "sekret-basic-aws-456";
    const TENANT_TOKEN: &str = "sekret-header-aws-246";
    let t = TestRunner::start_moto("sealed").await;
    let (clients, resources) = t.aws.clone().expect("on moto");
    let r = Receiver::start().await;
    let sub = t
        .create_webhook(
            "acct_sealed",
            json!({"url": r.url("sealed", Behavior::Status(200)), "event_types": ["*"],
                   "auth": {"type": "basic", "username": "svc-user", "password": PASSWORD},
                   "headers": {"X-Tenant-Token": TENANT_TOKEN}}),
        )
        .await;
    let secret = sub["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_") && secret.len() > 20, "{sub}");

    // The table as a scan, a backup or an export shows it: no secret in clear.
    let items = clients
        .dynamodb
        .scan()
        .table_name(&resources.subscriptions_table)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    assert_eq!(items.len(), 1, "{items:?}");
    let raw = format!("{items:?}");
    for (what, value) in [
        ("signing secret", secret.as_str()),
        ("signing key", secret.trim_start_matches("whsec_")),
        ("basic password", PASSWORD),
        ("custom header value", TENANT_TOKEN),
    ] {
        assert!(!raw.contains(value), "the {what} is stored in clear: {raw}");
    }
    assert!(raw.contains("sealed:v1:"), "{raw}");
    // Sealed with the deployment's key, created on first use.
    let parameter = resources.sealing_key_parameter.as_deref().unwrap();
    let (kind, _) = stored(&clients.ssm, parameter).await;
    assert_eq!(kind, ParameterType::SecureString);

    // Delivered signed with the secret the API gave out, with the credentials in clear on
    // the wire only.
    t.send_event(e2e::event("call.ended", "acct_sealed", Some("evt_sealed")))
        .await;
    let got = r.wait_for("sealed", 1, WAIT).await;
    assert!(verify_signature(&secret, &got[0]), "{:?}", got[0].headers);
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("svc-user:{PASSWORD}"))
    };
    assert_eq!(got[0].header("authorization"), format!("Basic {basic}"));
    assert_eq!(got[0].header("x-tenant-token"), TENANT_TOKEN);
    t.runner.shutdown().await;
}
