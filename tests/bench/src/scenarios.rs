//! The scenarios. Each returns a Markdown section.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use crate::receiver::Receiver;
use crate::report::{ms, percentile, spread};
use crate::runner::{release_binary, Runner};

type Res = Result<String, String>;

fn event(id: &str) -> Value {
    let mut e = e2e::event("call.ended", "acct_bench", Some(id));
    e["data"]["call_id"] = json!(id);
    e
}

/// The realistic event of the cost scenario: about 1.5 KB, with a call's summary.
fn realistic_event(id: &str) -> Value {
    let mut e = event(id);
    e["data"]["summary"] = json!(crate::cost::call_summary(id));
    e
}

/// Posts `events` in batches of 100, four requests at a time.
async fn ingest_all(runner: &Runner, ids: &[String]) -> Result<(), String> {
    ingest_all_of(runner, ids, event).await
}

async fn ingest_all_of(
    runner: &Runner,
    ids: &[String],
    event: fn(&str) -> Value,
) -> Result<(), String> {
    let batches: Vec<Value> = ids
        .chunks(100)
        .map(|c| json!({"events": c.iter().map(|id| event(id)).collect::<Vec<_>>()}))
        .collect();
    let results: Vec<Result<Value, String>> = futures::stream::iter(batches.iter())
        .map(|b| runner.post("/v1/events", b))
        .buffer_unordered(4)
        .collect()
        .await;
    results
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map(|_| ())
}

async fn wait_for(receiver: &Receiver, n: usize, timeout: Duration) -> Result<Instant, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if receiver.total() >= n {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {n} deliveries arrived",
                receiver.total()
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn subscribed_runner(receiver: &Receiver, paths: &[&str]) -> Result<Runner, String> {
    let runner = Runner::start().await?;
    for p in paths {
        runner
            .subscribe("acct_bench", &receiver.url(p), json!({}))
            .await?;
    }
    Ok(runner)
}

/// The rate at which the same HTTP client posts the same bodies to the same receiver with
/// the delivery concurrency (8 batches of 10), each body `event`: this machine's ceiling.
async fn raw_rate_of(receiver: &Receiver, n: usize, event: &Value) -> f64 {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let body = Arc::new(serde_json::to_string(event).unwrap());
    let url = receiver.url("raw");
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|_| {
            let (client, body, url) = (client.clone(), body.clone(), url.clone());
            async move {
                let _ = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await;
            }
        })
        .buffer_unordered(80)
        .collect::<Vec<_>>()
        .await;
    n as f64 / started.elapsed().as_secs_f64()
}

pub async fn throughput(quick: bool) -> Res {
    let (events, runs) = if quick { (200, 1) } else { (20_000, 3) };
    let mut tables = Vec::new();
    for realistic in [false, true] {
        let mut rates = Vec::new();
        let mut ceilings = Vec::new();
        for run in 0..runs {
            let receiver = Receiver::start().await;
            let paths = ["a", "b", "c"];
            if realistic {
                // Receivers answer 200 with 300 bytes, as in the cost scenario.
                for p in paths.into_iter().chain(["raw"]) {
                    receiver.reply_with(
                        p,
                        axum::body::Bytes::from(format!(
                            "{{\"ok\":true,\"note\":\"{}\"}}",
                            "r".repeat(277)
                        )),
                    );
                }
            }
            let runner = subscribed_runner(&receiver, &paths).await?;
            let ids: Vec<String> = (0..events).map(|i| format!("evt_{run}_{i}")).collect();
            let started = Instant::now();
            ingest_all_of(
                &runner,
                &ids,
                if realistic { realistic_event } else { event },
            )
            .await?;
            let ingested = started.elapsed();
            let done = wait_for(&receiver, events * 3, Duration::from_secs(600)).await?;
            let rate = (events * 3) as f64 / (done - started).as_secs_f64();
            eprintln!(
                "run {run}{}: {rate:.0} deliveries/s (ingest took {ingested:?})",
                if realistic { " (realistic)" } else { "" }
            );
            rates.push(rate);
            drop(runner);
            let body = if realistic {
                realistic_event("evt_raw")
            } else {
                event("evt_raw")
            };
            ceilings.push(raw_rate_of(&receiver, events * 3, &body).await);
        }
        let (rmin, rmed, rmax) = spread(&mut rates);
        let (cmin, cmed, cmax) = spread(&mut ceilings);
        let title = if realistic {
            format!(
                "### Throughput, realistic event: {events} events of 1.5 KB (a call's summary) × 3 \
                 subscriptions, embedded default, receiver answers 200 with 300 bytes"
            )
        } else {
            format!(
                "### Throughput: {events} events × 3 subscriptions, embedded default, receiver answers 204"
            )
        };
        tables.push(format!(
            "{title}\n\n\
             | measure | min | median | max |\n| --- | --- | --- | --- |\n\
             | deliveries/s, ingest accepted → all received | {rmin:.0} | {rmed:.0} | {rmax:.0} |\n\
             | same client, same bodies, straight to the receiver (ceiling) | {cmin:.0} | {cmed:.0} | {cmax:.0} |\n\
             | ratio (median) | | {:.2} | |\n\n({runs} runs)",
            rmed / cmed
        ));
    }
    Ok(tables.join("\n\n"))
}

