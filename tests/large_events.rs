//! Large events end to end, on the embedded default and on SQS and DynamoDB (moto): an event
//! near the 256 KiB limit fanned out to ten subscriptions reaches every one with the exact
//! body it was signed over, carried on the queue as it is (not escaped into a string again),
//! and an ingest batch of large events is accepted (its messages split into as many queue
//! calls as their bytes need) or refused at once with a 413 that names the limit: never a
//! 503 that a retrying producer would get again and again.

use e2e::{event, on_backend, verify_signature, Behavior, Gate, Receiver, TestRunner, WAIT};
use serde_json::{json, Value};

/// The ingest route's body limit (`MAX_INGEST_BODY_BYTES` in `shared/http-api`).
const BODY_LIMIT: usize = 6 * 1024 * 1024;

/// A `call.ended` event whose JSON is about `bytes` long, most of it a string full of
/// quotes: each one is escaped again wherever the event is carried inside a JSON string.
fn large_event(account: &str, id: &str, bytes: usize) -> Value {
    let mut e = event("call.ended", account, Some(id));
    e["data"]["padding"] = json!("");
    let base = serde_json::to_string(&e).unwrap().len();
    // `x"` is three bytes in JSON (`x\"`).
    e["data"]["padding"] = json!("x\"".repeat(bytes.saturating_sub(base) / 3));
    e
}

/// The bodies of the messages on the embedded runner's deliveries queue, read beside it;
/// `None` on another backend.
fn queued_deliveries(t: &TestRunner) -> Option<Vec<String>> {
    let path = t.dir.path().join("webhooks.db");
    if !path.exists() {
        return None;
    }
    let db =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = db
        .prepare("SELECT body FROM queue_messages WHERE queue = 'deliveries'")
        .unwrap();
    let bodies = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    Some(bodies)
}

/// Posts `body` to ingest; a request the runner does not answer fails the test with the
/// client's error rather than a status.
async fn ingest(t: &TestRunner, body: &Value) -> (u16, Value) {
    ingest_raw(t, serde_json::to_vec(body).unwrap()).await
}

