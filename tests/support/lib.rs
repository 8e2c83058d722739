//! Helpers for the end-to-end tests: a runner on a temporary data dir, the runner binary as
//! a child process (`process`), a programmable local receiver, and an independent Standard
//! Webhooks verifier.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

pub mod aws_recorder;
pub mod functions;
pub mod lambda_api;
pub mod moto;
pub mod process;
pub mod server;
pub mod smtp;
pub mod template;

pub use runner::{Config, Runner};

/// How long a test waits for something it expects to happen. Generous, so that a slow run
/// (a loaded machine) still passes: it only bounds a failure, a pass returns as soon as the
/// condition holds.
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `check` until it returns `Ok`, and returns that value. `Err` describes what was
/// seen instead: the last one is in the failure message if `timeout` passes first.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How a receiver path answers.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// Always this status.
    Status(u16),
    /// These statuses in order, then 200 for ever.
    Sequence(Vec<u16>),
    /// Sleeps, then answers 200.
    Sleep(Duration),
    /// Holds each request until the gate is opened, then answers this status.
    Held(u16, Gate),
}

/// Holds the requests of a `Behavior::Held` path until the test opens it.
#[derive(Debug, Clone)]
pub struct Gate(Arc<tokio::sync::watch::Sender<bool>>);

impl Gate {
    pub fn new() -> Gate {
        Gate(Arc::new(tokio::sync::watch::channel(false).0))
    }

    /// Lets every held request through, and every later one.
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    async fn passed(&self) {
        let mut open = self.0.subscribe();
        let _ = open.wait_for(|open| *open).await;
    }
}

impl Default for Gate {
    fn default() -> Gate {
        Gate::new()
    }
}

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("the body is JSON")
    }
}

#[derive(Default)]
struct ReceiverState {
    behaviors: HashMap<String, Behavior>,
    calls: HashMap<String, usize>,
    received: Vec<Received>,
}

