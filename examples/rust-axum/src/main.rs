//! A generic verified webhook receiver: checks each request's Standard Webhooks signature
//! and timestamp, drops deliveries it has already taken (by `webhook-id`), answers 204 at
//! once, and a background task appends each event as one JSON line to a file.
//!
//! ```text
//! WEBHOOK_SECRET=whsec_... cargo run -p example-axum-receiver -- events.jsonl
//! ```
//!
//! Settings: `WEBHOOK_SECRET` (required), the file as first argument or `EVENTS_FILE`
//! (default `events.jsonl`), `HOST` (default 127.0.0.1) and `PORT` (default 4003).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;

/// How far `webhook-timestamp` may be from now, either way. An older request is refused,
/// so a captured request cannot be replayed later.
const TOLERANCE_SECS: u64 = 5 * 60;
/// Events accepted but not yet written. When full, requests are answered 503 and the
/// service retries them later.
const QUEUE_CAPACITY: usize = 1024;

struct AppState {
    /// The HMAC key: the base64-decoded part of the `whsec_` secret.
    key: Vec<u8>,
    /// `webhook-id`s taken: the id is the same on every retry of one delivery.
    seen: Mutex<HashSet<String>>,
    lines: mpsc::Sender<Value>,
}

/// A refused request: its status and a short reason for the body.
type Refusal = (StatusCode, &'static str);

async fn receive(
    State(receiver): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, Refusal> {
    let id = verify(&receiver.key, &headers, &body, unix_now())?;
    let event: Value = serde_json::from_slice(&body)
        .ok()
        .filter(Value::is_object)
        .ok_or((StatusCode::BAD_REQUEST, "the body is not a JSON object"))?;
    // Taken here, not when written, so that a retry arriving while the first copy is still
    // queued is dropped too. A repeat is answered 2xx, so that the service stops sending it.
    if !receiver.seen.lock().unwrap().insert(id.to_owned()) {
        return Ok(StatusCode::NO_CONTENT);
    }
    let line = json!({ "webhook_id": id, "received_at": unix_now(), "event": event });
    if receiver.lines.try_send(line).is_err() {
        // Queue full (or the writer stopped): give the id back and let the service retry.
        receiver.seen.lock().unwrap().remove(id);
        return Err((StatusCode::SERVICE_UNAVAILABLE, "busy, retry later"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Checks a request as Standard Webhooks says: `webhook-timestamp` within the tolerance,
/// and one of the space-separated `v1,<base64>` signatures in `webhook-signature` (several
/// during a secret rotation) the HMAC-SHA256 of `{id}.{timestamp}.{body}`. Returns the id.
fn verify<'h>(
    key: &[u8],
    headers: &'h HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<&'h str, Refusal> {
    let id = header(headers, "webhook-id")?;
    let timestamp = header(headers, "webhook-timestamp")?;
    let signatures = header(headers, "webhook-signature")?;
    let seconds: i64 = timestamp
        .parse()
        .map_err(|_| (StatusCode::BAD_REQUEST, "webhook-timestamp is not a number"))?;
    // abs_diff: no overflow, whatever number was sent.
    if now.abs_diff(seconds) > TOLERANCE_SECS {
        return Err((StatusCode::UNAUTHORIZED, "timestamp out of tolerance"));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let matches = signatures
        .split(' ')
        .filter_map(|signature| signature.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        // Constant time: how many leading bytes match must not show in the response time.
        .any(|tag| bool::from(tag.as_slice().ct_eq(expected.as_slice())));
    if matches {
        Ok(id)
    } else {
        Err((StatusCode::UNAUTHORIZED, "no valid signature"))
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, Refusal> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .ok_or((StatusCode::BAD_REQUEST, "missing webhook headers"))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Appends each line in the order taken, one write per line. Runs on a blocking thread
/// with std's file I/O: the workspace's tokio is built without its `fs` feature.
fn write_lines(mut file: File, mut lines: mpsc::Receiver<Value>) {
    while let Some(line) = lines.blocking_recv() {
        let mut text = line.to_string();
        text.push('\n');
        if let Err(e) = file.write_all(text.as_bytes()) {
            // The service already has its 2xx: log the line so it can be recovered.
            eprintln!("could not write {text}: {e}");
        }
    }
}

/// The `webhook_id`s already in the file, so that a restart keeps deduplicating.
fn ids_in(path: &Path) -> std::io::Result<HashSet<String>> {
    let mut ids = HashSet::new();
    for line in BufReader::new(File::open(path)?).lines() {
        let line: Value = serde_json::from_str(&line?).unwrap_or_default();
        if let Some(id) = line["webhook_id"].as_str() {
            ids.insert(id.to_owned());
        }
    }
    Ok(ids)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("WEBHOOK_SECRET")
        .map_err(|_| "set WEBHOOK_SECRET to the endpoint's whsec_ secret")?;
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|b64| STANDARD.decode(b64).ok())
        .ok_or("WEBHOOK_SECRET is not a whsec_ secret")?;
    let path = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .or_else(|| std::env::var_os("EVENTS_FILE"))
            .unwrap_or_else(|| "events.jsonl".into()),
    );
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "4003".into());

    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    let seen = ids_in(&path)?;
    let (sender, lines) = mpsc::channel(QUEUE_CAPACITY);
    let writer = tokio::task::spawn_blocking(move || write_lines(file, lines));

    let receiver = Arc::new(AppState {
        key,
        seen: Mutex::new(seen),
        lines: sender,
    });
    let app = Router::new()
        .route("/webhooks", post(receive))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(receiver);
    let listener = tokio::net::TcpListener::bind(format!("{host}:{port}")).await?;
    println!(
        "listening on http://{}/webhooks, appending to {}",
        listener.local_addr()?,
        path.display()
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    // The router, and the last sender with it, is gone: the writer drains the queue and ends.
    writer.await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