/// Posts these bytes as they are (a `Value` would write its numbers out in full).
async fn ingest_raw(t: &TestRunner, bytes: Vec<u8>) -> (u16, Value) {
    let resp = t
        .http
        .post(t.url("/v1/events"))
        .bearer_auth(&t.runner.platform_key)
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .await
        .unwrap_or_else(|e| panic!("the runner did not answer the ingest request: {e:?}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
    (status, value)
}

async fn a_250_kib_event_reaches_each_of_ten_subscriptions(t: TestRunner) {
    let r = Receiver::start().await;
    // Held until every request is in: the ten deliveries are on the queue meanwhile.
    let gate = Gate::new();
    let mut subs = Vec::new();
    for i in 0..10 {
        let path = format!("big{i}");
        let url = r.url(&path, Behavior::Held(200, gate.clone()));
        let sub = t
            .create_webhook("acct_big", json!({"url": url, "event_types": ["call.*"]}))
            .await;
        subs.push((path, sub));
    }
    let sent = large_event("acct_big", "evt_big", 250 * 1024);
    let size = serde_json::to_string(&sent).unwrap().len();
    assert!((249 * 1024..256 * 1024).contains(&size), "{size}");
    t.send_event(sent.clone()).await;

    // The ten endpoints are new, so their first attempts are probes: four at once, the
    // others wait for an answer. Held, four are in flight and all ten messages queued.
    let probes = app::limiter::PROBES_PER_ACCOUNT;
    let first = e2e::eventually("the first attempts", WAIT, || async {
        let arrived: Vec<&String> = subs
            .iter()
            .map(|(path, _)| path)
            .filter(|path| !r.received(path).is_empty())
            .collect();
        match arrived.len() {
            n if n >= probes => Ok(arrived[0].clone()),
            n => Err(format!("{n} arrived")),
        }
    })
    .await;
    let payload = r.received(&first)[0].body.clone();
    if let Some(bodies) = queued_deliveries(&t) {
        // Each message holds the payload as it is, plus its ids: not the payload escaped
        // into a string, a third longer here (every quote gains a backslash).
        assert_eq!(bodies.len(), 10);
        for body in bodies {
            assert!(
                body.contains(&payload),
                "the payload is not in the message verbatim"
            );
            assert!(
                body.len() < payload.len() + 1024,
                "a message of {} bytes for a payload of {}",
                body.len(),
                payload.len()
            );
        }
    }
    gate.open();

    for (path, sub) in &subs {
        let got = r.wait_for(path, 1, WAIT).await;
        let request = &got[0];
        assert_eq!(
            request.header("webhook-id"),
            t.delivery_id("acct_big", "evt_big", sub["id"].as_str().unwrap())
                .await
        );
        assert!(
            verify_signature(sub["secret"].as_str().unwrap(), request),
            "{path}: the signature does not cover the body received"
        );
        let body = request.json();
        assert_eq!(body["id"], "evt_big");
        assert_eq!(
            body["data"], sent["data"],
            "{path}: the data changed on the way"
        );
        // Every subscription gets the same bytes.
        assert!(request.body == payload, "{path}: another body");
    }
    for (path, sub) in &subs {
        let id = t
            .delivery_id("acct_big", "evt_big", sub["id"].as_str().unwrap())
            .await;
        t.wait_for_logged("acct_big", &id, "succeeded", &r, path, WAIT)
            .await;
    }
    t.runner.shutdown().await;
}

async fn a_batch_of_large_events_is_accepted_or_refused_with_413_never_503(t: TestRunner) {
    let r = Receiver::start().await;
    t.create_webhook(
        "acct_bulk",
        json!({"url": r.url("bulk", Behavior::Status(200)), "event_types": ["call.ended"]}),
    )
    .await;

    // Under the limit as posted, but four times over it as delivered: a number such as
    // `1e15` is written out in full (`1000000000000000.0`). Refused, the batch with it.
    let mut inflating = event("call.ended", "acct_bulk", Some("evt_inflating"));
    inflating["data"]["numbers"] = json!([]);
    let numbers = "1e15,".repeat(50 * 1024);
    let posted = serde_json::to_string(&inflating).unwrap().replace(
        r#""numbers":[]"#,
        &format!(r#""numbers":[{}]"#, numbers.trim_end_matches(',')),
    );
    assert!(posted.len() < 256 * 1024);
    let posted = format!(
        r#"{{"events": [{}, {posted}]}}"#,
        serde_json::to_string(&event("call.ended", "acct_bulk", Some("evt_beside"))).unwrap()
    );
    let (status, body) = ingest_raw(&t, posted.into_bytes()).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "event_too_large", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("/events/1"), "{message}");
    assert!(message.contains(&(256 * 1024).to_string()), "{message}");

    // 100 events of 250 KiB: 25 MB, over the body limit. Refused at once, saying so.
    let too_big = json!({"events": (0..100)
        .map(|i| large_event("acct_bulk", &format!("evt_huge_{i}"), 250 * 1024))
        .collect::<Vec<_>>()});
    let (status, body) = ingest(&t, &too_big).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&BODY_LIMIT.to_string()), "{message}");

    // 100 events filling the body limit: accepted, each one new.
    let hundred = json!({"events": (0..100)
        .map(|i| large_event("acct_bulk", &format!("evt_many_{i}"), 60 * 1024))
        .collect::<Vec<_>>()});
    assert!(serde_json::to_vec(&hundred).unwrap().len() < BODY_LIMIT);
    let (status, body) = ingest(&t, &hundred).await;
    assert_eq!(status, 202, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 100);
    assert!(results.iter().all(|r| r["duplicate"] == false), "{body}");

    // As many 250 KiB events as fit in the body limit: ten of them are 2.5 MB, more than
    // one queue call carries, so the messages go in several calls. Accepted, not a 503.
    let biggest = json!({"events": (0..24)
        .map(|i| large_event("acct_bulk", &format!("evt_big_{i}"), 250 * 1024))
        .collect::<Vec<_>>()});
    assert!(serde_json::to_vec(&biggest).unwrap().len() < BODY_LIMIT);
    let (status, body) = ingest(&t, &biggest).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 24);

    // Every one of the 124 accepted events is delivered, and nothing of the refused ones.
    let delivered = e2e::eventually("all 124 events to be delivered", WAIT * 2, || async {
        let mut ids: Vec<String> = r
            .received("bulk")
            .iter()
            .map(|g| g.json()["id"].as_str().unwrap_or_default().to_string())
            .collect();
        ids.sort();
        ids.dedup();
        if ids.len() == 124 {
            Ok(ids)
        } else {
            Err(format!("{} distinct events delivered", ids.len()))
        }
    })
    .await;
    assert!(
        !delivered
            .iter()
            .any(|id| id.starts_with("evt_huge") || id == "evt_inflating" || id == "evt_beside"),
        "a refused event was delivered"
    );
    t.runner.shutdown().await;
}

on_backend!(embedded, TestRunner::start_embedded;
    a_250_kib_event_reaches_each_of_ten_subscriptions,
    a_batch_of_large_events_is_accepted_or_refused_with_413_never_503
);
on_backend!(moto, TestRunner::start_moto;
    a_250_kib_event_reaches_each_of_ten_subscriptions,
    a_batch_of_large_events_is_accepted_or_refused_with_413_never_503
);
