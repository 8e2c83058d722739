//! Faults: endpoints that misbehave (hang, drop the connection, redirect, stream for ever,
//! throttle, answer 410), destinations the SSRF guard must refuse in any spelling, and
//! credentials that must never reach the logs.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::ports::{HttpSender, OutboundRequest, SendError, SendResult};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, post};
use axum::serve::ListenerExt;
use axum::Router;
use bytes::Bytes;
use domain::delivery::MAX_LOGGED_RESPONSE_BYTES;
use domain::destination::DestinationPolicy;
use e2e::{call, delivery_id, event, eventually, Behavior, Receiver, TestRunner, WAIT};
use http_client::ReqwestSender;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Serves `app` on 127.0.0.1 (a free port), counting accepted TCP connections.
async fn serve(app: Router) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_on(listener, app)
}

fn serve_on(listener: TcpListener, app: Router) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let listener = listener.tap_io(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, connections)
}

/// A router answering every path and method with `status`, counting the requests.
fn counting_router(hits: Arc<AtomicUsize>, status: StatusCode) -> Router {
    Router::new().fallback(any(move || {
        let hits = hits.clone();
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            (status, "ok")
        }
    }))
}

fn sender(allowed: &[&str]) -> ReqwestSender {
    ReqwestSender::new(DestinationPolicy {
        allowed: allowed.iter().map(|n| n.parse().unwrap()).collect(),
        public: true,
    })
    .unwrap()
}

fn request(url: &str, timeout: Duration) -> OutboundRequest {
    OutboundRequest {
        url: url.to_string(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from_static(br#"{"hello":"world"}"#),
        timeout,
    }
}

/// Sends and measures how long the call took.
async fn timed_send(
    sender: &ReqwestSender,
    url: &str,
    timeout: Duration,
) -> (SendResult, Duration) {
    let started = Instant::now();
    let result = sender.send(request(url, timeout)).await;
    (result, started.elapsed())
}

// ---------------------------------------------------------------------------------------
// 1. The delivery client against misbehaving local servers
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_times_out_at_the_request_timeout() {
    let app = Router::new().route(
        "/slow",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "too late"
        }),
    );
    let (addr, _) = serve(app).await;
    let timeout = Duration::from_secs(1);
    let (result, elapsed) = timed_send(
        &sender(&["127.0.0.0/8"]),
        &format!("http://{addr}/slow"),
        timeout,
    )
    .await;
    assert!(
        matches!(result.error, Some(SendError::Timeout(_))),
        "expected a timeout, got {:?}",
        result.error
    );
    assert_eq!(result.status, None);
    assert!(result.body.is_none(), "{:?}", result.body);
    assert!(
        elapsed >= timeout - Duration::from_millis(100),
        "gave up before the timeout: {elapsed:?}"
    );
    // Not waiting for the 30 s hang: bounded well below it, with room for a loaded machine.
    assert!(
        elapsed < Duration::from_secs(10),
        "took {elapsed:?} for a {timeout:?} timeout"
    );
}