/// Latencies of one offered load: from the ingest request being sent, and from its 202
/// being received, to arrival at the receiver.
pub struct Latencies {
    pub from_sent: Vec<Duration>,
    pub from_accepted: Vec<Duration>,
}

/// Offers `rate` events/s for `secs` to subscriptions at `paths`; measures arrivals at the
/// `measured` paths.
async fn offered_load(
    runner: &Runner,
    receiver: &Receiver,
    rate: u32,
    secs: u32,
    measured: &[&str],
) -> Result<Latencies, String> {
    offered_load_named(runner, receiver, "evt_lat", rate, secs, measured).await
}

/// The same, with event ids starting `prefix`, for several loads on one runner.
async fn offered_load_named(
    runner: &Runner,
    receiver: &Receiver,
    prefix: &str,
    rate: u32,
    secs: u32,
    measured: &[&str],
) -> Result<Latencies, String> {
    let total = (rate * secs) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut accepted = Vec::with_capacity(total);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in 0..total {
        tick.tick().await;
        let id = format!("{prefix}_{i}");
        let body = event(&id);
        pending.push(async move {
            let sent = Instant::now();
            let r = runner.post("/v1/events", &body).await;
            (id, sent, Instant::now(), r)
        });
        while let Some(Some((id, sent, at, r))) = futures::FutureExt::now_or_never(pending.next()) {
            r?;
            accepted.push((id, sent, at));
        }
    }
    while let Some((id, sent, at, r)) = pending.next().await {
        r?;
        accepted.push((id, sent, at));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let arrivals = receiver.arrivals.lock().unwrap();
    let mut from_sent = Vec::new();
    let mut from_accepted = Vec::new();
    for (id, sent, at) in &accepted {
        for path in measured {
            let arrived = arrivals
                .by_event
                .get(&(path.to_string(), id.clone()))
                .and_then(|v| v.first())
                .ok_or_else(|| format!("{id} never reached {path}"))?;
            from_sent.push(arrived.saturating_duration_since(*sent));
            // A delivery can arrive before the client has read the 202: that counts as 0.
            from_accepted.push(arrived.saturating_duration_since(*at));
        }
    }
    if let Ok(path) = std::env::var("BENCH_TRACE") {
        trace(&path, prefix, &accepted, &arrivals.by_event, measured[0])?;
    }
    from_sent.sort();
    from_accepted.sort();
    Ok(Latencies {
        from_sent,
        from_accepted,
    })
}

/// With `BENCH_TRACE=<file>`, each measured event as a line appended to the file: its
/// prefix, when it was sent (ms from the first), how long the ingest request took (µs) and
/// when it reached the receiver (µs from sent). Percentiles hide when the slow ones came;
/// this is how the fairness scenario's first-wave stall was found.
fn trace(
    path: &str,
    prefix: &str,
    accepted: &[(String, Instant, Instant)],
    arrivals: &std::collections::HashMap<(String, String), Vec<Instant>>,
    path_name: &str,
) -> Result<(), String> {
    use std::io::Write;
    let Some(t0) = accepted.first().map(|a| a.1) else {
        return Ok(());
    };
    let mut out = String::new();
    for (id, sent, at) in accepted {
        let arrived = arrivals
            .get(&(path_name.to_string(), id.clone()))
            .and_then(|v| v.first())
            .map_or(0, |a| a.saturating_duration_since(*sent).as_micros());
        out.push_str(&format!(
            "{prefix} {} {} {arrived}\n",
            sent.duration_since(t0).as_millis(),
            at.duration_since(*sent).as_micros(),
        ));
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(out.as_bytes()))
        .map_err(|e| format!("{path}: {e}"))
}

fn latency_row(label: &str, l: &[Duration]) -> String {
    format!(
        "| {label} | {} | {} | {} | {} | {} |",
        l.len(),
        ms(percentile(l, 50.0)),
        ms(percentile(l, 95.0)),
        ms(percentile(l, 99.0)),
        ms(*l.last().unwrap_or(&Duration::ZERO))
    )
}

pub async fn latency(quick: bool) -> Res {
    let (rate, secs) = if quick { (50, 2) } else { (100, 30) };
    let receiver = Receiver::start().await;
    let runner = subscribed_runner(&receiver, &["a", "b", "c"]).await?;
    let l = offered_load(&runner, &receiver, rate, secs, &["a", "b", "c"]).await?;
    Ok(format!(
        "### Latency: {rate} events/s × 3 subscriptions for {secs} s, to the receiver's handler (ms)\n\n\
         | from | deliveries | p50 | p95 | p99 | max |\n| --- | --- | --- | --- | --- | --- |\n{}\n{}",
        latency_row("ingest request sent", &l.from_sent),
        latency_row("202 accepted received by the producer", &l.from_accepted)
    ))
}

pub async fn isolation(quick: bool) -> Res {
    let (rate, secs) = if quick { (20, 2) } else { (50, 20) };
    let receiver = Receiver::start().await;
    let alone = subscribed_runner(&receiver, &["a", "b", "c"]).await?;
    let without = offered_load(&alone, &receiver, rate, secs, &["a", "b", "c"]).await?;
    drop(alone);
    let receiver = Receiver::start().await;
    receiver.slow("slow", Duration::from_secs(30));
    let runner = subscribed_runner(&receiver, &["a", "b", "c"]).await?;
    runner
        .subscribe(
            "acct_bench",
            &receiver.url("slow"),
            json!({"timeout_seconds": 2}),
        )
        .await?;
    let with = offered_load(&runner, &receiver, rate, secs, &["a", "b", "c"]).await?;
    Ok(format!(
        "### Isolation: {rate} events/s for {secs} s to 3 fast endpoints, with and without a 4th that never answers within its 2 s timeout; ingest sent → receiver (ms)\n\n\
         | fast endpoints | deliveries | p50 | p95 | p99 | max |\n| --- | --- | --- | --- | --- | --- |\n{}\n{}",
        latency_row("alone", &without.from_sent),
        latency_row("beside the slow one", &with.from_sent)
    ))
}

pub async fn memory(quick: bool) -> Res {
    let secs = if quick { 3 } else { 60 };
    let rate = 500;
    let receiver = Receiver::start().await;
    let runner = subscribed_runner(&receiver, &["a", "b", "c"]).await?;
    let (idle, _) = runner.rss_kib();
    let mut samples = Vec::new();
    let sampler = async {
        for _ in 0..secs {
            tokio::time::sleep(Duration::from_secs(1)).await;
            samples.push(runner.rss_kib().0);
        }
    };
    let load = async {
        let ids: Vec<String> = (0..rate * secs).map(|i| format!("evt_mem_{i}")).collect();
        for chunk in ids.chunks(rate) {
            let started = Instant::now();
            ingest_all(&runner, chunk).await?;
            tokio::time::sleep(Duration::from_secs(1).saturating_sub(started.elapsed())).await;
        }
        Ok::<_, String>(())
    };
    let (_, loaded) = tokio::join!(sampler, load);
    loaded?;
    wait_for(&receiver, rate * secs * 3, Duration::from_secs(120)).await?;
    let (_, peak) = runner.rss_kib();
    let early = samples.get(samples.len() / 6).copied().unwrap_or(0);
    let late = samples.last().copied().unwrap_or(0);
    Ok(format!(
        "### Memory: the runner under {rate} events/s × 3 subscriptions for {secs} s\n\n\
         | measure | MiB |\n| --- | --- |\n\
         | RSS idle (after start) | {:.1} |\n| RSS at 1/6 of the run | {:.1} |\n| RSS at the end | {:.1} |\n| peak RSS (VmHWM) | {:.1} |",
        idle as f64 / 1024.0,
        early as f64 / 1024.0,
        late as f64 / 1024.0,
        peak as f64 / 1024.0
    ))
}

pub async fn coldstart(quick: bool) -> Res {
    let runs = if quick { 1 } else { 7 };
    let mut rows = Vec::new();
    for name in ["ingest", "api", "fanout", "deliver"] {
        let bin = release_binary(name)?;
        let mut inits = Vec::new();
        for _ in 0..runs {
            let api = e2e::lambda_api::RuntimeApi::start().await;
            let started = Instant::now();
            let mut child = std::process::Command::new(&bin)
                .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
                .env("AWS_LAMBDA_FUNCTION_NAME", format!("bench-{name}"))
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
                .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                .env("AWS_REGION", "us-east-1")
                .env("AWS_ACCESS_KEY_ID", "bench")
                .env("AWS_SECRET_ACCESS_KEY", "bench")
                .env("EVENTS_QUEUE_URL", "http://127.0.0.1:1/q/events")
                .env("DELIVERIES_QUEUE_URL", "http://127.0.0.1:1/q/deliveries")
                .env(
                    "DELIVERIES_STRANDED_QUEUE_URL",
                    "http://127.0.0.1:1/q/stranded",
                )
                .env("DELIVERIES_DLQ_URL", "http://127.0.0.1:1/q/dlq")
                .env("SUBSCRIPTIONS_TABLE", "s")
                .env("EVENTS_TABLE", "e")
                .env("DELIVERIES_TABLE", "d")
                .env("API_KEYS_TABLE", "k")
                // Read by api and deliver, but only when a secret is first sealed or opened:
                // nothing at init, which is what this measures.
                .env("SEALING_KEY_PARAMETER", "/bench/sealing-key")
                .env("PLATFORM_KEY_HASH", "0".repeat(64))
                // Alert e-mail on: fanout builds its SES client at init too.
                .env("WEBHOOKS_ALERT_SENDER", "alerts@example.com")
                .stdout(std::process::Stdio::null())
                .spawn()
                .map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(10);
            let first = loop {
                if let Some(at) = api.first_poll() {
                    break at;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    return Err(format!("{name} never polled the Runtime API"));
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            };
            inits.push((first - started).as_secs_f64() * 1000.0);
            let _ = child.kill();
            let _ = child.wait();
        }
        let (min, med, max) = spread(&mut inits);
        let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
        let arm = [
            "IngestFunction",
            "ApiFunction",
            "FanoutFunction",
            "DeliverFunction",
        ][["ingest", "api", "fanout", "deliver"]
            .iter()
            .position(|n| *n == name)
            .unwrap()];
        let arm_size = std::fs::metadata(format!(".aws-sam/build/{arm}/bootstrap"))
            .map(|m| format!("{:.1}", m.len() as f64 / 1_048_576.0))
            .unwrap_or_else(|_| "not built".into());
        rows.push(format!(
            "| {name} | {min:.1} | {med:.1} | {max:.1} | {:.1} | {arm_size} |",
            size as f64 / 1_048_576.0
        ));
    }
    Ok(format!(
        "### Cold start: process start → first Runtime API poll (ms, {runs} runs), and binary sizes (MiB)\n\n\
         | function | init min | init median | init max | x86_64 release | arm64 `sam build` |\n\
         | --- | --- | --- | --- | --- | --- |\n{}",
        rows.join("\n")
    ))
}

/// Delivery latency while the API scans a subscription's 30 days of stats over and over:
/// the scans read on their own connections, so they must not hold up ingest and delivery.
pub async fn stats_under_load(quick: bool) -> Res {
    let (prefill, rate, secs) = if quick {
        (300, 20, 2)
    } else {
        (100_000, 100, 30)
    };
    let receiver = Receiver::start().await;
    let runner = Runner::start().await?;
    let mut subscriptions = Vec::new();
    for p in ["a", "b", "c"] {
        subscriptions.push(
            runner
                .subscribe("acct_bench", &receiver.url(p), json!({}))
                .await?,
        );
    }
    let ids: Vec<String> = (0..prefill).map(|i| format!("evt_pre_{i}")).collect();
    ingest_all(&runner, &ids).await?;
    wait_for(&receiver, prefill * 3, Duration::from_secs(900)).await?;

    let alone = offered_load_named(
        &runner,
        &receiver,
        "evt_alone",
        rate,
        secs,
        &["a", "b", "c"],
    )
    .await?;
    let stats_path = format!(
        "/v1/accounts/acct_bench/webhooks/{}/stats?window=30d",
        subscriptions[0]
    );
    let loading = std::sync::atomic::AtomicBool::new(true);
    let scans = async {
        let mut took = Vec::new();
        while loading.load(std::sync::atomic::Ordering::SeqCst) {
            let started = Instant::now();
            runner.get(&stats_path).await?;
            took.push(started.elapsed());
        }
        took.sort();
        Ok::<_, String>(took)
    };
    let load = async {
        let l =
            offered_load_named(&runner, &receiver, "evt_scan", rate, secs, &["a", "b", "c"]).await;
        loading.store(false, std::sync::atomic::Ordering::SeqCst);
        l
    };
    let (with, scans) = tokio::join!(load, scans);
    let (with, scans) = (with?, scans?);
    Ok(format!(
        "### Stats under load: {rate} events/s × 3 subscriptions for {secs} s on {} deliveries, alone and while `GET …/stats?window=30d` runs back to back; ingest sent → receiver (ms)\n\n\
         | deliveries | count | p50 | p95 | p99 | max |\n| --- | --- | --- | --- | --- | --- |\n{}\n{}\n\n\
         {} stats scans ran meanwhile, each {} ms at the median and {} ms at p99.",
        prefill * 3,
        latency_row("alone", &alone.from_sent),
        latency_row("beside the stats scans", &with.from_sent),
        scans.len(),
        ms(percentile(&scans, 50.0)),
        ms(percentile(&scans, 99.0)),
    ))
}

/// One account's hanging endpoints against another's fast one: account A has 40
/// subscriptions that never answer within their timeout, account B one that answers at
/// once. B's latency alone, then while A's events keep coming.
pub async fn fairness(quick: bool) -> Res {
    let (rate, noisy_rate, secs) = if quick { (20, 5, 2) } else { (50, 20, 30) };
    let receiver = Receiver::start().await;
    receiver.slow("hang", Duration::from_secs(60));
    let runner = Runner::start().await?;
    runner
        .subscribe("acct_bench", &receiver.url("b"), json!({}))
        .await?;
    let alone = offered_load_named(&runner, &receiver, "evt_alone", rate, secs, &["b"]).await?;
    for _ in 0..40 {
        runner
            .subscribe(
                "acct_noisy",
                &receiver.url("hang"),
                json!({"timeout_seconds": 10}),
            )
            .await?;
    }
    let loading = std::sync::atomic::AtomicBool::new(true);
    let noisy = async {
        let mut i = 0;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / noisy_rate as f64));
        while loading.load(std::sync::atomic::Ordering::SeqCst) {
            tick.tick().await;
            let e = e2e::event("call.ended", "acct_noisy", Some(&format!("evt_noisy_{i}")));
            runner.post("/v1/events", &e).await?;
            i += 1;
        }
        Ok::<_, String>(i)
    };
    let load = async {
        // From A's first event: the first wave, when nothing is known about A's endpoints
        // yet and each of its deliveries may hang for the whole timeout, is the hardest
        // moment for B. Then a second window, once A's endpoints are failing and parked.
        let first = offered_load_named(&runner, &receiver, "evt_first", rate, secs, &["b"]).await;
        let later = offered_load_named(&runner, &receiver, "evt_later", rate, secs, &["b"]).await;
        loading.store(false, std::sync::atomic::Ordering::SeqCst);
        Ok::<_, String>((first?, later?))
    };
    let (beside, noisy) = tokio::join!(load, noisy);
    let ((first, later), noisy) = (beside?, noisy?);
    let failing = runner
        .get("/v1/accounts/acct_noisy/webhooks?limit=100")
        .await?["data"]
        .as_array()
        .map_or(0, |subs| {
            subs.iter()
                .filter(|s| !s["failing_since"].is_null())
                .count()
        });
    Ok(format!(
        "### Fairness: account B's one fast endpoint at {rate} events/s for {secs} s, alone and while account A sends {noisy_rate} events/s to 40 endpoints that never answer (10 s timeout); ingest sent → B's receiver (ms)\n\n\
         | B's deliveries | count | p50 | p95 | p99 | max |\n| --- | --- | --- | --- | --- | --- |\n{}\n{}\n{}\n\n\
         Account A sent {noisy} events meanwhile ({} attempts demanded); {failing} of its 40 endpoints were known to be failing at the end.",
        latency_row("alone", &alone.from_sent),
        latency_row(&format!("beside A, its first {secs} s"), &first.from_sent),
        latency_row(&format!("beside A, the {secs} s after"), &later.from_sent),
        noisy * 40,
    ))
}

