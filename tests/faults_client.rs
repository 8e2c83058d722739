//! Faults at the delivery client: the HTTP sender against local servers that misbehave
//! (hang, close or reset the connection, redirect, stream a body for ever, throttle with
//! `Retry-After`), and the SSRF guard refusing loopback in any spelling.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use app::ports::{HttpSender, OutboundRequest, SendError, SendResult};
use axum::http::{header, StatusCode};
use axum::routing::{any, post};
use axum::Router;
use bytes::Bytes;
use domain::delivery::MAX_LOGGED_RESPONSE_BYTES;
use domain::destination::DestinationPolicy;
use e2e::server::{serve, serve_on};
use e2e::{eventually, WAIT};
use http_client::ReqwestSender;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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

/// Error analysis groups failures by kind: each kind is told apart by what failed, whatever
/// the words of the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_failure_is_told_apart() {
    let loopback = sender(&["127.0.0.0/8"]);

    // Nothing listens on a port that was just freed.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let (result, _) = timed_send(
        &loopback,
        &format!("http://{closed_addr}/hook"),
        Duration::from_secs(10),
    )
    .await;
    assert!(
        matches!(result.error, Some(SendError::ConnectionRefused(_))),
        "closed port: {:?}",
        result.error
    );

    // TLS spoken to a server that answers in plain HTTP: the handshake fails.
    let (plain, _) = serve(counting_router(Arc::default(), StatusCode::OK)).await;
    let (result, _) = timed_send(
        &loopback,
        &format!("https://{plain}/hook"),
        Duration::from_secs(10),
    )
    .await;
    assert!(
        matches!(result.error, Some(SendError::Tls(_))),
        "TLS to a plain server: {:?}",
        result.error
    );

    // A reserved name that never resolves (RFC 6761).
    let (result, _) = timed_send(
        &loopback,
        "https://no-such-host.invalid/hook",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        matches!(result.error, Some(SendError::Dns(_))),
        "unresolvable host: {:?}",
        result.error
    );

    for (error, key) in [
        (SendError::Timeout(String::new()), "timeout"),
        (SendError::Dns(String::new()), "dns"),
        (
            SendError::ConnectionRefused(String::new()),
            "connection_refused",
        ),
        (SendError::Tls(String::new()), "tls"),
        (SendError::Network(String::new()), "connection"),
        (SendError::Refused(String::new()), "blocked_address"),
    ] {
        assert_eq!(error.cause().key(), key);
    }
}