/// A raw TCP server that accepts, reads the start of the request, and drops the socket:
/// with `reset`, with SO_LINGER 0 so the peer gets an RST instead of a FIN.
async fn dropping_server(reset: bool) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            if reset {
                socket.set_zero_linger().unwrap();
            }
            drop(socket);
        }
    });
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_or_reset_without_an_answer_is_a_network_error() {
    for reset in [false, true] {
        let (addr, accepted) = dropping_server(reset).await;
        let (result, elapsed) = timed_send(
            &sender(&["127.0.0.0/8"]),
            &format!("http://{addr}/hook"),
            Duration::from_secs(30),
        )
        .await;
        let how = if reset { "reset" } else { "closed" };
        assert!(
            matches!(result.error, Some(SendError::Network(_))),
            "connection {how}: expected a network error, got {:?}",
            result.error
        );
        assert_eq!(result.status, None, "connection {how}");
        assert!(
            accepted.load(Ordering::SeqCst) >= 1,
            "connection {how}: the server never saw a connection"
        );
        // Not waited on like the 30 s timeout: bounded well below it, with room for a
        // loaded machine.
        assert!(
            elapsed < Duration::from_secs(10),
            "connection {how}: a dropped connection was waited on like a timeout ({elapsed:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_reported_and_never_followed() {
    let target_hits = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let location = format!("http://{addr}/target");
    let hits = target_hits.clone();
    let app = Router::new()
        .route(
            "/moved",
            post(move || {
                let location = location.clone();
                async move { (StatusCode::FOUND, [(header::LOCATION, location)], "moved") }
            }),
        )
        .route(
            "/target",
            any(move || {
                let hits = hits.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    "followed"
                }
            }),
        );
    serve_on(listener, app);

    let (result, _) = timed_send(
        &sender(&["127.0.0.0/8"]),
        &format!("http://{addr}/moved"),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(result.status, Some(302), "{:?}", result.error);
    assert_eq!(result.error, None);
    // Give a (wrongly) followed redirect time to land before asserting it did not.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        target_hits.load(Ordering::SeqCst),
        0,
        "the redirect target was requested"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_response_body_is_cut_and_the_connection_dropped() {
    // A raw server streaming a chunked body until the client goes away.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stopped = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let (stop_flag, written_count) = (stopped.clone(), written.clone());
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = socket.read(&mut buf).await;
        let head =
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
        if socket.write_all(head).await.is_ok() {
            let chunk_data = vec![b'a'; 64 * 1024];
            let mut chunk = format!("{:x}\r\n", chunk_data.len()).into_bytes();
            chunk.extend_from_slice(&chunk_data);
            chunk.extend_from_slice(b"\r\n");
            // Endless in practice: 1 GiB, far more than anything should read.
            while written_count.load(Ordering::SeqCst) < 1 << 30 {
                if socket.write_all(&chunk).await.is_err() {
                    break;
                }
                written_count.fetch_add(chunk_data.len(), Ordering::SeqCst);
            }
        }
        stop_flag.store(true, Ordering::SeqCst);
    });

    let timeout = Duration::from_secs(30);
    let (result, elapsed) = timed_send(
        &sender(&["127.0.0.0/8"]),
        &format!("http://{addr}/stream"),
        timeout,
    )
    .await;
    assert_eq!(result.status, Some(200), "{:?}", result.error);
    // No error: the read stopped at its cap, not at the timeout.
    assert_eq!(result.error, None, "after {elapsed:?}");
    assert!(elapsed < timeout, "took {elapsed:?}");
    let body = result.body.expect("the start of the body is kept");
    assert!(!body.is_empty());
    assert!(
        body.len() <= MAX_LOGGED_RESPONSE_BYTES,
        "kept {} bytes of the body",
        body.len()
    );
    assert!(
        body.bytes().all(|b| b == b'a'),
        "the kept body is not the start of the stream"
    );
    // The client hung up instead of draining the stream.
    eventually(
        "the server's endless write to fail (the client closed the connection)",
        WAIT,
        || async {
            if stopped.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(format!("{} bytes written", written.load(Ordering::SeqCst)))
            }
        },
    )
    .await;
    assert!(
        written.load(Ordering::SeqCst) < 1 << 30,
        "the client read the whole gigabyte"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_of_a_429_is_reported() {
    let app = Router::new().route(
        "/busy",
        post(|| async {
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "120")],
                "slow down",
            )
        }),
    );
    let (addr, _) = serve(app).await;
    let (result, _) = timed_send(
        &sender(&["127.0.0.0/8"]),
        &format!("http://{addr}/busy"),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(result.status, Some(429), "{:?}", result.error);
    assert_eq!(result.retry_after, Some(Duration::from_secs(120)));
    assert_eq!(result.body.as_deref(), Some("slow down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_in_any_spelling_is_refused_without_an_allow_list() {
    let hits = Arc::new(AtomicUsize::new(0));
    let (addr, connections) = serve(counting_router(hits.clone(), StatusCode::OK)).await;
    let port = addr.port();
    // The same port on ::1 too, when this host has IPv6, so a leak there is seen as well.
    let v6 = match TcpListener::bind(("::1", port)).await {
        Ok(l) => Some(serve_on(l, counting_router(hits.clone(), StatusCode::OK)).1),
        Err(_) => None,
    };

    let guarded = ReqwestSender::new(DestinationPolicy::default()).unwrap();
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://0x7f.0.0.1:{port}/"),
        format!("http://0177.0.0.1:{port}/"),
        format!("http://127.1:{port}/"),
        format!("http://0.0.0.0:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://[::]:{port}/"),
    ] {
        let (result, _) = timed_send(&guarded, &url, Duration::from_secs(5)).await;
        assert!(
            matches!(result.error, Some(SendError::Refused(_))),
            "{url}: expected a refusal, got status {:?}, error {:?}",
            result.status,
            result.error
        );
        assert_eq!(result.status, None, "{url}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a refused URL got through");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a refused URL opened a connection"
    );
    if let Some(v6) = &v6 {
        assert_eq!(v6.load(Ordering::SeqCst), 0, "a refused URL reached [::1]");
    }

    // Exempted, the same decimal spelling reaches the server: the refusals above were the
    // guard's doing, not an unreachable server.
    let allowed = sender(&["127.0.0.0/8"]);
    let (result, _) = timed_send(
        &allowed,
        &format!("http://2130706433:{port}/"),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(result.status, Some(200), "{:?}", result.error);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------
// 2. End to end through the embedded runner
// ---------------------------------------------------------------------------------------

fn status_codes(delivery: &Value) -> Vec<Value> {
    delivery["attempts"]
        .as_array()
        .expect("a delivery with its attempts")
        .iter()
        .map(|a| a["status_code"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_fails_the_delivery_and_disables_the_subscription() {
    let t = TestRunner::start().await;
    let r = Receiver::start().await;
    let sub = t
        .create_webhook(
            "acct_gone",
            json!({"url": r.url("gone", Behavior::Status(410)), "event_types": ["*"],
                   "retry_schedule": [1]}),
        )
        .await;
    let sub_id = sub["id"].as_str().unwrap();
    t.send_event(event("call.ended", "acct_gone", Some("evt_gone_1")))
        .await;
    let id = delivery_id("acct_gone", "evt_gone_1", sub_id);
    let d = t.wait_for_status("acct_gone", &id, "failed", WAIT).await;
    assert_eq!(d["attempt_count"], 1, "{d}");
    assert_eq!(status_codes(&d), [json!(410)]);

    // Disabled once the outcome is settled (just after it is logged).
    let disabled = eventually("the subscription to be disabled", WAIT, || async {
        let s = t.get_webhook("acct_gone", sub_id).await;
        if s["enabled"] == false {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    })
    .await;
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "no disabled_reason: {disabled}"
    );

    t.send_event(event("call.ended", "acct_gone", Some("evt_gone_2")))
        .await;
    let later = delivery_id("acct_gone", "evt_gone_2", sub_id);
    let d = t
        .wait_for_status("acct_gone", &later, "skipped", WAIT)
        .await;
    assert_eq!(d["attempt_count"], 0, "{d}");
    // The first delivery is not retried either.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        r.received("gone").len(),
        1,
        "the gone endpoint was called again"
    );
    t.runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_a_failed_attempt_and_is_retried() {
    let t = TestRunner::start().await;
    let r = Receiver::start().await;
    let sub = t
        .create_webhook(
            "acct_301",
            json!({"url": r.url("moved", Behavior::Sequence(vec![301])), "event_types": ["*"],
                   "retry_schedule": [1]}),
        )
        .await;
    t.send_event(event("call.ended", "acct_301", Some("evt_moved")))
        .await;
    let id = delivery_id("acct_301", "evt_moved", sub["id"].as_str().unwrap());
    let d = t.wait_for_status("acct_301", &id, "succeeded", WAIT).await;
    assert_eq!(d["attempt_count"], 2, "{d}");
    assert_eq!(status_codes(&d), [json!(301), json!(200)]);
    assert_eq!(r.received("moved").len(), 2);
    t.runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_of_a_429_is_honoured_within_the_schedule() {
    let t = TestRunner::start().await;
    let calls: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = calls.clone();
    let app = Router::new().route(
        "/limited",
        post(move || {
            let seen = seen.clone();
            async move {
                let n = {
                    let mut c = seen.lock().unwrap();
                    c.push(Instant::now());
                    c.len()
                };
                if n == 1 {
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [(header::RETRY_AFTER, "2")],
                        "slow down",
                    )
                        .into_response()
                } else {
                    (StatusCode::OK, "ok").into_response()
                }
            }
        }),
    );
    let (addr, _) = serve(app).await;
    let sub = t
        .create_webhook(
            "acct_429",
            json!({"url": format!("http://{addr}/limited"), "event_types": ["*"],
                   "retry_schedule": [1]}),
        )
        .await;
    t.send_event(event("call.ended", "acct_429", Some("evt_limited")))
        .await;
    let id = delivery_id("acct_429", "evt_limited", sub["id"].as_str().unwrap());
    let d = t.wait_for_status("acct_429", &id, "succeeded", WAIT).await;
    assert_eq!(status_codes(&d), [json!(429), json!(200)]);

    let at = calls.lock().unwrap().clone();
    assert_eq!(at.len(), 2);
    let gap = at[1] - at[0];
    // The step is 1 s (0.8–1.2 s with jitter); Retry-After: 2 lies within [1 s, 2 s], so
    // the retry waits the 2 s asked for: not less, and not some far longer wait (bounded
    // with room for a loaded machine).
    assert!(
        gap >= Duration::from_millis(1900),
        "Retry-After: 2 was not honoured: retried after {gap:?}"
    );
    assert!(gap < Duration::from_secs(15), "retried only after {gap:?}");
    t.runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_refused_at_delivery_time_fails_once_without_retry() {
    let t = TestRunner::start().await;
    let r = Receiver::start().await;
    let created = t
        .create_webhook(
            "acct_ssrf",
            json!({"url": r.url("x", Behavior::Status(200)), "event_types": ["*"],
                   "retry_schedule": [1]}),
        )
        .await;
    let sub_id = created["id"].as_str().unwrap();
    // Bypassing the API's validation, as a DNS change or an old record could.
    let mut sub = t
        .runner
        .services
        .subscriptions
        .get("acct_ssrf", sub_id)
        .await
        .unwrap()
        .expect("the subscription is stored");
    sub.url = "http://10.0.0.1/x".into();
    t.runner.services.subscriptions.put(&sub).await.unwrap();

    t.send_event(event("call.ended", "acct_ssrf", Some("evt_refused")))
        .await;
    let id = delivery_id("acct_ssrf", "evt_refused", sub_id);
    let d = t.wait_for_status("acct_ssrf", &id, "failed", WAIT).await;
    let mentions_refused = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.to_ascii_lowercase().contains("refused"))
    };
    assert!(mentions_refused(&d["last_error"]), "{d}");
    assert_eq!(d["attempt_count"], 1, "{d}");
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{d}");
    assert!(attempts[0]["status_code"].is_null(), "{d}");
    assert!(mentions_refused(&attempts[0]["error"]), "{d}");

    // Longer than the 1 s retry step: nothing more happens.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let d = t.delivery("acct_ssrf", &id).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(
        d["attempt_count"], 1,
        "a refused destination was retried: {d}"
    );
    assert!(t
        .runner
        .services
        .deliveries_queue
        .receive(10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    assert!(r.received("x").is_empty());
    t.runner.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 3. Secrets never reach the logs (the real binary, debug logging)
// ---------------------------------------------------------------------------------------

/// The runner process; killed when dropped, so a failing test leaves nothing behind.
struct Process {
    child: Option<Child>,
    base: String,
}

impl Process {
    fn start(data_dir: &Path, port: u16, log: &Path) -> Process {
        let out = std::fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(e2e::workspace_binary("webhooks"))
            .args([
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--addr",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--allow-http", "--allow-cidr", "127.0.0.0/8"])
            // A generated platform key, so the key file is written.
            .env_remove("WEBHOOKS_PLATFORM_KEY")
            .env_remove("WEBHOOKS_LOG_FORMAT")
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap();
        Process {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(unix)]
fn assert_owner_only(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "{} is accessible to group or others: mode {:o}",
        path.display(),
        mode & 0o777
    );
}

#[cfg(not(unix))]
fn assert_owner_only(_: &Path) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_signing_secrets_never_reach_the_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let log_path = tmp.path().join("runner.log");
    let mut p = Process::start(&data_dir, e2e::free_port(), &log_path);
    let http = reqwest::Client::new();
    e2e::wait_ready(&http, &p.base).await;
    let key = std::fs::read_to_string(data_dir.join("platform-key"))
        .expect("a generated platform key is kept in the data dir")
        .trim()
        .to_string();

    const API_KEY: &str = "sekret-apikey-123";
    const PASSWORD: &str = "sekret-basic-456";
    const TOKEN: &str = "sekret-bearer-789";
    let basic_header = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("svc-user:{PASSWORD}"))
    };

    let r = Receiver::start().await;
    let auths = [
        (
            "apikey",
            json!({"type": "api_key", "header": "x-api-key", "value": API_KEY}),
        ),
        (
            "basic",
            json!({"type": "basic", "username": "svc-user", "password": PASSWORD}),
        ),
        ("bearer", json!({"type": "bearer", "token": TOKEN})),
    ];
    let mut subs = Vec::new();
    for (path, auth) in auths {
        let (status, sub) = call(
            &http,
            &format!("{}/v1/accounts/acct_log/webhooks", p.base),
            reqwest::Method::POST,
            &key,
            Some(json!({"url": r.url(path, Behavior::Sequence(vec![500])),
                        "event_types": ["*"], "retry_schedule": [1], "auth": auth})),
        )
        .await;
        assert_eq!(status, 201, "{sub}");
        subs.push((path, sub));
    }
    let (status, accepted) = call(
        &http,
        &format!("{}/v1/events", p.base),
        reqwest::Method::POST,
        &key,
        Some(event("call.ended", "acct_log", Some("evt_log"))),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");

    for (path, sub) in &subs {
        let got = r.wait_for(path, 2, WAIT).await;
        // The credentials were really sent, so their absence from the log means something.
        let sent = match *path {
            "apikey" => got[0].header("x-api-key").to_string(),
            _ => got[0].header("authorization").to_string(),
        };
        let expected = match *path {
            "apikey" => API_KEY.to_string(),
            "basic" => format!("Basic {basic_header}"),
            _ => format!("Bearer {TOKEN}"),
        };
        assert_eq!(sent, expected, "{path}: credentials not sent");
        // And the success was logged before the process goes.
        let id = delivery_id("acct_log", "evt_log", sub["id"].as_str().unwrap());
        let d = eventually(
            &format!("{path}: the delivery to succeed"),
            WAIT,
            || async {
                let (code, d) = call(
                    &http,
                    &format!("{}/v1/accounts/acct_log/deliveries/{id}", p.base),
                    reqwest::Method::GET,
                    &key,
                    None,
                )
                .await;
                if code == 200 && d["status"] == "succeeded" {
                    Ok(d)
                } else {
                    Err(d.to_string())
                }
            },
        )
        .await;
        // The attempt log shows the credentials masked.
        let text = d.to_string();
        for secret in [API_KEY, PASSWORD, TOKEN, basic_header.as_str()] {
            assert!(
                !text.contains(secret),
                "{path}: the attempt log shows a credential: {d}"
            );
        }
    }
    p.kill();

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("delivery attempt failed"),
        "the log does not show the run (is RUST_LOG honoured?); {} bytes:\n{}",
        log.len(),
        log.chars().take(4000).collect::<String>()
    );
    let mut secrets: Vec<(String, String)> = vec![
        ("api key value".into(), API_KEY.into()),
        ("basic password".into(), PASSWORD.into()),
        ("basic authorization header".into(), basic_header.clone()),
        ("bearer token".into(), TOKEN.into()),
    ];
    for (path, sub) in &subs {
        let secret = sub["secret"].as_str().unwrap();
        assert!(secret.starts_with("whsec_") && secret.len() > 20, "{sub}");
        secrets.push((format!("{path} signing secret"), secret.into()));
        // The key part alone, in case it is logged without its prefix.
        secrets.push((
            format!("{path} signing key"),
            secret.trim_start_matches("whsec_").into(),
        ));
    }
    let leaks: Vec<String> = secrets
        .iter()
        .filter(|(_, s)| log.contains(s.as_str()))
        .map(|(what, s)| {
            let line = log.lines().find(|l| l.contains(s.as_str())).unwrap_or("");
            format!("{what} in: {}", line.chars().take(500).collect::<String>())
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets in the log:\n{}",
        leaks.join("\n")
    );

    assert_owner_only(&data_dir);
    assert_owner_only(&data_dir.join("webhooks.db"));
    assert_owner_only(&data_dir.join("platform-key"));
}
