//! Scenario 4, cost: the pipeline on the AWS backend against a moto server, with a counting
//! proxy between the AWS SDK and moto. The calls each delivered webhook takes are counted by
//! kind and priced at AWS's public on-demand prices.
//!
//! The pipeline runs in this process the way the local runner runs it on AWS: the same
//! handlers, pollers standing in for Lambda's SQS event source mappings, and the API router
//! standing in for API Gateway and the ingest function. Each case gets its own queues and
//! tables, three subscriptions on one account and a local receiver.

use std::collections::{BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use serde_json::{json, Value};
use store_aws::{provision, Clients};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::aws_proxy::{AwsProxy, Ledger};
use crate::receiver::Receiver;

type Res = Result<String, String>;

const ACCOUNT: &str = "acct_cost";
const PATHS: [&str; 3] = ["a", "b", "c"];

// Public on-demand prices, us-east-1, in dollars.
/// Lambda, arm64: per GB-second, and per request.
const LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
/// SQS standard queue: per request, each 64 KiB chunk of a payload billed as one.
const SQS_REQUEST: f64 = 0.40 / 1e6;
/// DynamoDB on demand: per write request unit and per read request unit.
const DYNAMODB_WRU: f64 = 0.625 / 1e6;
const DYNAMODB_RRU: f64 = 0.125 / 1e6;
/// DynamoDB Standard table class storage, and point-in-time recovery (on in the template),
/// per GB-month.
const DYNAMODB_STORAGE: f64 = 0.25;
const DYNAMODB_PITR: f64 = 0.20;
/// API Gateway HTTP API, per request (first 300 million a month).
const API_GATEWAY_REQUEST: f64 = 1.00 / 1e6;
/// Data transfer out to the internet (the first 10 TB a month), per GB.
const DATA_OUT_GB: f64 = 0.09;
/// CloudWatch Logs ingestion (standard class), per GB.
const LOGS_INGESTED_GB: f64 = 0.50;

// Log bytes. Measured by `lambda-sizing` (BENCHMARKS.md): the deliver batch's EMF metrics
// line, about 710 bytes. Estimated from the line's JSON form: a failed attempt's WARN line,
// about 600. Lambda's own start and report lines are INFO system logs, which the
// template's `SystemLogLevel: WARN` keeps from being sent at all.
const LOG_BYTES_PER_DELIVER_BATCH: f64 = 710.0;
const LOG_BYTES_PER_FAILED_ATTEMPT: f64 = 600.0;
/// What API Gateway sends back for one ingest call (a 202 with its small JSON body and
/// headers), estimated.
const INGEST_ANSWER_BYTES: f64 = 300.0;
/// The realistic cases' steady rate of events, per second.
const STEADY_RATE: f64 = 20.0;
/// How often a producer that batches posts what it has at the steady rate: every second, so
/// 20 events a request (an event waits at most this long before it is posted).
const STEADY_BATCH_EVERY_SECS: f64 = 1.0;

/// Every function's memory (template.yaml, `Globals.Function.MemorySize`).
const LAMBDA_MEMORY_GB: f64 = 256.0 / 1024.0;
/// The template's `EventRetentionDays` default: how long events, deliveries and attempts
/// stay stored (DynamoDB TTL).
const RETENTION_DAYS: f64 = 30.0;
const DAYS_PER_MONTH: f64 = 365.25 / 12.0;
/// The template's `SweepSchedule` default, `rate(1 day)`: each sweep queries the pending
/// deliveries on the `by_status` index (eventually consistent: one read unit per 8 KiB
/// read), so a delivery left pending is read once a day while it is, and once a week a
/// sweep scans the whole table instead. The sweep before it scanned the whole table every
/// day.
const SWEEPS_PER_DAY: f64 = 1.0;
const SCANS_PER_DAY: f64 = 1.0 / 7.0;
const SCAN_BYTES_PER_RRU: f64 = 8192.0;

// The billed duration assumed per invocation: the handlers wait on AWS calls (a few ms
// each in-region) and, in deliver, on the customer's endpoint. Ingest: the key's lookup,
// the events' put, the subscriptions' read (it fans small accounts out itself) and one
// queue send.
const INGEST_MS: f64 = 15.0;
const INGEST_MS_PER_EVENT: f64 = 0.5;
const FANOUT_MS: f64 = 10.0;
const FANOUT_MS_PER_DELIVERY: f64 = 1.0;
/// A batch's requests go out at once, `SEND_CONCURRENCY` at a time: one endpoint round trip
/// for its messages' first deliveries (a pack's first goes alone), then one for each
/// `SEND_CONCURRENCY` of the rest of its packs.
const DELIVER_MS: f64 = 20.0;
const ENDPOINT_MS: f64 = 100.0;
/// `WEBHOOKS_SEND_CONCURRENCY` in the template.
const SEND_CONCURRENCY: f64 = 10.0;

/// A moto server: the one `WEBHOOKS_TEST_MOTO_ENDPOINT` names, or one started here.
pub(crate) struct Moto {
    pub(crate) endpoint: String,
    child: Option<Child>,
}

impl Moto {
    pub(crate) async fn get() -> Result<Moto, String> {
        if let Ok(endpoint) = std::env::var(e2e::moto::ENDPOINT_VAR) {
            let moto = Moto {
                endpoint,
                child: None,
            };
            return match moto.answers(Duration::from_secs(10)).await {
                true => Ok(moto),
                false => Err(format!(
                    "{} names {}, but no moto server answers there",
                    e2e::moto::ENDPOINT_VAR,
                    moto.endpoint
                )),
            };
        }
        // The test command's Python environment, from the workspace root or from here.
        let candidates = [
            std::path::PathBuf::from(".venv/bin/moto_server"),
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server"),
            std::path::PathBuf::from("moto_server"),
        ];
        let port = e2e::free_port();
        let child = candidates.iter().find_map(|bin| {
            Command::new(bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()
        });
        let Some(child) = child else {
            return Err(format!(
                "the cost scenario needs a moto server: set {} to one, or install moto \
                 into .venv (./test.sh does)",
                e2e::moto::ENDPOINT_VAR
            ));
        };
        let moto = Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            child: Some(child),
        };
        if !moto.answers(Duration::from_secs(30)).await {
            return Err("the moto server did not start within 30 s".into());
        }
        eprintln!("started a moto server on {}", moto.endpoint);
        Ok(moto)
    }

    /// Whether moto answers within `timeout`.
    async fn answers(&self, timeout: Duration) -> bool {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            let up = http
                .get(format!("{}/moto-api/", self.endpoint))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up || Instant::now() > deadline {
                return up;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Handler wall times by function, measured in this process (against moto).
#[derive(Clone, Default)]
struct Timings(Arc<Mutex<HashMap<&'static str, Vec<Duration>>>>);

impl Timings {
    fn record(&self, function: &'static str, d: Duration) {
        self.0.lock().unwrap().entry(function).or_default().push(d);
    }

    fn reset(&self) {
        self.0.lock().unwrap().clear();
    }

    fn median_ms(&self, function: &str) -> f64 {
        let mut all = self
            .0
            .lock()
            .unwrap()
            .get(function)
            .cloned()
            .unwrap_or_default();
        all.sort();
        all.get(all.len() / 2)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }
}

async fn timed(State(timings): State<Timings>, request: Request, next: Next) -> Response {
    let ingest =
        request.method() == axum::http::Method::POST && request.uri().path() == "/v1/events";
    let started = Instant::now();
    let response = next.run(request).await;
    if ingest {
        timings.record("ingest", started.elapsed());
    }
    response
}

/// The pipeline on AWS services: pollers like the event source mappings (batches of 10, as
/// in the template) and the API.
struct Pipeline {
    base: String,
    http: reqwest::Client,
    key: String,
    stop: watch::Sender<bool>,
    pollers: Vec<JoinHandle<()>>,
    server: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// Receives an idle poller makes a minute: one per 20 s long poll.
const IDLE_RECEIVES_PER_MINUTE: f64 = 3.0;

/// Concurrent long polls per queue, like an event source mapping at rest (five pollers).
const POLLERS: usize = 5;

/// Pollers on `queue` that time each invocation of `handle` under `label`.
fn timed_pollers<F, Fut>(
    (queue_name, queue): (&'static str, Arc<dyn app::ports::Queue>),
    label: &'static str,
    services: &app::Services,
    timings: &Timings,
    stop: watch::Receiver<bool>,
    handle: F,
) -> Vec<JoinHandle<()>>
where
    F: Fn(app::Services, aws_lambda_events::event::sqs::SqsEvent) -> Fut
        + Clone
        + Send
        + Sync
        + 'static,
    Fut: std::future::Future<Output = aws_lambda_events::event::sqs::SqsBatchResponse> + Send,
{
    let (s, t) = (services.clone(), timings.clone());
    ::runner::poller::spawn(
        queue_name,
        queue,
        ::runner::poller::PollerConfig {
            batch_size: 10,
            concurrency: POLLERS,
        },
        move |batch| {
            let (s, t, handle) = (s.clone(), t.clone(), handle.clone());
            async move {
                let started = Instant::now();
                let r = handle(s, batch).await;
                t.record(label, started.elapsed());
                r
            }
        },
        stop,
    )
}

impl Pipeline {
    async fn start(clients: &Clients, prefix: &str, timings: &Timings) -> Result<Pipeline, String> {
        let resources = provision::create_all(clients, prefix)
            .await
            .map_err(|e| format!("provisioning on moto: {e}"))?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut config = ::runner::Config::for_data_dir(dir.path());
        config.allow_http = true;
        config.allowed_cidrs = vec!["127.0.0.0/8".parse().unwrap()];
        let key = domain::api_key::generate_platform_key(&app::ports::OsRandom);
        let services = ::runner::services(
            store_aws::stores(clients, &resources),
            ::runner::settings(&config, &key),
        )
        .map_err(|e| e.to_string())?;
        let (stop, stop_rx) = watch::channel(false);
        let mut pollers = Vec::new();
        pollers.extend(timed_pollers(
            ("events", services.events_queue.clone()),
            "fanout",
            &services,
            timings,
            stop_rx.clone(),
            |s, batch| async move { app::handle_events(&s, batch).await },
        ));
        pollers.extend(timed_pollers(
            ("deliveries", services.deliveries_queue.clone()),
            "deliver",
            &services,
            timings,
            stop_rx,
            |s, batch| async move { app::handle_deliveries(&s, batch).await },
        ));
        let app = http_api::router(services)
            .layer(axum::middleware::from_fn_with_state(timings.clone(), timed));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Pipeline {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(16)
                .build()
                .map_err(|e| e.to_string())?,
            key,
            stop,
            pollers,
            server,
            _dir: dir,
        })
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        crate::runner::post_json(&self.http, &self.base, &self.key, path, body).await
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.pollers {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
        self.server.abort();
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Ingest {
    /// Single-event posts, as fast as 4 at a time go.
    Single,
    Batched,
    /// Single-event posts at `STEADY_RATE`, so batches fill as they do under a steady load.
    Steady,
    /// Events at `STEADY_RATE`, posted together every `STEADY_BATCH_EVERY_SECS`.
    SteadyBatched,
}

struct Case {
    ingest: Ingest,
    retry: bool,
    /// Subscriptions each event goes to.
    fanout: usize,
    /// 1.5 KB events, and receivers answering 200 with 300 bytes; else tiny events and 204.
    realistic: bool,
}

impl Case {
    const fn flattering(ingest: Ingest, retry: bool) -> Case {
        Case {
            ingest,
            retry,
            fanout: 3,
            realistic: false,
        }
    }

    const fn realistic(fanout: usize, retry: bool) -> Case {
        Case::realistic_posted(Ingest::Steady, fanout, retry)
    }

    const fn realistic_posted(ingest: Ingest, fanout: usize, retry: bool) -> Case {
        Case {
            ingest,
            retry,
            fanout,
            realistic: true,
        }
    }

    fn name(&self) -> String {
        let ingest = match self.ingest {
            Ingest::Single => "single-event ingest",
            Ingest::Batched => "100-event batches",
            Ingest::Steady => "realistic: 1.5 KB events at 20/s, 300 B answers",
            Ingest::SteadyBatched => {
                "realistic, posted 20 a request each second: 1.5 KB events at 20/s, 300 B answers"
            }
        };
        let retry = if self.retry { "one retry" } else { "first try" };
        match self.realistic {
            true => format!("{ingest}, fan-out {}, {retry}", self.fanout),
            false => format!("{ingest}, {retry}"),
        }
    }
}

/// What one case counted.
struct Measured {
    deliveries: usize,
    events: usize,
    ingest_calls: usize,
    attempts: usize,
    /// Bytes of every request the receivers got.
    sent_bytes: usize,
    ledger: Ledger,
    /// (table items, index entries) stored for the run's events and deliveries, bytes.
    stored: (usize, usize),
    /// The deliveries table's items (deliveries, attempts, stats), bytes: what a scan of
    /// it reads.
    scanned: usize,
    /// Its pending deliveries at the end, bytes: what the sweep's query reads.
    swept: usize,
    /// Median handler wall time per invocation, ms.
    wall_ms: [f64; 3],
    run_secs: f64,
}

fn event(id: &str, realistic: bool) -> Value {
    let mut e = e2e::event("call.ended", ACCOUNT, Some(id));
    e["data"]["call_id"] = json!(id);
    if realistic {
        e["data"]["summary"] = json!(call_summary(id));
    }
    e
}

/// A call's summary, as the platform's `call.ended` carries, making the event about 1.5 KB
/// in all: about 1 200 bytes of words drawn from a vocabulary by a generator seeded with
/// `seed`, so that it compresses about as well as prose does (a repeated sentence would
/// flatter anything that compresses).
pub fn call_summary(seed: &str) -> String {
    const WORDS: &[&str] = &[
        "the",
        "caller",
        "asked",
        "to",
        "move",
        "their",
        "appointment",
        "from",
        "Tuesday",
        "Thursday",
        "agent",
        "confirmed",
        "availability",
        "and",
        "offered",
        "a",
        "reminder",
        "by",
        "text",
        "customer",
        "mentioned",
        "billing",
        "question",
        "about",
        "last",
        "invoice",
        "which",
        "was",
        "escalated",
        "team",
        "follow",
        "up",
        "within",
        "two",
        "business",
        "days",
        "sentiment",
        "positive",
        "call",
        "transferred",
        "once",
        "hold",
        "time",
        "under",
        "minute",
        "account",
        "number",
        "verified",
        "address",
        "updated",
        "new",
        "plan",
        "discussed",
        "price",
        "increase",
        "promotion",
        "declined",
        "accepted",
        "order",
        "status",
        "shipped",
        "delayed",
        "refund",
        "requested",
        "approved",
        "pending",
        "technician",
        "visit",
        "scheduled",
        "morning",
        "afternoon",
        "window",
        "notes",
    ];
    let mut state = seed.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut text = String::with_capacity(1_250);
    while text.len() < 1_200 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        if !text.is_empty() {
            text.push(if (state >> 59) == 0 { '.' } else { ' ' });
            if text.ends_with('.') {
                text.push(' ');
            }
        }
        text.push_str(WORDS[(state >> 33) as usize % WORDS.len()]);
    }
    text
}

async fn run_case(moto: &str, case: &Case, events: usize, tag: usize) -> Result<Measured, String> {
    let mut random = [0u8; 4];
    domain::random::Random::fill(&app::ports::OsRandom, &mut random);
    let prefix = format!("cost{}-", u32::from_le_bytes(random));
    let proxy = AwsProxy::start(moto, &prefix).await?;
    let sdk = e2e::moto::config_at(&proxy.url()).await;
    let clients = Clients::new(&sdk);
    let timings = Timings::default();
    let pipeline = Pipeline::start(&clients, &prefix, &timings).await?;
    let receiver = Receiver::start().await;
    for path in &PATHS[..case.fanout] {
        if case.retry {
            receiver.fail_first(path);
        }
        if case.realistic {
            receiver.reply_with(
                path,
                axum::body::Bytes::from(format!(
                    "{{\"ok\":true,\"note\":\"{}\"}}",
                    "r".repeat(277)
                )),
            );
        }
        pipeline
            .post(
                &format!("/v1/accounts/{ACCOUNT}/webhooks"),
                &json!({"url": receiver.url(path), "event_types": ["*"], "retry_schedule": [1]}),
            )
            .await?;
    }
    // Provisioning and the subscriptions are set-up, not deliveries.
    proxy.reset();
    timings.reset();

    let started = Instant::now();
    let ids: Vec<String> = (0..events).map(|i| format!("evt_cost_{tag}_{i}")).collect();
    let bodies: Vec<Value> = match case.ingest {
        Ingest::Single | Ingest::Steady => ids.iter().map(|id| event(id, case.realistic)).collect(),
        Ingest::Batched | Ingest::SteadyBatched => ids
            .chunks(match case.ingest {
                Ingest::Batched => 100,
                _ => (STEADY_RATE * STEADY_BATCH_EVERY_SECS) as usize,
            })
            .map(|c| json!({"events": c.iter().map(|id| event(id, case.realistic)).collect::<Vec<_>>()}))
            .collect(),
    };
    let results: Vec<Result<Value, String>> = match case.ingest {
        Ingest::Steady | Ingest::SteadyBatched => {
            // Each request posted at its time, whatever the previous answers took.
            let pace = Duration::from_secs_f64(match case.ingest {
                Ingest::Steady => 1.0 / STEADY_RATE,
                _ => STEADY_BATCH_EVERY_SECS,
            });
            futures::stream::iter(bodies.iter().enumerate())
                .map(|(i, b)| {
                    let at = tokio::time::Instant::from_std(started) + pace * i as u32;
                    let pipeline = &pipeline;
                    async move {
                        tokio::time::sleep_until(at).await;
                        pipeline.post("/v1/events", b).await
                    }
                })
                .buffer_unordered(64)
                .collect()
                .await
        }
        _ => {
            futures::stream::iter(bodies.iter())
                .map(|b| pipeline.post("/v1/events", b))
                .buffer_unordered(4)
                .collect()
                .await
        }
    };
    results.into_iter().collect::<Result<Vec<_>, _>>()?;

    let deliveries = events * case.fanout;
    let deadline = Instant::now() + Duration::from_secs(600);
    while receiver.succeeded() < deliveries {
        if Instant::now() > deadline {
            return Err(format!(
                "{}: only {} of {deliveries} deliveries succeeded",
                case.name(),
                receiver.succeeded()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The last batches still log and acknowledge after the receiver has answered: wait until
    // nothing but idle long polls has gone through the proxy for a second.
    let quiet = Instant::now() + Duration::from_secs(30);
    while proxy.last_work().elapsed() < Duration::from_secs(1) && Instant::now() < quiet {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run_secs = started.elapsed().as_secs_f64();
    let ledger = proxy.ledger();
    let stored = proxy.stored_bytes(&["events", "deliveries"]);
    let scanned = proxy.item_bytes("deliveries", |_| true);
    let swept = proxy.item_bytes("deliveries", |item| {
        item.get("status_key")
            .and_then(|k| k.get("S"))
            .and_then(serde_json::Value::as_str)
            .is_some_and(|k| k.starts_with("pending#"))
    });
    let attempts = receiver.total();
    let sent_bytes = receiver.request_bytes();
    pipeline.stop().await;
    if !ledger
        .calls
        .keys()
        .any(|k| k.starts_with("SQS SendMessageBatch"))
        || !ledger.calls.keys().any(|k| k.starts_with("DynamoDB "))
    {
        return Err("the SDK's calls did not go through the counting proxy".into());
    }
    Ok(Measured {
        deliveries,
        events,
        ingest_calls: bodies.len(),
        attempts,
        sent_bytes,
        ledger,
        stored,
        scanned,
        swept,
        wall_ms: ["ingest", "fanout", "deliver"].map(|f| timings.median_ms(f)),
        run_secs,
    })
}

/// Dollars per million deliveries, by component.
struct Dollars {
    api_gateway: f64,
    lambda_requests: f64,
    lambda_duration: f64,
    sqs: f64,
    writes: f64,
    reads: f64,
    data_out: f64,
    logs: f64,
    storage: f64,
    sweeps: f64,
    /// What a daily scan of the deliveries table would cost instead (the sweep before
    /// storage v2 indexed the pending deliveries).
    scans: f64,
}

impl Dollars {
    fn of(m: &Measured) -> Dollars {
        let per_million = 1e6 / m.deliveries as f64;
        let batches = |queue: &str| m.ledger.batches.get(queue).map_or(0, |b| b.0) as f64;
        let (fanouts, delivers) = (batches("events"), batches("deliveries"));
        let received = m.ledger.batches.get("deliveries").map_or(0, |b| b.1) as f64;
        let round_trips = delivers + (m.attempts as f64 - received).max(0.0) / SEND_CONCURRENCY;
        let ingest_calls = m.ingest_calls as f64;
        let billed_ms = ingest_calls * INGEST_MS
            + m.events as f64 * INGEST_MS_PER_EVENT
            + fanouts * FANOUT_MS
            + m.deliveries as f64 * FANOUT_MS_PER_DELIVERY
            + delivers * DELIVER_MS
            + round_trips * ENDPOINT_MS;
        let months = RETENTION_DAYS / DAYS_PER_MONTH;
        let gib = |bytes: usize| bytes as f64 / (1u64 << 30) as f64;
        let (table, index) = m.stored;
        let gb = |bytes: f64| bytes / 1e9;
        let out_bytes = m.sent_bytes as f64 + ingest_calls * INGEST_ANSWER_BYTES;
        let failed_attempts = m.attempts.saturating_sub(m.deliveries) as f64;
        let log_bytes =
            delivers * LOG_BYTES_PER_DELIVER_BATCH + failed_attempts * LOG_BYTES_PER_FAILED_ATTEMPT;
        Dollars {
            api_gateway: ingest_calls * API_GATEWAY_REQUEST * per_million,
            lambda_requests: (ingest_calls + fanouts + delivers) * LAMBDA_REQUEST * per_million,
            lambda_duration: billed_ms / 1000.0 * LAMBDA_MEMORY_GB * LAMBDA_GB_SECOND * per_million,
            sqs: m.ledger.sqs_total() as f64 * SQS_REQUEST * per_million,
            writes: m.ledger.wru_total() * DYNAMODB_WRU * per_million,
            reads: m.ledger.rru_total() * DYNAMODB_RRU * per_million,
            data_out: gb(out_bytes) * DATA_OUT_GB * per_million,
            logs: gb(log_bytes) * LOGS_INGESTED_GB * per_million,
            storage: (gib(table + index) * DYNAMODB_STORAGE + gib(table) * DYNAMODB_PITR)
                * months
                * per_million,
            sweeps: (m.swept as f64 * SWEEPS_PER_DAY + m.scanned as f64 * SCANS_PER_DAY)
                / SCAN_BYTES_PER_RRU
                * RETENTION_DAYS
                * DYNAMODB_RRU
                * per_million,
            scans: m.scanned as f64 / SCAN_BYTES_PER_RRU
                * SWEEPS_PER_DAY
                * RETENTION_DAYS
                * DYNAMODB_RRU
                * per_million,
        }
    }

    fn requests_and_compute(&self) -> f64 {
        self.api_gateway
            + self.lambda_requests
            + self.lambda_duration
            + self.sqs
            + self.writes
            + self.reads
            + self.data_out
            + self.logs
    }
}

fn row(label: &str, values: impl IntoIterator<Item = String>) -> String {
    format!(
        "| {label} | {} |",
        values.into_iter().collect::<Vec<_>>().join(" | ")
    )
}

fn dollars(v: f64) -> String {
    format!("${v:.3}")
}

pub async fn cost(quick: bool) -> Res {
    let events = if quick { 20 } else { 300 };
    let moto = Moto::get().await?;
    let cases = if quick {
        // A retry case takes about 90 s whatever the event count (the endpoints are cold:
        // their first attempts fail, so later ones wait behind the probes): one is enough
        // to keep the harness working.
        vec![
            Case::flattering(Ingest::Single, false),
            Case::realistic(1, false),
            Case::flattering(Ingest::Single, true),
            Case::realistic_posted(Ingest::SteadyBatched, 3, false),
        ]
    } else {
        vec![
            Case::flattering(Ingest::Single, false),
            Case::flattering(Ingest::Batched, false),
            Case::flattering(Ingest::Single, true),
            Case::flattering(Ingest::Batched, true),
            Case::realistic(3, false),
            Case::realistic(1, false),
            Case::realistic(3, true),
            Case::realistic_posted(Ingest::SteadyBatched, 3, false),
            Case::realistic_posted(Ingest::SteadyBatched, 1, false),
        ]
    };
    let mut measured = Vec::new();
    for (tag, case) in cases.iter().enumerate() {
        let m = run_case(&moto.endpoint, case, events, tag).await?;
        eprintln!(
            "{}: {} deliveries, {} attempts, {:.1} s, {} SQS requests, {:.0} WRU, {:.1} RRU",
            case.name(),
            m.deliveries,
            m.attempts,
            m.run_secs,
            m.ledger.sqs_total(),
            m.ledger.wru_total(),
            m.ledger.rru_total()
        );
        measured.push(m);
    }
    drop(moto);
    Ok(report(&cases, &measured, events))
}

fn report(cases: &[Case], measured: &[Measured], events: usize) -> String {
    let header = |first: &str| {
        format!(
            "| {first} | {} |\n| --- |{}",
            cases.iter().map(Case::name).collect::<Vec<_>>().join(" | "),
            " ---: |".repeat(cases.len())
        )
    };
    let per = |m: &Measured, v: f64| v / m.deliveries as f64;

    // Calls per delivered webhook, by operation and resource.
    let labels: BTreeSet<&String> = measured
        .iter()
        .flat_map(|m| m.ledger.calls.keys())
        .collect();
    let mut calls = vec![header("calls per delivered webhook")];
    for label in &labels {
        calls.push(row(
            label,
            measured.iter().map(|m| {
                format!(
                    "{:.3}",
                    per(m, *m.ledger.calls.get(*label).unwrap_or(&0) as f64)
                )
            }),
        ));
    }
    let batch = |m: &Measured, queue: &str| {
        let (n, messages) = m.ledger.batches.get(queue).copied().unwrap_or((0, 0));
        (n as f64, messages as f64 / n.max(1) as f64)
    };
    calls.push(row(
        "attempts at the receiver",
        measured
            .iter()
            .map(|m| format!("{:.3}", per(m, m.attempts as f64))),
    ));
    calls.push(row(
        "**SQS billed requests** (64 KiB chunks)",
        measured
            .iter()
            .map(|m| format!("**{:.3}**", per(m, m.ledger.sqs_total() as f64))),
    ));
    calls.push(row(
        "**DynamoDB write request units** (of them for indexes)",
        measured.iter().map(|m| {
            format!(
                "**{:.2}** ({:.2})",
                per(m, m.ledger.wru_total()),
                per(m, m.ledger.gsi_wru)
            )
        }),
    ));
    calls.push(row(
        "**DynamoDB read request units**",
        measured
            .iter()
            .map(|m| format!("**{:.3}**", per(m, m.ledger.rru_total()))),
    ));
    calls.push(row(
        "Lambda invocations: ingest / fanout / deliver",
        measured.iter().map(|m| {
            format!(
                "{:.3} / {:.3} / {:.3}",
                per(m, m.ingest_calls as f64),
                per(m, batch(m, "events").0),
                per(m, batch(m, "deliveries").0)
            )
        }),
    ));
    calls.push(row(
        "API Gateway requests",
        measured
            .iter()
            .map(|m| format!("{:.3}", per(m, m.ingest_calls as f64))),
    ));
    calls.push(row(
        "messages per batch: events / deliveries queue",
        measured.iter().map(|m| {
            format!(
                "{:.1} / {:.1}",
                batch(m, "events").1,
                batch(m, "deliveries").1
            )
        }),
    ));
    calls.push(row(
        "stored per delivery for 30 days: table / index bytes",
        measured.iter().map(|m| {
            format!(
                "{:.0} / {:.0}",
                per(m, m.stored.0 as f64),
                per(m, m.stored.1 as f64)
            )
        }),
    ));

    // Capacity units by call: where the DynamoDB money goes.
    let mut units = vec![header("request units per delivered webhook")];
    let unit_labels: BTreeSet<&String> = measured
        .iter()
        .flat_map(|m| m.ledger.wru.keys().chain(m.ledger.rru.keys()))
        .collect();
    for label in unit_labels {
        units.push(row(
            label,
            measured.iter().map(|m| {
                let (w, r) = (
                    m.ledger.wru.get(label).copied().unwrap_or(0.0),
                    m.ledger.rru.get(label).copied().unwrap_or(0.0),
                );
                match (w > 0.0, r > 0.0) {
                    (true, _) => format!("{:.2} WRU", per(m, w)),
                    (false, true) => format!("{:.3} RRU", per(m, r)),
                    _ => String::new(),
                }
            }),
        ));
    }

    let d: Vec<Dollars> = measured.iter().map(Dollars::of).collect();
    let column = |f: fn(&Dollars) -> f64| d.iter().map(move |x| dollars(f(x))).collect::<Vec<_>>();
    let price_header = format!(
        "| $ per million delivered webhooks | price used (us-east-1, on demand) | {} |\n| --- | --- |{}",
        cases.iter().map(Case::name).collect::<Vec<_>>().join(" | "),
        " ---: |".repeat(cases.len())
    );
    let priced = |label: &str, price: &str, f: fn(&Dollars) -> f64| {
        row(&format!("{label} | {price}"), column(f))
    };
    let lambda_assumption = format!(
        "${LAMBDA_GB_SECOND} per GB-s, arm64, {:.0} MB; billed time assumed: ingest {INGEST_MS:.0} ms + \
         {INGEST_MS_PER_EVENT} ms per event, fanout {FANOUT_MS:.0} ms + {FANOUT_MS_PER_DELIVERY:.0} ms \
         per delivery, deliver {DELIVER_MS:.0} ms + a {ENDPOINT_MS:.0} ms endpoint round trip per batch and per {SEND_CONCURRENCY:.0} deliveries of its packs beyond their first",
        LAMBDA_MEMORY_GB * 1024.0
    );
    let money = [
        price_header,
        priced(
            "API Gateway (HTTP API)",
            "$1.00 per million requests",
            |d| d.api_gateway,
        ),
        priced(
            "Lambda requests",
            "$0.20 per million",
            |d| d.lambda_requests,
        ),
        priced("Lambda duration", &lambda_assumption, |d| d.lambda_duration),
        priced(
            "SQS (standard)",
            "$0.40 per million requests, per 64 KiB chunk",
            |d| d.sqs,
        ),
        priced(
            "DynamoDB writes",
            "$0.625 per million write request units",
            |d| d.writes,
        ),
        priced(
            "DynamoDB reads",
            "$0.125 per million read request units",
            |d| d.reads,
        ),
        priced(
            "Data transfer out",
            "$0.09 per GB: every request to the endpoints as received (request line, headers, body), and ~300 B per ingest answer",
            |d| d.data_out,
        ),
        priced(
            "CloudWatch Logs",
            "$0.50 per GB ingested: deliver's EMF line (~710 B per batch), ~600 B per failed attempt (Lambda's own lines are not sent at `SystemLogLevel: WARN`)",
            |d| d.logs,
        ),
        row(
            "**total, requests and compute** | target ≤ $1 first try",
            d.iter()
                .map(|x| format!("**{}**", dollars(x.requests_and_compute()))),
        ),
        priced(
            "DynamoDB storage for the 30-day retention",
            "$0.25 per GB-month (tables and indexes) + $0.20 per GB-month point-in-time recovery (tables)",
            |d| d.storage,
        ),
        priced(
            "Sweep",
            "daily (`SweepSchedule`): a query of the deliveries still pending (here, those retrying when the run ended), and a whole scan once a week; 1 RRU per 8 KiB",
            |d| d.sweeps,
        ),
        priced(
            "(not paid: a daily scan of the deliveries table instead, as before storage v2)",
            "every item read once a day for the 30 days it is kept, 1 RRU per 8 KiB",
            |d| d.scans,
        ),
        row(
            "**total with storage and sweeps** |",
            d.iter().map(|x| {
                format!(
                    "**{}**",
                    dollars(x.requests_and_compute() + x.storage + x.sweeps)
                )
            }),
        ),
    ];

    let empty: u64 = measured.iter().map(|m| m.ledger.empty_receives).sum();
    let secs: f64 = measured.iter().map(|m| m.run_secs).sum();
    let unknown: u64 = measured.iter().map(|m| m.ledger.unknown).sum();
    let walls: Vec<String> = cases
        .iter()
        .zip(measured)
        .map(|(c, m)| {
            format!(
                "{}: {:.1} / {:.1} / {:.1}",
                c.name(),
                m.wall_ms[0],
                m.wall_ms[1],
                m.wall_ms[2]
            )
        })
        .collect();
    let idle_month = IDLE_RECEIVES_PER_MINUTE * 60.0 * 24.0 * DAYS_PER_MONTH * SQS_REQUEST;
    // The case the "where it goes" note is about: the realistic batched fan-out 3 first
    // try, else the flattering batched first try, if run.
    let focus = cases
        .iter()
        .position(|c| c.ingest == Ingest::SteadyBatched && c.fanout == 3 && !c.retry)
        .or_else(|| {
            cases
                .iter()
                .position(|c| c.ingest == Ingest::Batched && !c.retry)
        })
        .unwrap_or(0);
    let mut notes = vec![
        format!(
            "Idle is left out: receives that came back empty ({empty} in {secs:.0} s of runs here) are in no \
             figure above. An idle long-polling poller makes {IDLE_RECEIVES_PER_MINUTE:.0} receives a minute \
             (20 s waits), ${idle_month:.3} a month; Lambda's event source mappings poll the same way and \
             are billed for it whatever the traffic: with {POLLERS} pollers on each of the 2 queues, \
             ${:.2} a month, not a cost per delivery.",
            idle_month * (2 * POLLERS) as f64
        ),
        format!(
            "Handler wall time per invocation here, median, ingest / fanout / deliver in ms (moto on this \
             machine, not in-region AWS; for comparison with the assumed billed times): {}.",
            walls.join("; ")
        ),
        format!(
            "Where it goes, {}: DynamoDB writes are {:.0} % of the total for requests and compute; \
             of their {:.2} write units per delivery, {:.2} are global secondary index writes.",
            cases[focus].name(),
            100.0 * d[focus].writes / d[focus].requests_and_compute().max(f64::MIN_POSITIVE),
            per(&measured[focus], measured[focus].ledger.wru_total()),
            per(&measured[focus], measured[focus].ledger.gsi_wru)
        ),
        "Not counted: cold-start init time, the management API, data transfer inside the \
         region (free), and the free tiers."
            .to_string(),
    ];
    let extra: usize = cases
        .iter()
        .zip(measured)
        .map(|(c, m)| {
            m.attempts
                .saturating_sub(m.deliveries * (1 + usize::from(c.retry)))
        })
        .sum();
    if extra > 0 {
        notes.push(format!(
            "{extra} attempts beyond one per delivery (two with a retry) were duplicates; they are \
             counted in every figure."
        ));
    }
    let failures: u64 = measured
        .iter()
        .flat_map(|m| m.ledger.server_errors.values())
        .sum();
    if failures > 0 {
        notes.push(format!(
            "{failures} calls failed in moto (server errors, retried by the SDK); the retries are counted."
        ));
    }
    if unknown > 0 {
        notes.push(format!(
            "{unknown} calls through the proxy were neither SQS nor DynamoDB JSON operations."
        ));
    }

    format!(
        "### Cost: AWS calls per delivered webhook, counted against moto, and $ per million deliveries\n\n\
         {events} events per case to 3 subscriptions (1 in the fan-out 1 case) on one account; each case on \
         fresh queues and tables, with the calls of provisioning and set-up left out. The flattering cases \
         (the first four) send tiny events as fast as they go, to receivers answering 204; the realistic \
         ones send 1.5 KB events at a steady 20 a second, one a request or (\"posted 20 a request\") \
         what has come each second, to receivers answering 200 with a 300-byte JSON body. In the one-retry cases the receiver answers 500 to the first attempt of each \
         `webhook-id` (retry schedule [1] s). Single-event ingest posts each event on its own, batched \
         ingest 100 at a time. Pollers: {POLLERS} per queue, \
         batches of 10, as the template's event source mappings; one invocation per batch that held \
         messages. Moto's queues are not safe under concurrent calls, so the counting proxy serves one \
         call per queue at a time: batches fill as they would under steady load, and batch-bound \
         calls (receives, deletes, invocations, subscription reads) scale with 1 / batch fill. DynamoDB units come from item sizes (1 WRU per KiB per item written, on the larger of \
         before and after, plus every global secondary index write; 1 RRU per 4 KiB read, half when \
         eventually consistent).\n\n{}\n\n{}\n\n{}\n\n{}",
        calls.join("\n"),
        units.join("\n"),
        money.join("\n"),
        notes.join("\n\n")
    )
}
