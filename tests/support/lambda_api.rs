//! A Lambda Runtime API emulator: a function binary polls it for invocations exactly as it
//! polls the real one, so the real `bootstrap` binaries can be run and driven in tests.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use tokio::sync::{oneshot, Notify};

#[derive(Default)]
struct Inner {
    queue: VecDeque<(String, Value)>,
    waiting: HashMap<String, oneshot::Sender<Result<Value, Value>>>,
    first_poll: Option<Instant>,
    init_error: Option<Value>,
    next_id: u64,
}

#[derive(Clone, Default)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    arrived: Arc<Notify>,
}

/// One emulated Runtime API endpoint, serving one function process.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    shared: Shared,
}

impl RuntimeApi {
    pub async fn start() -> RuntimeApi {
        let shared = Shared::default();
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(respond),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        RuntimeApi { addr, shared }
    }

    /// Invokes the function with `payload`: `Ok` with its response, `Err` with its error.
    pub async fn invoke(&self, payload: Value, timeout: Duration) -> Result<Value, Value> {
        let (tx, rx) = oneshot::channel();
        {
            let mut inner = self.shared.inner.lock().unwrap();
            inner.next_id += 1;
            let id = format!("req-{}", inner.next_id);
            inner.waiting.insert(id.clone(), tx);
            inner.queue.push_back((id, payload));
        }
        self.shared.arrived.notify_waiters();
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            _ => panic!(
                "the function did not answer within {timeout:?} (init error: {:?})",
                self.init_error()
            ),
        }
    }

    /// When the function first asked for work: its init is done.
    pub fn first_poll(&self) -> Option<Instant> {
        self.shared.inner.lock().unwrap().first_poll
    }

    pub fn init_error(&self) -> Option<Value> {
        self.shared.inner.lock().unwrap().init_error.clone()
    }
}

async fn next(State(shared): State<Shared>) -> Response {
    loop {
        let arrived = shared.arrived.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        {
            let mut inner = shared.inner.lock().unwrap();
            inner.first_poll.get_or_insert_with(Instant::now);
            if let Some((id, payload)) = inner.queue.pop_front() {
                let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
                    + Duration::from_secs(300);
                let mut headers = HeaderMap::new();
                let h = |v: String| HeaderValue::from_str(&v).unwrap();
                headers.insert("lambda-runtime-aws-request-id", h(id));
                headers.insert(
                    "lambda-runtime-deadline-ms",
                    h(deadline.as_millis().to_string()),
                );
                headers.insert(
                    "lambda-runtime-invoked-function-arn",
                    h("arn:aws:lambda:us-east-1:000000000000:function:test".into()),
                );
                headers.insert(
                    "lambda-runtime-trace-id",
                    h("Root=1-00000000-000000000000000000000000".into()),
                );
                return (headers, Json(payload)).into_response();
            }
        }
        arrived.await;
    }
}

async fn respond(State(shared): State<Shared>, Path(id): Path<String>, body: String) -> StatusCode {
    complete(
        &shared,
        &id,
        Ok(serde_json::from_str(&body).unwrap_or(Value::String(body))),
    )
}

async fn fail(State(shared): State<Shared>, Path(id): Path<String>, body: String) -> StatusCode {
    complete(
        &shared,
        &id,
        Err(serde_json::from_str(&body).unwrap_or(Value::String(body))),
    )
}

fn complete(shared: &Shared, id: &str, result: Result<Value, Value>) -> StatusCode {
    if let Some(tx) = shared.inner.lock().unwrap().waiting.remove(id) {
        let _ = tx.send(result);
    }
    StatusCode::ACCEPTED
}

async fn init_error(State(shared): State<Shared>, body: String) -> StatusCode {
    shared.inner.lock().unwrap().init_error = Some(Value::String(body));
    StatusCode::ACCEPTED
}
