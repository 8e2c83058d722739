//! A fast local receiver: answers 204 and records when each event arrived.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;

#[derive(Default)]
pub struct Arrivals {
    /// (path, event id) → arrival times.
    pub by_event: HashMap<(String, String), Vec<Instant>>,
    pub total: usize,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub arrivals: Arc<Mutex<Arrivals>>,
    sleep: Arc<Mutex<HashMap<String, Duration>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let arrivals = Arc::new(Mutex::new(Arrivals::default()));
        let sleep = Arc::new(Mutex::new(HashMap::new()));
        let app = Router::new()
            .route("/{path}", post(receive))
            .with_state((arrivals.clone(), sleep.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            addr,
            arrivals,
            sleep,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    /// Makes `path` sleep before answering.
    pub fn slow(&self, path: &str, d: Duration) {
        self.sleep.lock().unwrap().insert(path.to_string(), d);
    }

    pub fn total(&self) -> usize {
        self.arrivals.lock().unwrap().total
    }
}

type St = (Arc<Mutex<Arrivals>>, Arc<Mutex<HashMap<String, Duration>>>);

async fn receive(
    State((arrivals, sleep)): State<St>,
    Path(path): Path<String>,
    body: Bytes,
) -> StatusCode {
    let at = Instant::now();
    // The event id is the first field of every payload: `{"id":"…",`.
    let id = body
        .strip_prefix(b"{\"id\":\"")
        .and_then(|rest| rest.iter().position(|b| *b == b'"').map(|end| &rest[..end]))
        .map(|id| String::from_utf8_lossy(id).into_owned())
        .unwrap_or_default();
    {
        let mut a = arrivals.lock().unwrap();
        a.total += 1;
        a.by_event.entry((path.clone(), id)).or_default().push(at);
    }
    let pause = sleep.lock().unwrap().get(&path).copied();
    if let Some(d) = pause {
        tokio::time::sleep(d).await;
    }
    StatusCode::NO_CONTENT
}
