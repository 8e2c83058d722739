//! Receiver authentication beyond static secrets, end to end on both backends, with real
//! local servers: OAuth 2.0 client credentials against a token endpoint of the test's own,
//! and a JWT per delivery verified against the service's JWKS by a JWT library that is not
//! the service's (`jsonwebtoken` on AWS-LC).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use e2e::{event, eventually, on_backend, Behavior, Receiver, TestRunner, WAIT};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use reqwest::Method;
use serde_json::{json, Value};

/// What the token endpoint answers.
#[derive(Clone, Copy)]
enum Answer {
    /// A new token (`tok-<n>`) valid this many seconds.
    Token { expires_in: u64 },
    /// This status with an OAuth error.
    Fail(u16),
}

#[derive(Default)]
struct Issued {
    /// The form bodies and `authorization` headers of the requests, in order.
    requests: Vec<(String, String)>,
}

/// A token endpoint: issues `tok-1`, `tok-2`, … to the client `crm` with secret `s3cret`.
struct TokenEndpoint {
    addr: SocketAddr,
    issued: Arc<Mutex<Issued>>,
    answer: Arc<Mutex<Answer>>,
}

type TokenState = (Arc<Mutex<Issued>>, Arc<Mutex<Answer>>);

async fn issue(
    State((issued, answer)): State<TokenState>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, Json<Value>) {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let n = {
        let mut issued = issued.lock().unwrap();
        issued.requests.push((body, authorization.clone()));
        issued.requests.len()
    };
    let expected = format!("Basic {}", STANDARD.encode("crm:s3cret"));
    if authorization != expected {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        );
    }
    let answer = *answer.lock().unwrap();
    match answer {
        Answer::Token { expires_in } => (
            StatusCode::OK,
            Json(
                json!({"access_token": format!("tok-{n}"), "token_type": "Bearer",
                        "expires_in": expires_in}),
            ),
        ),
        Answer::Fail(status) => (
            StatusCode::from_u16(status).unwrap(),
            Json(json!({"error": "temporarily_unavailable",
                        "error_description": "the IdP is down"})),
        ),
    }
}

