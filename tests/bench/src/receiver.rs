//! A fast local receiver: answers 204 and records when each event arrived. A path can be
//! told to fail the first attempt of every webhook (500), so each delivery takes one retry,
//! or to answer 200 with a body, as many receivers do. It counts the bytes each request
//! carried (request line, headers, body): what the service sends out to the internet.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

#[derive(Default)]
pub struct Arrivals {
    /// (path, event id) → arrival times.
    pub by_event: HashMap<(String, String), Vec<Instant>>,
    pub total: usize,
    /// Requests answered 2xx.
    pub succeeded: usize,
    /// Bytes of every request received: request line, headers and body.
    pub request_bytes: usize,
}

#[derive(Default)]
struct Behaviour {
    sleep: HashMap<String, Duration>,
    /// Paths whose first request of each `webhook-id` is answered 500.
    fail_first: HashSet<String>,
    /// (path, webhook-id) already failed once.
    failed: HashSet<(String, String)>,
    /// Paths that answer 200 with this body instead of 204.
    reply: HashMap<String, Bytes>,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub arrivals: Arc<Mutex<Arrivals>>,
    behaviour: Arc<Mutex<Behaviour>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let arrivals = Arc::new(Mutex::new(Arrivals::default()));
        let behaviour = Arc::new(Mutex::new(Behaviour::default()));
        let app = Router::new()
            .route("/{path}", post(receive))
            .with_state((arrivals.clone(), behaviour.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            addr,
            arrivals,
            behaviour,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    /// Makes `path` sleep before answering.
    pub fn slow(&self, path: &str, d: Duration) {
        self.behaviour
            .lock()
            .unwrap()
            .sleep
            .insert(path.to_string(), d);
    }

    /// Makes `path` answer 500 to the first request of each `webhook-id`, 204 after.
    pub fn fail_first(&self, path: &str) {
        self.behaviour
            .lock()
            .unwrap()
            .fail_first
            .insert(path.to_string());
    }

    /// Makes `path` answer 200 with `body` (once it succeeds).
    pub fn reply_with(&self, path: &str, body: Bytes) {
        self.behaviour
            .lock()
            .unwrap()
            .reply
            .insert(path.to_string(), body);
    }

    pub fn request_bytes(&self) -> usize {
        self.arrivals.lock().unwrap().request_bytes
    }

    pub fn total(&self) -> usize {
        self.arrivals.lock().unwrap().total
    }

    pub fn succeeded(&self) -> usize {
        self.arrivals.lock().unwrap().succeeded
    }
}

type St = (Arc<Mutex<Arrivals>>, Arc<Mutex<Behaviour>>);

async fn receive(
    State((arrivals, behaviour)): State<St>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Bytes) {
    let at = Instant::now();
    // "POST /path HTTP/1.1\r\n", each "name: value\r\n", the blank line, the body.
    let size = 6
        + path.len()
        + 1
        + 11
        + headers
            .iter()
            .map(|(n, v)| n.as_str().len() + 2 + v.len() + 2)
            .sum::<usize>()
        + 2
        + body.len();
    // The event id is the first field of every payload: `{"id":"…",`.
    let id = body
        .strip_prefix(b"{\"id\":\"")
        .and_then(|rest| rest.iter().position(|b| *b == b'"').map(|end| &rest[..end]))
        .map(|id| String::from_utf8_lossy(id).into_owned())
        .unwrap_or_default();
    let (pause, status, reply) = {
        let mut b = behaviour.lock().unwrap();
        let fail = b.fail_first.contains(&path) && {
            let webhook_id = headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            b.failed.insert((path.clone(), webhook_id))
        };
        let (status, reply) = match (fail, b.reply.get(&path)) {
            (true, _) => (StatusCode::INTERNAL_SERVER_ERROR, Bytes::new()),
            (false, Some(body)) => (StatusCode::OK, body.clone()),
            (false, None) => (StatusCode::NO_CONTENT, Bytes::new()),
        };
        (b.sleep.get(&path).copied(), status, reply)
    };
    {
        let mut a = arrivals.lock().unwrap();
        a.total += 1;
        a.succeeded += usize::from(status.is_success());
        a.request_bytes += size;
        a.by_event.entry((path.clone(), id)).or_default().push(at);
    }
    if let Some(d) = pause {
        tokio::time::sleep(d).await;
    }
    (status, reply)
}
