//! Crash safety under load: the runner process is killed with SIGKILL at random moments
//! while events stream in, and restarted on the same data dir, several times. Every
//! (event, subscription) pair whose ingest was answered 202 is delivered at least once, and
//! every duplicate carries the same `webhook-id` and body.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::process::{Output, RunnerProcess};
use e2e::{call, event, eventually, Behavior, Receiver, WAIT};
use serde_json::json;

const KEY: &str = "whp_crash_test_key";
const KILLS: usize = 5;
/// Accepted events below which the run would mean little.
const ENOUGH_EVENTS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_event_survives_repeated_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    // Restarted on the same data dir and port.
    let runner = RunnerProcess::builder()
        .data_dir(dir.path())
        .port(e2e::free_port())
        .platform_key(KEY)
        .log_level("error")
        .output(Output::Discard);
    let http = reqwest::Client::new();
    let r = Receiver::start().await;
    let mut child = runner.start().await.unwrap();
    let base = child.base().to_string();
    let mut subs = Vec::new();
    for path in ["k1", "k2", "k3"] {
        let (status, sub) = call(&http, &format!("{base}/v1/accounts/acct_c/webhooks"), reqwest::Method::POST, KEY,
            Some(json!({"url": r.url(path, Behavior::Status(200)), "event_types": ["*"], "retry_schedule": [1]}))).await;
        assert_eq!(status, 201, "{sub}");
        subs.push((path, sub["id"].as_str().unwrap().to_string()));
    }

    // A producer posting batches of 20 events as fast as the runner answers; it keeps what
    // was accepted, and stops when told.
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let (accepted, stop, http, base) =
            (accepted.clone(), stop.clone(), http.clone(), base.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let ids: Vec<String> = (n..n + 20).map(|i| format!("evt_c{i}")).collect();
                n += 20;
                let batch = json!({"events": ids.iter().map(|id| event("call.ended", "acct_c", Some(id))).collect::<Vec<_>>()});
                let sent = http
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(KEY)
                    .json(&batch)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                match sent {
                    Ok(resp) if resp.status() == 202 => accepted.lock().unwrap().extend(ids),
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
    };

    let accepted_now = || accepted.lock().unwrap().len();
    for _ in 0..KILLS {
        // Killed while events stream in: this run has accepted some already, however slowly
        // it answers.
        let before = accepted_now();
        eventually("the runner to accept events", WAIT, || async {
            let now = accepted_now();
            if now > before {
                Ok(())
            } else {
                Err(format!("{now} accepted"))
            }
        })
        .await;
        let pause = 200 + (domain::random::Random::unit(&app::ports::OsRandom) * 600.0) as u64;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        child.kill();
        child = runner.start().await.unwrap();
    }
    // Streaming on into the last run until there is enough load to mean something.
    tokio::time::sleep(Duration::from_millis(300)).await;
    eventually("enough events accepted", WAIT, || async {
        let now = accepted_now();
        if now >= ENOUGH_EVENTS {
            Ok(())
        } else {
            Err(format!("{now} accepted"))
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    producer.await.unwrap();
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() >= ENOUGH_EVENTS,
        "too little load to mean anything: {}",
        accepted.len()
    );

    let expected = accepted.len() * subs.len();
    // The ids to expect: each begins with its event's receipt time, read from the API.
    let mut expected_ids = Vec::with_capacity(expected);
    for e in &accepted {
        for (_, s) in &subs {
            expected_ids.push(e2e::delivery_id_at(&http, &base, KEY, "acct_c", e, s).await);
        }
    }
    // Generous: a loaded machine delivers slowly, and the loop ends as soon as all arrived.
    let deadline = Instant::now() + Duration::from_secs(180);
    let (received, missing) = loop {
        let mut received: HashMap<String, Vec<String>> = HashMap::new();
        for (path, _) in &subs {
            for got in r.received(path) {
                received
                    .entry(got.header("webhook-id").to_string())
                    .or_default()
                    .push(got.body.clone());
            }
        }
        let missing: Vec<String> = expected_ids
            .iter()
            .filter(|id| !received.contains_key(*id))
            .cloned()
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break (received, missing);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // What the log says of a few missing ones, to tell a loss from a delay.
    let mut logged = Vec::new();
    for id in missing.iter().take(3) {
        let path = format!("{base}/v1/accounts/acct_c/deliveries/{id}");
        logged.push(call(&http, &path, reqwest::Method::GET, KEY, None).await.1);
    }
    child.kill();
    assert!(
        missing.is_empty(),
        "{} of {expected} accepted deliveries never arrived, e.g. {:?}; logged as {logged:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let total: usize = received.values().map(Vec::len).sum();
    for (id, bodies) in &received {
        assert!(
            bodies.iter().all(|b| b == &bodies[0]),
            "{id} arrived with different bodies"
        );
    }
    let duplicates = total - received.len();
    eprintln!(
        "crash safety: {KILLS} SIGKILLs, {} events accepted, {expected} deliveries expected, \
         {total} received, {duplicates} duplicates ({:.2} %)",
        accepted.len(),
        100.0 * duplicates as f64 / expected as f64
    );
}
