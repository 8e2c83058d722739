//! Account keys over real HTTP, on the embedded default and on DynamoDB (moto): a key is
//! listed with its prefix and last use (never the key), a revoked key gets 401 on its very
//! next request, an expired one from its expiry on, an account key sees and revokes only its
//! own account's keys, and an account has a bounded number of keys in use. Each case runs on
//! both backends, as `backend::case`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use domain::api_key::{MAX_ACTIVE_KEYS_PER_ACCOUNT, MAX_KEPT_KEYS_PER_ACCOUNT};
use domain::time::Timestamp;
use e2e::{assert_error, on_backend, TestRunner};
use reqwest::Method;
use serde_json::{json, Value};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Creates a key of `account` with the platform key; answers (id, key, the whole answer).
async fn create_key(t: &TestRunner, account: &str, body: Option<Value>) -> (String, String, Value) {
    let (status, created) = t
        .call(
            Method::POST,
            &format!("/v1/accounts/{account}/api-keys"),
            None,
            body,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    // Keys are ordered by creation time to the millisecond, then by id, whose tail is
    // random: two made in the same millisecond have no order of creation to check. The
    // tests that check it make each key in a millisecond of its own.
    tokio::time::sleep(Duration::from_millis(2)).await;
    (
        created["id"].as_str().unwrap().to_string(),
        created["key"].as_str().unwrap().to_string(),
        created,
    )
}

/// A request only a valid key of `account` (or the platform key) gets 200 for.
async fn use_key(t: &TestRunner, account: &str, key: &str) -> (u16, Value) {
    t.call(
        Method::GET,
        &format!("/v1/accounts/{account}/webhooks"),
        Some(key),
        None,
    )
    .await
}

/// The account's keys as listed, with `key` (the platform key when `None`).
async fn list_keys(t: &TestRunner, account: &str, key: Option<&str>) -> Vec<Value> {
    let (status, list) = t
        .call(
            Method::GET,
            &format!("/v1/accounts/{account}/api-keys"),
            key,
            None,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    list["data"].as_array().unwrap().clone()
}

fn listed<'a>(keys: &'a [Value], id: &str) -> &'a Value {
    keys.iter()
        .find(|k| k["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {keys:?}"))
}