/// A local HTTP endpoint that records every webhook it gets.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let app = Router::new()
            .route("/{path}", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, state }
    }

    /// The URL of `path`, answering as `behavior` says (200 when never set).
    pub fn url(&self, path: &str, behavior: Behavior) -> String {
        self.state
            .lock()
            .unwrap()
            .behaviors
            .insert(path.to_string(), behavior);
        format!("http://{}/{path}", self.addr)
    }

    pub fn received(&self, path: &str) -> Vec<Received> {
        let state = self.state.lock().unwrap();
        state
            .received
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `path` has received at least `n` requests, or panics after `timeout`.
    pub async fn wait_for(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        eventually(
            &format!("{path} to receive {n} requests"),
            timeout,
            || async {
                let got = self.received(path);
                if got.len() >= n {
                    Ok(got)
                } else {
                    Err(format!("{} requests", got.len()))
                }
            },
        )
        .await
    }
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let at = Instant::now();
    let behavior = {
        let mut s = state.lock().unwrap();
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        s.received.push(Received {
            path: path.clone(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            at,
        });
        let n = {
            let c = s.calls.entry(path.clone()).or_default();
            *c += 1;
            *c
        };
        match s.behaviors.get(&path).cloned() {
            Some(Behavior::Sequence(codes)) => {
                Behavior::Status(codes.get(n - 1).copied().unwrap_or(200))
            }
            Some(b) => b,
            None => Behavior::Status(200),
        }
    };
    let status = match behavior {
        Behavior::Status(code) => code,
        Behavior::Sleep(d) => {
            tokio::time::sleep(d).await;
            200
        }
        Behavior::Held(code, gate) => {
            gate.passed().await;
            code
        }
        Behavior::Sequence(_) => unreachable!("resolved above"),
    };
    (StatusCode::from_u16(status).unwrap(), "ok")
}

/// Verifies a Standard Webhooks request with its own HMAC code (not the service's), so a
/// bug in the service's signer cannot hide itself.
pub fn verify_signature(secret: &str, request: &Received) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .expect("base64 secret");
    let signed = format!(
        "{}.{}.{}",
        request.header("webhook-id"),
        request.header("webhook-timestamp"),
        request.body
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(signed.as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let timestamp: i64 = request.header("webhook-timestamp").parse().unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (now - timestamp).abs() <= 300
        && request
            .header("webhook-signature")
            .split(' ')
            .any(|s| s == expected)
}

/// The local runner on a temporary data dir, and an API client for it.
pub struct TestRunner {
    pub runner: Runner,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    /// Whether a queue may hand one message to two receivers, so that one delivery is
    /// attempted twice. SQS delivers at least once (and moto does so under load); the
    /// embedded queue hands a message to one receiver at a time.
    pub may_duplicate: bool,
    /// On moto: the clients and the resource names, for a test that looks at what the
    /// tables hold.
    pub aws: Option<(store_aws::Clients, store_aws::Resources)>,
}

pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config::for_data_dir(dir);
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.allow_http = true;
    config.allowed_cidrs = vec!["127.0.0.0/8".parse().unwrap()];
    config
}

impl TestRunner {
    /// On the embedded default.
    pub async fn start() -> TestRunner {
        TestRunner::start_with(|_| {}).await
    }

    /// On the embedded default, with settings changed from the tests' defaults.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestRunner {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let runner = Runner::start(config).await.unwrap();
        TestRunner {
            runner,
            dir,
            http: reqwest::Client::new(),
            may_duplicate: false,
            aws: None,
        }
    }

    /// On the embedded default; takes the case's name as `start_moto` does, so that
    /// `on_backend!` instantiates cases for either backend alike.
    pub async fn start_embedded(_case: &str) -> TestRunner {
        TestRunner::start().await
    }

    /// On SQS and DynamoDB (a moto server), with pollers standing in for Lambda's event
    /// source mappings exactly as in the embedded runner, and secrets sealed with a key in
    /// SSM as the runner's AWS backend does.
    pub async fn start_moto(name: &str) -> TestRunner {
        TestRunner::start_moto_with(name, |_| {}).await
    }

    /// On a moto server, with settings changed from the tests' defaults.
    pub async fn start_moto_with(name: &str, adjust: impl FnOnce(&mut Config)) -> TestRunner {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let key = domain::api_key::generate_platform_key(&app::ports::OsRandom);
        let (clients, resources) = moto::deployment(name).await;
        let services = runner::services(
            store_aws::sealed_stores(
                &clients,
                &resources,
                store_aws::SealingKeyAccess::CreateOnFirstUse,
            )
            .unwrap(),
            runner::settings(&config, &key),
        )
        .unwrap();
        let runner = Runner::start_with(&config, services, key).await.unwrap();
        TestRunner {
            runner,
            dir,
            http: reqwest::Client::new(),
            may_duplicate: true,
            aws: Some((clients, resources)),
        }
    }

    /// On moto: every item of the subscriptions table, as the SDK prints them, for a test
    /// that checks what is stored in clear. `None` on the embedded backend.
    pub async fn raw_subscriptions_table(&self) -> Option<String> {
        let (clients, resources) = self.aws.as_ref()?;
        let rows = clients
            .dynamodb
            .scan()
            .table_name(&resources.subscriptions_table)
            .send()
            .await
            .unwrap();
        Some(format!("{:?}", rows.items()))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.runner.addr)
    }

    /// A request with `key` (the platform key when `None`) and a JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        call(
            &self.http,
            &self.url(path),
            method,
            key.unwrap_or(&self.runner.platform_key),
            body,
        )
        .await
    }

    /// A new API key of `account`, made with the platform key.
    pub async fn account_key(&self, account: &str) -> String {
        let (status, key) = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/accounts/{account}/api-keys"),
                None,
                None,
            )
            .await;
        assert_eq!(status, 201, "{key}");
        key["key"].as_str().unwrap().to_string()
    }

    pub async fn create_webhook(&self, account: &str, body: Value) -> Value {
        let (status, created) = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/accounts/{account}/webhooks"),
                None,
                Some(body),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        created
    }

    /// `GET` one subscription with the platform key; anything but 200 fails the test.
    pub async fn get_webhook(&self, account: &str, id: &str) -> Value {
        let (status, body) = self
            .call(
                reqwest::Method::GET,
                &format!("/v1/accounts/{account}/webhooks/{id}"),
                None,
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn send_event(&self, event: Value) -> Value {
        let (status, accepted) = self
            .call(reqwest::Method::POST, "/v1/events", None, Some(event))
            .await;
        assert_eq!(status, 202, "{accepted}");
        accepted
    }

    /// The delivery id (and `webhook-id`) of a stored event at a subscription (see
    /// [`delivery_id_at`]).
    pub async fn delivery_id(&self, account: &str, event_id: &str, webhook_id: &str) -> String {
        delivery_id_at(
            &self.http,
            &self.url(""),
            &self.runner.platform_key,
            account,
            event_id,
            webhook_id,
        )
        .await
    }

    pub async fn delivery(&self, account: &str, id: &str) -> Value {
        let (status, d) = self
            .call(
                reqwest::Method::GET,
                &format!("/v1/accounts/{account}/deliveries/{id}"),
                None,
                None,
            )
            .await;
        assert_eq!(status, 200, "{d}");
        d
    }

    /// Polls a delivery until its status is `status`.
    pub async fn wait_for_status(
        &self,
        account: &str,
        id: &str,
        status: &str,
        timeout: Duration,
    ) -> Value {
        eventually(
            &format!("delivery {id} to become {status}"),
            timeout,
            || async {
                let d = self.poll_delivery(account, id).await;
                if d["status"] == status {
                    Ok(d)
                } else {
                    Err(d.to_string())
                }
            },
        )
        .await
    }

    /// Polls a delivery until its status is `status` and the log holds one attempt for each
    /// request carrying its `webhook-id` that `receiver` got at `path`; returns those
    /// requests and the delivery, read together. Once the counts agree, every request the
    /// endpoint saw is in the log with an attempt of its own, however many copies a queue
    /// that delivers at least once handed out.
    pub async fn wait_for_logged(
        &self,
        account: &str,
        id: &str,
        status: &str,
        receiver: &Receiver,
        path: &str,
        timeout: Duration,
    ) -> (Vec<Received>, Value) {
        let sent = || -> Vec<Received> {
            receiver
                .received(path)
                .into_iter()
                .filter(|r| r.header("webhook-id") == id)
                .collect()
        };
        eventually(
            &format!("delivery {id} to become {status} with an attempt per request to {path}"),
            timeout,
            || async {
                let before = sent();
                let d = self.poll_delivery(account, id).await;
                // Nothing arrived while the log was read: the two are one snapshot.
                let after = sent().len();
                let n = before.len();
                let logged = d["attempts"].as_array().map_or(0, Vec::len);
                if d["status"] == status
                    && after == n
                    && logged == n
                    && d["attempt_count"].as_u64() == Some(n as u64)
                {
                    Ok((before, d))
                } else {
                    Err(format!("{n} requests received (then {after}); logged: {d}"))
                }
            },
        )
        .await
    }

    /// One read of a delivery for a poll: a 404 (before fan-out has created it) is not an
    /// error yet.
    async fn poll_delivery(&self, account: &str, id: &str) -> Value {
        let (code, d) = self
            .call(
                reqwest::Method::GET,
                &format!("/v1/accounts/{account}/deliveries/{id}"),
                None,
                None,
            )
            .await;
        assert!(code == 200 || code == 404, "{d}");
        d
    }
}

/// Instantiates cases written once as `async fn case(t: TestRunner)` for one backend, as
/// `backend::case`, each a test given a runner from `start(case_name)`:
/// `on_backend!(moto, TestRunner::start_moto; case_a, case_b);`.
#[macro_export]
macro_rules! on_backend {
    ($backend:ident, $start:path; $($case:ident),* $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($start(stringify!($case)).await).await;
                }
            )*
        }
    };
}