impl TokenEndpoint {
    async fn start(answer: Answer) -> TokenEndpoint {
        let issued = Arc::new(Mutex::new(Issued::default()));
        let answer = Arc::new(Mutex::new(answer));
        let app = Router::new()
            .route("/token", post(issue))
            .with_state((issued.clone(), answer.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        TokenEndpoint {
            addr,
            issued,
            answer,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    fn requests(&self) -> Vec<(String, String)> {
        self.issued.lock().unwrap().requests.clone()
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }
}

fn oauth(token: &TokenEndpoint) -> Value {
    json!({"type": "oauth2_client_credentials", "token_url": token.url(),
           "client_id": "crm", "client_secret": "s3cret", "scope": "events:write"})
}

async fn oauth_token_is_fetched_once_refreshed_on_expiry_and_on_401(t: TestRunner) {
    let token = TokenEndpoint::start(Answer::Token { expires_in: 3600 }).await;
    let receiver = Receiver::start().await;
    let account = "acct_oauth";
    let created = t
        .create_webhook(
            account,
            json!({"url": receiver.url("crm", Behavior::Status(204)),
                   "event_types": ["call.ended"], "auth": oauth(&token)}),
        )
        .await;
    // Read back: the secret masked, the rest as sent.
    assert_eq!(created["auth"]["client_secret"], "********", "{created}");
    assert_eq!(created["auth"]["client_id"], "crm");
    assert_eq!(created["auth"]["client_auth"], "client_secret_basic");
    let id = created["id"].as_str().unwrap().to_string();

    // Many deliveries, one token request.
    for i in 0..6 {
        t.send_event(event("call.ended", account, Some(&format!("evt_o{i}"))))
            .await;
    }
    let got = receiver.wait_for("crm", 6, WAIT).await;
    assert!(
        got.iter()
            .all(|r| r.header("authorization") == "Bearer tok-1"),
        "{:?}",
        got.iter()
            .map(|r| r.header("authorization"))
            .collect::<Vec<_>>()
    );
    let requests = token.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        requests[0].0,
        "grant_type=client_credentials&scope=events%3Awrite"
    );

    // The endpoint refuses the token (revoked early): one new token, the same attempt.
    let refusing = receiver.url("crm401", Behavior::Sequence(vec![401]));
    let (status, body) = t
        .call(
            Method::PATCH,
            &format!("/v1/accounts/{account}/webhooks/{id}"),
            None,
            Some(json!({"url": refusing})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    t.send_event(event("call.ended", account, Some("evt_o401")))
        .await;
    let got = receiver.wait_for("crm401", 2, WAIT).await;
    assert_eq!(got[0].header("authorization"), "Bearer tok-1");
    assert_eq!(got[1].header("authorization"), "Bearer tok-2");
    assert_eq!(token.requests().len(), 2);
    let delivery = t.delivery_id(account, "evt_o401", &id).await;
    let read = eventually("the delivery to succeed", WAIT, || async {
        let (_, d) = t
            .call(
                Method::GET,
                &format!("/v1/accounts/{account}/deliveries/{delivery}"),
                None,
                None,
            )
            .await;
        if d["status"] == "succeeded" {
            Ok(d)
        } else {
            Err(d.to_string())
        }
    })
    .await;
    assert_eq!(read["attempts"].as_array().unwrap().len(), 1, "{read}");
    // The log shows that a token went out, never the token.
    let logged = read["request"]["headers"].to_string();
    assert!(
        logged.contains("Bearer ********") && !logged.contains("tok-"),
        "{logged}"
    );

    // The mask keeps the stored secret only for the same client at the same token URL;
    // for another it is refused, never stored as the secret.
    let (status, refused) = t
        .call(
            Method::PATCH,
            &format!("/v1/accounts/{account}/webhooks/{id}"),
            None,
            Some(
                json!({"auth": {"type": "oauth2_client_credentials", "token_url": token.url(),
                                 "client_id": "crm-other", "client_secret": "********"}}),
            ),
        )
        .await;
    e2e::assert_error(status, &refused, 400, "validation_failed");
    assert_eq!(
        refused["error"]["details"][0]["pointer"],
        "/auth/client_secret"
    );

    // Tokens that expire at once are fetched again for the next delivery.
    token.answer(Answer::Token { expires_in: 2 });
    let (status, _) = t
        .call(
            Method::PATCH,
            &format!("/v1/accounts/{account}/webhooks/{id}"),
            None,
            Some(json!({"url": receiver.url("crm", Behavior::Status(204)),
                        "auth": {"type": "oauth2_client_credentials", "token_url": token.url(),
                                 "client_id": "crm", "client_secret": "********",
                                 "scope": "events:write read"}})),
        )
        .await;
    assert_eq!(status, 200);
    // Changed credentials (the scope) do not reuse the token fetched with the old ones;
    // the masked secret kept the stored one, or the token endpoint would refuse it.
    t.send_event(event("call.ended", account, Some("evt_e1")))
        .await;
    let got = receiver.wait_for("crm", 7, WAIT).await;
    assert_eq!(got[6].header("authorization"), "Bearer tok-3");
    // Refreshed a second before it expires: after 1.5 s it is not used again.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    t.send_event(event("call.ended", account, Some("evt_e2")))
        .await;
    let got = receiver.wait_for("crm", 8, WAIT).await;
    assert_eq!(got[7].header("authorization"), "Bearer tok-4");
    assert_eq!(token.requests().len(), 4);

    // At rest the client secret is sealed like any secret.
    if let Some(raw) = t.raw_subscriptions_table().await {
        assert!(
            raw.contains("client_id") && !raw.contains("s3cret"),
            "{raw}"
        );
    }
}

async fn a_failing_token_endpoint_fails_the_attempt_with_its_cause_and_is_retried(t: TestRunner) {
    let token = TokenEndpoint::start(Answer::Fail(503)).await;
    let receiver = Receiver::start().await;
    let account = "acct_oauth_down";
    let created = t
        .create_webhook(
            account,
            json!({"url": receiver.url("crm", Behavior::Status(204)),
                   "event_types": ["call.ended"], "auth": oauth(&token),
                   "retry_schedule": [1], "max_attempts": 3}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    t.send_event(event("call.ended", account, Some("evt_down")))
        .await;
    let delivery = t.delivery_id(account, "evt_down", &id).await;
    let path = format!("/v1/accounts/{account}/deliveries/{delivery}");
    let read = eventually("a failed attempt", WAIT, || async {
        let (_, d) = t.call(Method::GET, &path, None, None).await;
        if d["attempts"].as_array().is_some_and(|a| !a.is_empty()) {
            Ok(d)
        } else {
            Err(d.to_string())
        }
    })
    .await;
    let error = read["attempts"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("OAuth token: the token endpoint answered 503")
            && error.contains("the IdP is down"),
        "{read}"
    );
    assert_eq!(read["attempts"][0]["status_code"], json!(null));
    assert!(
        receiver.received("crm").is_empty(),
        "called without a token"
    );
    // Grouped under its own cause.
    let (_, stats) = t
        .call(
            Method::GET,
            &format!("/v1/accounts/{account}/webhooks/{id}/stats?window=1h"),
            None,
            None,
        )
        .await;
    assert_eq!(stats["errors"][0]["cause"], "oauth_token", "{stats}");

    // The token endpoint recovers: the retry goes through.
    token.answer(Answer::Token { expires_in: 3600 });
    let got = receiver.wait_for("crm", 1, WAIT).await;
    assert_eq!(got[0].header("authorization"), "Bearer tok-2");
    eventually("the delivery to succeed", WAIT, || async {
        let (_, d) = t.call(Method::GET, &path, None, None).await;
        if d["status"] == "succeeded" {
            Ok(())
        } else {
            Err(d.to_string())
        }
    })
    .await;
}

async fn a_token_url_at_a_private_address_is_refused(t: TestRunner) {
    let receiver = Receiver::start().await;
    let url = receiver.url("crm", Behavior::Status(204));
    let create = |token_url: &str, client_secret: &str| {
        t.call(
            Method::POST,
            "/v1/accounts/acct_oauth_ssrf/webhooks",
            None,
            Some(json!({"url": url, "event_types": ["*"],
                        "auth": {"type": "oauth2_client_credentials", "token_url": token_url,
                                 "client_id": "crm", "client_secret": client_secret}})),
        )
    };
    let (status, body) = create("http://169.254.169.254/latest/token", "s").await;
    e2e::assert_error(status, &body, 400, "destination_not_allowed");
    let (status, body) = create("ftp://idp.example.com/token", "").await;
    e2e::assert_error(status, &body, 400, "validation_failed");
    let pointers: HashSet<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["pointer"].as_str())
        .collect();
    assert_eq!(
        pointers,
        HashSet::from(["/auth/token_url", "/auth/client_secret"])
    );
}

/// The JWKS as a receiver fetches it: no key needed.
async fn jwks(t: &TestRunner) -> JwkSet {
    let response = t
        .http
        .get(t.url("/v1/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn jwt_deliveries_verify_against_the_published_keys(t: TestRunner) {
    let receiver = Receiver::start().await;
    let account = "acct_jwt";
    // The first try fails: its retry carries a token of its own.
    let url = receiver.url("jwt", Behavior::Sequence(vec![503]));
    let created = t
        .create_webhook(
            account,
            json!({"url": url, "event_types": ["call.ended"], "auth": {"type": "jwt"},
                   "retry_schedule": [1]}),
        )
        .await;
    assert_eq!(created["auth"], json!({"type": "jwt", "audience": null}));
    let id = created["id"].as_str().unwrap().to_string();
    t.send_event(event("call.ended", account, Some("evt_j1")))
        .await;
    let got = receiver.wait_for("jwt", 2, WAIT).await;
    let token_of = |i: usize| {
        got[i]
            .header("authorization")
            .strip_prefix("Bearer ")
            .expect("a bearer token")
            .to_string()
    };
    let (token, retry_token) = (token_of(0), token_of(1));

    let keys = jwks(&t).await;
    let kid = decode_header(&token).unwrap().kid.expect("a kid");
    let jwk = keys.find(&kid).expect("the token's key is published");
    let mut validation = Validation::new(Algorithm::ES256);
    let issuer = t.url("");
    validation.set_issuer(&[issuer.trim_end_matches('/')]);
    validation.set_audience(&[&url]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "aud"]);
    let claims = decode::<Value>(&token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .expect("the token verifies")
        .claims;
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["webhook_id"], got[0].header("webhook-id"));
    // Each request's token has a jti of its own; the webhook id stays.
    let retry = decode::<Value>(
        &retry_token,
        &DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .expect("the retry's token verifies")
    .claims;
    assert_eq!(retry["webhook_id"], claims["webhook_id"]);
    assert_ne!(retry["jti"], claims["jti"]);
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((1..=300).contains(&lifetime), "{claims}");
    // A changed token does not verify.
    let mut forged = token.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    assert!(decode::<Value>(&forged, &DecodingKey::from_jwk(jwk).unwrap(), &validation).is_err());
    // Nothing private is published.
    let published = serde_json::to_string(&keys).unwrap();
    assert!(!published.contains("\"d\""), "{published}");

    // An audience of another origin would mint tokens for someone else's receiver.
    let path = format!("/v1/accounts/{account}/webhooks/{id}");
    let (status, refused) = t
        .call(
            Method::PATCH,
            &path,
            None,
            Some(json!({"auth": {"type": "jwt", "audience": "https://victim.example.net/"}})),
        )
        .await;
    e2e::assert_error(status, &refused, 400, "validation_failed");
    assert_eq!(refused["error"]["details"][0]["pointer"], "/auth/audience");
    // One of its own origin is the audience; the log masks the token.
    // The receiver's `http://127.0.0.1:<port>/jwt` with another path.
    let audience = format!("{}/api", url.rsplit_once('/').unwrap().0);
    let (status, body) = t
        .call(
            Method::PATCH,
            &path,
            None,
            Some(json!({"auth": {"type": "jwt", "audience": audience}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    t.send_event(event("call.ended", account, Some("evt_j2")))
        .await;
    let got = receiver.wait_for("jwt", 3, WAIT).await;
    let token = got[2]
        .header("authorization")
        .strip_prefix("Bearer ")
        .unwrap();
    validation.set_audience(&[&audience]);
    assert!(decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation).is_ok());
    let delivery = t.delivery_id(account, "evt_j2", &id).await;
    let (_, read) = t
        .call(
            Method::GET,
            &format!("/v1/accounts/{account}/deliveries/{delivery}"),
            None,
            None,
        )
        .await;
    let logged = read["request"]["headers"].to_string();
    assert!(
        logged.contains("Bearer ********") && !logged.contains(token),
        "{logged}"
    );

    // At rest the signing key is sealed.
    if let Some(raw) = t.raw_subscriptions_table().await {
        assert!(
            raw.contains("jwt-keys") && raw.contains("sealed:v1:"),
            "{raw}"
        );
    } else {
        let db = rusqlite::Connection::open(t.dir.path().join("webhooks.db")).unwrap();
        let ring: String = db
            .query_row("SELECT ring FROM jwt_keys", [], |r| r.get(0))
            .unwrap();
        let ring: Value = serde_json::from_str(&ring).unwrap();
        for key in ring["keys"].as_array().unwrap() {
            let private = key["private_key"].as_str().unwrap();
            assert!(private.starts_with("sealed:v1:"), "{ring}");
        }
    }
}

on_backend!(embedded, TestRunner::start_embedded;
    oauth_token_is_fetched_once_refreshed_on_expiry_and_on_401,
    a_failing_token_endpoint_fails_the_attempt_with_its_cause_and_is_retried,
    a_token_url_at_a_private_address_is_refused,
    jwt_deliveries_verify_against_the_published_keys,
);
on_backend!(moto, TestRunner::start_moto;
    oauth_token_is_fetched_once_refreshed_on_expiry_and_on_401,
    a_failing_token_endpoint_fails_the_attempt_with_its_cause_and_is_retried,
    a_token_url_at_a_private_address_is_refused,
    jwt_deliveries_verify_against_the_published_keys,
);