async fn a_revoked_key_gets_401_on_its_next_request(t: TestRunner) {
    let (id, key, created) = create_key(&t, "acct_k", None).await;
    let prefix = created["prefix"].as_str().unwrap();
    assert!(
        key.starts_with(prefix) && prefix.len() < key.len() / 2,
        "{created}"
    );
    let (other_id, other_key, _) = create_key(&t, "acct_k", None).await;

    let (status, body) = use_key(&t, "acct_k", &key).await;
    assert_eq!(status, 200, "{body}");

    // Listed newest first, with its prefix and last use; never the key or its hash.
    let keys = list_keys(&t, "acct_k", None).await;
    let ids: Vec<_> = keys.iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [other_id.as_str(), id.as_str()], "newest first");
    let mine = listed(&keys, &id);
    assert_eq!(mine["prefix"], prefix);
    assert_eq!(mine["status"], "active");
    assert!(mine["last_used_at"].is_string(), "{mine}");
    assert_eq!(mine["revoked_at"], Value::Null);
    assert_eq!(mine["created_at"], created["created_at"]);
    assert!(
        listed(&keys, &other_id)["last_used_at"].is_null(),
        "{keys:?}"
    );
    let text = serde_json::to_string(&keys).unwrap();
    assert!(!text.contains(&key) && !text.contains(&other_key), "{text}");
    assert!(!text.contains(&domain::api_key::hash_key(&key)), "{text}");

    let (status, body) = t
        .call(
            Method::DELETE,
            &format!("/v1/accounts/acct_k/api-keys/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    // The very next request with it is refused; the other key still works.
    let (status, body) = use_key(&t, "acct_k", &key).await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, body) = use_key(&t, "acct_k", &other_key).await;
    assert_eq!(status, 200, "{body}");

    let keys = list_keys(&t, "acct_k", Some(&other_key)).await;
    let mine = listed(&keys, &id);
    assert_eq!(mine["status"], "revoked", "{mine}");
    assert!(mine["revoked_at"].is_string(), "{mine}");

    // Revoking again changes nothing; an unknown key is not found.
    let (status, _) = t
        .call(
            Method::DELETE,
            &format!("/v1/accounts/acct_k/api-keys/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = t
        .call(
            Method::DELETE,
            "/v1/accounts/acct_k/api-keys/key_none",
            None,
            None,
        )
        .await;
    assert_error(status, &body, 404, "not_found");

    // A key may revoke itself, and is refused from then on.
    let (status, _) = t
        .call(
            Method::DELETE,
            &format!("/v1/accounts/acct_k/api-keys/{other_id}"),
            Some(&other_key),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = use_key(&t, "acct_k", &other_key).await;
    assert_error(status, &body, 401, "unauthorized");
    t.runner.shutdown().await;
}

async fn an_expired_key_gets_401(t: TestRunner) {
    // An expiry must be an RFC 3339 time in the future.
    for bad in [
        json!("tomorrow"),
        json!(Timestamp::from_millis(now_ms() - 1_000).to_rfc3339()),
    ] {
        let (status, body) = t
            .call(
                Method::POST,
                "/v1/accounts/acct_e/api-keys",
                None,
                Some(json!({ "expires_at": bad })),
            )
            .await;
        assert_error(status, &body, 400, "validation_failed");
        assert_eq!(
            body["error"]["details"][0]["pointer"], "/expires_at",
            "{body}"
        );
    }
    let (status, body) = t
        .call(
            Method::POST,
            "/v1/accounts/acct_e/api-keys",
            None,
            Some(json!({"expires_in": 5})),
        )
        .await;
    assert_error(status, &body, 400, "unknown_field");
    assert!(list_keys(&t, "acct_e", None).await.is_empty());

    let expires_at = now_ms() + 3_000;
    let (id, key, created) = create_key(
        &t,
        "acct_e",
        Some(json!({"expires_at": Timestamp::from_millis(expires_at).to_rfc3339()})),
    )
    .await;
    assert_eq!(
        created["expires_at"],
        Timestamp::from_millis(expires_at).to_rfc3339()
    );
    let (status, body) = use_key(&t, "acct_e", &key).await;
    assert_eq!(status, 200, "{body}");
    let keys = list_keys(&t, "acct_e", None).await;
    assert_eq!(listed(&keys, &id)["expires_at"], created["expires_at"]);

    let left = expires_at - now_ms();
    tokio::time::sleep(Duration::from_millis(left.max(0) as u64 + 100)).await;
    let (status, body) = use_key(&t, "acct_e", &key).await;
    assert_error(status, &body, 401, "unauthorized");
    let keys = list_keys(&t, "acct_e", None).await;
    assert_eq!(listed(&keys, &id)["status"], "expired");
    t.runner.shutdown().await;
}

async fn an_account_key_sees_and_revokes_only_its_own_accounts_keys(t: TestRunner) {
    let (a_id, a_key, _) = create_key(&t, "acct_a", None).await;
    let (b_id, b_key, _) = create_key(&t, "acct_b", None).await;

    let own = list_keys(&t, "acct_a", Some(&a_key)).await;
    let ids: Vec<_> = own.iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [a_id.as_str()]);
    for (method, path) in [
        (Method::GET, "/v1/accounts/acct_b/api-keys".to_string()),
        (
            Method::DELETE,
            format!("/v1/accounts/acct_b/api-keys/{b_id}"),
        ),
        // Its own account's path with the other account's key id.
        (
            Method::DELETE,
            format!("/v1/accounts/acct_a/api-keys/{b_id}"),
        ),
    ] {
        let (status, body) = t.call(method.clone(), &path, Some(&a_key), None).await;
        assert_error(status, &body, 404, "not_found");
        assert!(!body.to_string().contains(&b_id), "{method} {path}: {body}");
    }
    // Creating keys stays the platform key's.
    let (status, body) = t
        .call(
            Method::POST,
            "/v1/accounts/acct_a/api-keys",
            Some(&a_key),
            None,
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    // The other account's key still works.
    let (status, body) = use_key(&t, "acct_b", &b_key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        listed(&list_keys(&t, "acct_b", None).await, &b_id)["status"],
        "active"
    );
    t.runner.shutdown().await;
}

async fn an_account_has_a_bounded_number_of_keys_in_use(t: TestRunner) {
    // The steps below fill the kept keys with two rounds of keys in use.
    assert_eq!(MAX_KEPT_KEYS_PER_ACCOUNT, 2 * MAX_ACTIVE_KEYS_PER_ACCOUNT);
    let revoke = |id: String| {
        let t = &t;
        async move {
            let path = format!("/v1/accounts/acct_cap/api-keys/{id}");
            let (status, body) = t.call(Method::DELETE, &path, None, None).await;
            assert_eq!(status, 204, "{body}");
        }
    };
    let mut first = Vec::new();
    for _ in 0..MAX_ACTIVE_KEYS_PER_ACCOUNT {
        first.push(create_key(&t, "acct_cap", None).await.0);
    }
    let (status, body) = t
        .call(Method::POST, "/v1/accounts/acct_cap/api-keys", None, None)
        .await;
    assert_error(status, &body, 409, "limit_exceeded");
    // Another account is not affected; revoked keys make room.
    create_key(&t, "acct_other", None).await;
    for id in first.clone() {
        revoke(id).await;
    }
    let mut second = Vec::new();
    for _ in 0..MAX_ACTIVE_KEYS_PER_ACCOUNT {
        second.push(create_key(&t, "acct_cap", None).await.0);
    }
    let (status, body) = t
        .call(Method::POST, "/v1/accounts/acct_cap/api-keys", None, None)
        .await;
    assert_error(status, &body, 409, "limit_exceeded");
    assert_eq!(
        list_keys(&t, "acct_cap", None).await.len(),
        MAX_KEPT_KEYS_PER_ACCOUNT
    );
    // With room among the keys in use but as many kept as may be, the oldest key no longer
    // in use is forgotten: the listing stays bounded, and every key in use stays.
    revoke(second[0].clone()).await;
    let (newest, _, _) = create_key(&t, "acct_cap", None).await;
    let keys = list_keys(&t, "acct_cap", None).await;
    assert_eq!(keys.len(), MAX_KEPT_KEYS_PER_ACCOUNT);
    assert_eq!(keys[0]["id"], newest.as_str());
    assert!(
        keys.iter().all(|k| k["id"] != first[0].as_str()),
        "not forgotten"
    );
    for id in first.iter().skip(1).chain(&second) {
        listed(&keys, id);
    }
    t.runner.shutdown().await;
}

/// `GET /v1/whoami`: what the console asks at sign-in. The platform key has no account; an
/// account key names its own; a revoked key gets 401 like on any route.
async fn whoami_names_the_keys_kind_and_account(t: TestRunner) {
    let (status, me) = t.call(Method::GET, "/v1/whoami", None, None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me, json!({"kind": "platform", "account_id": null}));

    let (id, key, _) = create_key(&t, "acct_who", None).await;
    let (status, me) = t.call(Method::GET, "/v1/whoami", Some(&key), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me, json!({"kind": "account", "account_id": "acct_who"}));

    let (status, _) = t
        .call(
            Method::DELETE,
            &format!("/v1/accounts/acct_who/api-keys/{id}"),
            None,
            None,
        )
        .await;
    assert!(status == 200 || status == 204, "{status}");
    let (status, body) = t.call(Method::GET, "/v1/whoami", Some(&key), None).await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, body) = t
        .call(Method::GET, "/v1/whoami", Some("whp_not_a_key"), None)
        .await;
    assert_error(status, &body, 401, "unauthorized");
}

on_backend!(embedded, TestRunner::start_embedded;
    a_revoked_key_gets_401_on_its_next_request,
    an_expired_key_gets_401,
    an_account_key_sees_and_revokes_only_its_own_accounts_keys,
    an_account_has_a_bounded_number_of_keys_in_use,
    whoami_names_the_keys_kind_and_account
);
on_backend!(moto, TestRunner::start_moto;
    a_revoked_key_gets_401_on_its_next_request,
    an_expired_key_gets_401,
    an_account_key_sees_and_revokes_only_its_own_accounts_keys,
    an_account_has_a_bounded_number_of_keys_in_use,
    whoami_names_the_keys_kind_and_account
);

/// `GET /v1/egress-ips`: the addresses receivers allow-list, for any valid key; empty when
/// the deployment has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_ips_are_published_to_any_key() {
    let t = TestRunner::start().await;
    let (status, body) = t.call(Method::GET, "/v1/egress-ips", None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"egress_ips": []}));

    let t = TestRunner::start_with(|c| {
        c.egress_ips = vec![
            "203.0.113.9".parse().unwrap(),
            "2001:db8::7".parse().unwrap(),
        ]
    })
    .await;
    let (_, key, _) = create_key(&t, "acct_egress", None).await;
    let (status, body) = t
        .call(Method::GET, "/v1/egress-ips", Some(&key), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"egress_ips": ["203.0.113.9", "2001:db8::7"]}));
    let (status, body) = t
        .call(Method::GET, "/v1/egress-ips", Some("whp_not_a_key"), None)
        .await;
    assert_error(status, &body, 401, "unauthorized");
}