/// Asserts an API error answer: its status and its `error.code`.
pub fn assert_error(status: u16, body: &Value, expected: u16, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
}

pub async fn call(
    http: &reqwest::Client,
    url: &str,
    method: reqwest::Method,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("the runner answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }))
    };
    (status, value)
}

/// A workspace binary next to the running test (target/<profile>/deps/<test> →
/// target/<profile>/<name>); test.sh builds them before the tests run.
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build --workspace --bins`, as test.sh does)",
        bin.display()
    );
    bin
}

/// A free port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A valid event of `event_type` for `account`, from the catalog's example.
pub fn event(event_type: &str, account: &str, id: Option<&str>) -> Value {
    let example = domain::catalog::find(event_type)
        .expect("a catalog type")
        .example
        .clone();
    let mut e = json!({ "type": event_type, "account_id": account, "data": example });
    if let Some(id) = id {
        e["id"] = json!(id);
    }
    e
}

/// The delivery id (and `webhook-id`) of a stored event at a subscription: it begins with
/// the event's receipt time, read from the API at `base` with `key`.
pub async fn delivery_id_at(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    account: &str,
    event_id: &str,
    webhook_id: &str,
) -> String {
    let mut tries = 0;
    loop {
        let (status, event) = call(
            http,
            &format!("{base}/v1/accounts/{account}/events/{event_id}"),
            reqwest::Method::GET,
            key,
            None,
        )
        .await;
        // A 503 says to try again.
        if status == 503 && tries < 10 {
            tries += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        assert_eq!(status, 200, "{event}");
        return delivery_id_of(&event, webhook_id);
    }
}

/// The delivery id of `event` (as the API shows it) at the subscription `webhook_id`.
fn delivery_id_of(event: &Value, webhook_id: &str) -> String {
    use domain::ids::{AccountId, DeliveryId, EventId, SubscriptionId};
    let received_at = domain::event::parse_rfc3339(event["received_at"].as_str().unwrap())
        .expect("an RFC 3339 receipt time");
    DeliveryId::of(
        &AccountId::parse(event["account_id"].as_str().unwrap()).expect("an account id"),
        &EventId::parse(event["id"].as_str().unwrap()).expect("an event id"),
        domain::time::Timestamp::from_millis(
            (received_at.unix_timestamp_nanos() / 1_000_000) as i64,
        ),
        &SubscriptionId::parse(webhook_id).expect("a webhook id"),
    )
    .into_string()
}
