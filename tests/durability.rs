//! Durability: the runner process is killed (SIGKILL) with deliveries in flight and queued,
//! restarted on the same data dir, and every delivery still completes.

use std::time::Duration;

use e2e::process::RunnerProcess;
use e2e::{call, event, eventually, Behavior, Receiver, WAIT};
use serde_json::json;

const KEY: &str = "whp_durability_test_key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_in_flight_and_queued_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    // Restarted on the same data dir and port.
    let runner = RunnerProcess::builder()
        .data_dir(dir.path())
        .port(e2e::free_port())
        .platform_key(KEY);
    let r = Receiver::start().await;
    let http = reqwest::Client::new();
    let mut p = runner.start().await.unwrap();

    // The first request of `hang` hangs past the kill (far past: the kill may come late on a
    // loaded machine, and must come before the attempt times out); a later attempt succeeds
    // at once.
    let hang = r.url("hang", Behavior::Sleep(Duration::from_secs(120)));
    let (status, sub) = call(
        &http,
        &format!("{}/v1/accounts/acct_k/webhooks", p.base()),
        reqwest::Method::POST,
        KEY,
        Some(json!({"url": hang, "event_types": ["call.*"], "timeout_seconds": 30})),
    )
    .await;
    assert_eq!(status, 201, "{sub}");
    let (status, queued_sub) = call(
        &http,
        &format!("{}/v1/accounts/acct_k/webhooks", p.base()),
        reqwest::Method::POST,
        KEY,
        Some(json!({"url": r.url("later", Behavior::Status(200)), "event_types": ["agent.*"]})),
    )
    .await;
    assert_eq!(status, 201, "{queued_sub}");

    let (status, _) = call(
        &http,
        &format!("{}/v1/events", p.base()),
        reqwest::Method::POST,
        KEY,
        Some(event("call.started", "acct_k", Some("evt_in_flight"))),
    )
    .await;
    assert_eq!(status, 202);
    r.wait_for("hang", 1, WAIT).await;
    // In flight now. Accept a burst of events and kill the process straight after: some are
    // still in the events queue, some in the deliveries queue.
    let batch: Vec<_> = (0..20)
        .map(|i| event("agent.status_changed", "acct_k", Some(&format!("evt_q{i}"))))
        .collect();
    let (status, _) = call(
        &http,
        &format!("{}/v1/events", p.base()),
        reqwest::Method::POST,
        KEY,
        Some(json!({"events": batch})),
    )
    .await;
    assert_eq!(status, 202);
    p.kill(); // SIGKILL: no shutdown code runs

    // Make the hanging endpoint answer at once from now on.
    r.url("hang", Behavior::Status(200));
    let mut p = runner.start().await.unwrap();

    let got = r.wait_for("hang", 2, WAIT).await;
    let id = e2e::delivery_id_at(
        &http,
        p.base(),
        KEY,
        "acct_k",
        "evt_in_flight",
        sub["id"].as_str().unwrap(),
    )
    .await;
    assert!(
        got.iter().all(|g| g.header("webhook-id") == id),
        "a retry after the crash changed the webhook-id"
    );

    eventually(
        "the 20 queued events to be delivered after the restart",
        WAIT,
        || async {
            let mut ids: Vec<String> = r
                .received("later")
                .iter()
                .map(|g| g.json()["id"].as_str().unwrap().to_string())
                .collect();
            ids.sort();
            ids.dedup();
            if ids.len() == 20 {
                Ok(())
            } else {
                Err(format!("{} of 20", ids.len()))
            }
        },
    )
    .await;
    // Logged as succeeded (just after the endpoint answered).
    eventually("the in-flight delivery to succeed", WAIT, || async {
        let (status, d) = call(
            &http,
            &format!("{}/v1/accounts/acct_k/deliveries/{id}", p.base()),
            reqwest::Method::GET,
            KEY,
            None,
        )
        .await;
        assert_eq!(status, 200, "{d}");
        if d["status"] == "succeeded" {
            Ok(())
        } else {
            Err(d.to_string())
        }
    })
    .await;
    p.kill();
}

/// A data dir written by a newer version is never misread: the runner stops at start with
/// a message naming the file and what to do, and leaves the file as it was.
#[test]
fn a_data_dir_of_a_newer_layout_stops_the_runner_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("webhooks.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE subscriptions (id TEXT); CREATE TABLE deliveries (id TEXT);",
        )
        .unwrap();
        conn.pragma_update(None, "user_version", store_sqlite::LAYOUT_VERSION + 1)
            .unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let out = std::process::Command::new(e2e::workspace_binary("webhooks"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--addr", "127.0.0.1:0", "--platform-key", KEY])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("newer version"), "{stderr}");
    assert!(stderr.contains(&db.display().to_string()), "{stderr}");
    assert!(stderr.contains("another data dir"), "{stderr}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "the file was changed");
}