/// Stats over 30 days of a busy account: `deliveries` outcomes (3 subscriptions, 2 % failed
/// with one of three causes, latencies of 1–200 ms) recorded through the embedded store
/// spread evenly over the last 30 days, then `GET /v1/accounts/{a}/stats?window=30d` and one
/// webhook's, each timed over HTTP against the release runner on that data.
pub async fn stats_30d(quick: bool) -> Res {
    use app::ports::DeliveryLog;
    use domain::delivery::{Attempt, DeliveryStatus, DeliveryUpdate};
    use domain::ids::{AccountId, DeliveryId, SubscriptionId};
    use domain::time::Timestamp;

    let (deliveries, runs) = if quick { (20_000, 3) } else { (1_000_000, 20) };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    // The subscriptions, made through the API (their secrets sealed as usual); the runner
    // then stops while the outcomes are written beside it.
    let ids = {
        let runner = Runner::start_in(Some(dir.path())).await?;
        let mut ids = Vec::new();
        for p in ["a", "b", "c"] {
            ids.push(
                runner
                    .subscribe(
                        "acct_bench",
                        &format!("https://{p}.example.com/hook"),
                        json!({}),
                    )
                    .await?,
            );
        }
        ids
    };
    let prefill = Instant::now();
    {
        let db =
            store_sqlite::Db::open(&dir.path().join("webhooks.db")).map_err(|e| e.to_string())?;
        let log = store_sqlite::SqliteDeliveryLog::new(db);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        // An hour short of 30 days: every 30-day window read a moment later holds them
        // all, however its start is rounded.
        let span = 30 * 86_400_000i64 - 3_600_000;
        let account = AccountId::parse("acct_bench").unwrap();
        let subs: Vec<SubscriptionId> = ids
            .iter()
            .map(|s| SubscriptionId::parse(s.as_str()).unwrap())
            .collect();
        let mut batch = Vec::with_capacity(1000);
        for i in 0..deliveries {
            // Oldest first, as they would have happened.
            let at = Timestamp::from_millis(now - span + (i as i64 * span) / deliveries as i64);
            let failed = i % 50 == 0;
            let code = if failed {
                [500, 503, 404][i / 50 % 3]
            } else {
                204
            };
            batch.push(DeliveryUpdate {
                delivery_id: DeliveryId::parse(format!("msg_bench{i}")).unwrap(),
                account_id: account.clone(),
                subscription_id: subs[i % 3].clone(),
                event_id: domain::ids::EventId::parse(format!("evt_bench{i}")).unwrap(),
                event_type: domain::catalog::EventType::known("call.ended").unwrap(),
                created_at: at,
                first_try: true,
                status: if failed {
                    DeliveryStatus::Pending
                } else {
                    DeliveryStatus::Succeeded
                },
                attempt: Some(Attempt {
                    attempt: 0,
                    at,
                    url: "https://example.com/hook".into(),
                    request_headers: vec![],
                    response_headers: vec![],
                    status_code: Some(code),
                    latency_ms: 1 + (i as u64 * 7919) % 200,
                    response_body: None,
                    error: None,
                }),
                next_attempt_at: None,
                error: None,
                cause: None,
                at,
                listed_on_event: false,
            });
            if batch.len() == 1000 {
                // Each outcome logs its delivery (kept in short when it succeeded) and adds
                // to its stats slot, which is all a stats read touches.
                log.record(&batch).await.map_err(|e| e.to_string())?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            log.record(&batch).await.map_err(|e| e.to_string())?;
        }
    }
    let prefill = prefill.elapsed();
    let runner = Runner::start_in(Some(dir.path())).await?;
    let timed = |path: String| {
        let runner = &runner;
        async move {
            let mut took = Vec::with_capacity(runs);
            let mut last = Value::Null;
            for _ in 0..runs {
                let started = Instant::now();
                last = runner.get(&path).await?;
                took.push(started.elapsed());
            }
            took.sort();
            Ok::<_, String>((took, last))
        }
    };
    let (account, body) = timed("/v1/accounts/acct_bench/stats?window=30d".into()).await?;
    let counted = body["counts"]["succeeded"].as_u64().unwrap_or(0)
        + body["counts"]["failed"].as_u64().unwrap_or(0);
    if counted < deliveries as u64 * 99 / 100 {
        return Err(format!(
            "the stats counted {counted} of {deliveries}: {body}"
        ));
    }
    let (one, _) = timed(format!(
        "/v1/accounts/acct_bench/webhooks/{}/stats?window=30d",
        ids[0]
    ))
    .await?;
    let (hourly, _) = timed("/v1/accounts/acct_bench/stats?window=7d&bucket=1h".into()).await?;
    // Half-hour buckets are not whole hours: read from the five-minute slots, 12 times as
    // many rows. Their totals must be the hours' own.
    let (fine, fine_body) =
        timed("/v1/accounts/acct_bench/stats?window=30d&bucket=30m".into()).await?;
    if fine_body["counts"] != body["counts"] || fine_body["latency_ms"] != body["latency_ms"] {
        return Err(format!(
            "the report from slots differs from the one from hours: {} and {} against {} and {}",
            fine_body["counts"], fine_body["latency_ms"], body["counts"], body["latency_ms"]
        ));
    }
    let row = |name: &str, took: &[Duration]| {
        format!(
            "| {name} | {} | {} | {} |",
            ms(took[0]),
            ms(percentile(took, 50.0)),
            ms(*took.last().unwrap())
        )
    };
    Ok(format!(
        "### Stats over 30 days: {deliveries} outcomes of 3 subscriptions spread over the last 30 days (recorded in {:.1} s), {runs} requests each, over HTTP (ms)\n\n\
         | request | min | median | max |\n| --- | --- | --- | --- |\n{}\n{}\n{}\n{}\n\n\
         The account's report counted {counted} attempts in {} buckets and {} error groups.",
        prefill.as_secs_f64(),
        row("account, `window=30d` (1-day buckets)", &account),
        row("one webhook, `window=30d`", &one),
        row("account, `window=7d&bucket=1h`", &hourly),
        row(
            "account, `window=30d&bucket=30m` (from the five-minute slots)",
            &fine
        ),
        body["series"].as_array().map_or(0, Vec::len),
        body["errors"].as_array().map_or(0, Vec::len),
    ))
}
