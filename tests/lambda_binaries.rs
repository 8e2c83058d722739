//! The real function binaries, each under a Lambda Runtime API emulator, against moto:
//! the API Gateway and SQS events Lambda would hand them, and what they answer (and that
//! the secrets they write are stored sealed).

use std::time::Duration;

use app::ports::Queue;
use e2e::functions::{http_answer, http_event, plant_lost_deliveries, receive, Function};
use e2e::{eventually, moto, verify_signature, Behavior, Receiver, WAIT};
use serde_json::{json, Value};
use store_aws::SqsQueue;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_binaries_deliver_an_event_with_a_retry() {
    let (clients, resources) = moto::deployment("binaries").await;
    let key = domain::api_key::generate_platform_key(&app::ports::OsRandom);
    let key_hash = domain::api_key::hash_key(&key);
    let api = Function::start("api", &resources, &key_hash).await;
    let ingest = Function::start("ingest", &resources, &key_hash).await;
    let fanout = Function::start("fanout", &resources, &key_hash).await;
    let deliver = Function::start("deliver", &resources, &key_hash).await;
    let receiver = Receiver::start().await;

    let (status, sub) = http_answer(
        &api.invoke(http_event(
            "POST",
            "/v1/accounts/acct_l/webhooks",
            &key,
            Some(json!({
            "url": receiver.url("lambda", Behavior::Sequence(vec![500])),
            "event_types": ["call.*"], "retry_schedule": [1]})),
        ))
        .await,
    );
    assert_eq!(status, 201, "{sub}");
    // Stored sealed: the table holds no signing secret in clear.
    let rows = clients
        .dynamodb
        .scan()
        .table_name(&resources.subscriptions_table)
        .send()
        .await
        .unwrap();
    let raw = format!("{:?}", rows.items());
    let secret = sub["secret"].as_str().unwrap();
    assert!(
        !raw.contains(secret.trim_start_matches("whsec_")),
        "the signing secret is stored in clear: {raw}"
    );
    assert!(raw.contains("sealed:v1:"), "{raw}");
    let (status, body) = http_answer(
        &ingest
            .invoke(http_event("GET", "/v1/events", &key, None))
            .await,
    );
    assert_eq!(status, 405, "{body}");
    let event = e2e::event("call.transcript.ready", "acct_l", Some("evt_lambda"));
    let (status, accepted) = http_answer(
        &ingest
            .invoke(http_event("POST", "/v1/events", &key, Some(event)))
            .await,
    );
    assert_eq!(status, 202, "{accepted}");

    // One endpoint: ingest fanned the event out itself, past the events queue.
    let events_queue = SqsQueue::new(clients.sqs.clone(), &resources.events_queue_url);
    assert!(events_queue
        .receive(10, Duration::from_millis(200))
        .await
        .unwrap()
        .is_empty());

    let deliveries_queue = SqsQueue::new(clients.sqs.clone(), &resources.deliveries_queue_url);
    // First attempt: the endpoint answers 500, the message is reported failed and comes back.
    let first = receive(&deliveries_queue, 1).await;
    let response = deliver
        .invoke(serde_json::to_value(runner::poller::sqs_event("deliveries", &first)).unwrap())
        .await;
    assert_eq!(
        response["batchItemFailures"][0]["itemIdentifier"],
        json!(first[0].message_id),
        "{response}"
    );
    let again = receive(&deliveries_queue, 1).await;
    assert_eq!(again[0].message_id, first[0].message_id);
    assert_eq!(again[0].receive_count, 2);
    let response = deliver
        .invoke(serde_json::to_value(runner::poller::sqs_event("deliveries", &again)).unwrap())
        .await;
    assert_eq!(response["batchItemFailures"], json!([]), "{response}");

    let got = receiver.wait_for("lambda", 2, WAIT).await;
    assert!(verify_signature(sub["secret"].as_str().unwrap(), &got[1]));
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    let delivery_id = got[1].header("webhook-id").to_string();
    let (status, delivery) = http_answer(
        &api.invoke(http_event(
            "GET",
            &format!("/v1/accounts/acct_l/deliveries/{delivery_id}"),
            &key,
            None,
        ))
        .await,
    );
    assert_eq!(status, 200, "{delivery}");
    assert_eq!(delivery["status"], "succeeded");
    assert_eq!(delivery["attempts"].as_array().unwrap().len(), 2);

    // The event again through fan-out, as the events queue hands a redelivered message:
    // its task is sent for a recheck, and deliver sends nothing twice.
    let stored = store_aws::stores(&clients, &resources)
        .events
        .get(
            &domain::ids::AccountId::parse("acct_l").unwrap(),
            &domain::ids::EventId::parse("evt_lambda").unwrap(),
        )
        .await
        .unwrap()
        .expect("the event is stored");
    events_queue
        .send_batch(vec![app::ports::OutgoingMessage {
            id: "0".into(),
            body: serde_json::to_string(&stored).unwrap(),
            delay: Duration::ZERO,
            held_for: None,
        }])
        .await
        .unwrap();
    let mut redelivered = receive(&events_queue, 1).await;
    redelivered[0].receive_count = 2;
    let response = fanout
        .invoke(serde_json::to_value(runner::poller::sqs_event("events", &redelivered)).unwrap())
        .await;
    assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    events_queue
        .delete_batch(
            redelivered
                .iter()
                .map(|m| m.receipt_handle.clone())
                .collect(),
        )
        .await
        .unwrap();
    let recheck = receive(&deliveries_queue, 1).await;
    assert!(
        recheck[0].body.contains(r#""recheck":true"#),
        "{}",
        recheck[0].body
    );
    let response = deliver
        .invoke(serde_json::to_value(runner::poller::sqs_event("deliveries", &recheck)).unwrap())
        .await;
    assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    assert_eq!(receiver.received("lambda").len(), 2, "sent twice");

    // The management routes answer through the api function as they do in the runner.
    let wh = sub["id"].as_str().unwrap();
    for path in [
        "/healthz".to_string(),
        "/openapi.json".to_string(),
        "/v1/event-types".to_string(),
        "/v1/accounts/acct_l/webhooks".to_string(),
        format!("/v1/accounts/acct_l/webhooks/{wh}"),
        format!("/v1/accounts/acct_l/webhooks/{wh}/deliveries"),
        format!("/v1/accounts/acct_l/webhooks/{wh}/stats"),
        "/v1/accounts/acct_l/events".to_string(),
        "/v1/accounts/acct_l/events/evt_lambda".to_string(),
        "/v1/accounts/acct_l/dead-letters".to_string(),
    ] {
        let (status, body) = http_answer(&api.invoke(http_event("GET", &path, &key, None)).await);
        assert_eq!(status, 200, "GET {path}: {body}");
    }
    let (_, listed) = http_answer(
        &api.invoke(http_event(
            "GET",
            &format!("/v1/accounts/acct_l/webhooks/{wh}/deliveries"),
            &key,
            None,
        ))
        .await,
    );
    assert_eq!(listed["data"][0]["status"], "succeeded");
    let (_, stats) = http_answer(
        &api.invoke(http_event(
            "GET",
            &format!("/v1/accounts/acct_l/webhooks/{wh}/stats"),
            &key,
            None,
        ))
        .await,
    );
    assert_eq!(stats["counts"]["succeeded"], 1);
    let (status, rotated) = http_answer(
        &api.invoke(http_event(
            "POST",
            &format!("/v1/accounts/acct_l/webhooks/{wh}/rotate-secret"),
            &key,
            None,
        ))
        .await,
    );
    assert_eq!(status, 200, "{rotated}");
    assert!(rotated["secret"].as_str().unwrap().starts_with("whsec_"));

    // The deliver function reported both attempts as EMF metrics on stdout (read from its
    // pipe by a thread of its own, so polled for).
    let metrics = || -> Vec<Value> {
        deliver
            .stdout
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("_aws").is_some())
            .collect()
    };
    eventually("both attempts' metrics on stdout", WAIT, || async {
        let emf = metrics();
        if emf.len() >= 2 {
            Ok(())
        } else {
            Err(format!("{emf:?}"))
        }
    })
    .await;
    let emf = metrics();
    assert_eq!(emf.len(), 2, "{emf:?}");
    assert_eq!(emf[0]["DeliveryRetried"], 1);
    assert_eq!(emf[1]["DeliverySucceeded"], 1);
    assert_eq!(emf[1]["DeliveryAttempt"], json!([2]));
    assert_eq!(emf[1]["Stage"], "test");
    for f in [&api, &ingest, &fanout, &deliver] {
        assert!(f.api.init_error().is_none());
        assert!(f.api.first_poll().is_some());
    }
}

/// The deliver function's two other duties: what the deliveries queue gave up on (its
/// stranded queue) is marked dead, and its schedule's sweep sends again a delivery left
/// pending without a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deliver_function_marks_stranded_deliveries_dead_and_sweeps() {
    use app::deliver_function::queue_name;
    use domain::delivery::{DeliveryStatus, Payload};

    let (clients, resources) = moto::deployment("stranded").await;
    let key = domain::api_key::generate_platform_key(&app::ports::OsRandom);
    let key_hash = domain::api_key::hash_key(&key);
    let api = Function::start("api", &resources, &key_hash).await;
    let deliver = Function::start("deliver", &resources, &key_hash).await;
    let receiver = Receiver::start().await;
    let (status, sub) = http_answer(
        &api.invoke(http_event(
            "POST",
            "/v1/accounts/acct_st/webhooks",
            &key,
            Some(json!({"url": receiver.url("swept", Behavior::Status(200)),
                        "event_types": ["call.*"]})),
        ))
        .await,
    );
    assert_eq!(status, 201, "{sub}");
    let stores = store_aws::stores(&clients, &resources);
    let account = domain::ids::AccountId::parse("acct_st").unwrap();
    let subscription = stores
        .subscriptions
        .get(
            &account,
            &domain::ids::SubscriptionId::parse(sub["id"].as_str().unwrap()).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    // Two events fanned out two hours ago, whose deliveries' messages are gone.
    let deliveries: Vec<_> =
        plant_lost_deliveries(&stores, &subscription, &["evt_stranded", "evt_swept"])
            .await
            .into_iter()
            .map(|(event, delivery)| (delivery, event))
            .collect();

    // SQS gave up on the first one's message: it is in the stranded queue.
    let (stranded, stranded_event) = &deliveries[0];
    let stranded_queue = SqsQueue::new(
        clients.sqs.clone(),
        &resources.deliveries_stranded_queue_url,
    );
    stranded_queue
        .send_batch(vec![app::ports::OutgoingMessage {
            id: "0".into(),
            body: serde_json::to_string(&stranded.task(Payload::of(stranded_event))).unwrap(),
            delay: Duration::ZERO,
            held_for: None,
        }])
        .await
        .unwrap();
    let messages = receive(&stranded_queue, 1).await;
    let name = queue_name(&resources.deliveries_stranded_queue_url);
    let response = deliver
        .invoke(serde_json::to_value(runner::poller::sqs_event(name, &messages)).unwrap())
        .await;
    assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    let dead = stores
        .deliveries
        .get(&account, &stranded.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.status, DeliveryStatus::Dead);
    let dlq = SqsQueue::new(clients.sqs.clone(), &resources.deliveries_dlq_url);
    let letters = receive(&dlq, 1).await;
    assert!(letters[0].body.contains(stranded.id.as_str()));

    // The schedule's sweep: the second one is sent again, then delivered.
    let scheduled = json!({
        "version": "0", "id": "s1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-29T10:00:00Z", "region": "us-east-1",
        "resources": [], "detail": {}
    });
    let report = deliver.invoke(scheduled).await;
    assert_eq!(report["overdue"], 1, "{report}");
    assert_eq!(report["requeued"], 1, "{report}");
    let deliveries_queue = SqsQueue::new(clients.sqs.clone(), &resources.deliveries_queue_url);
    let sent = receive(&deliveries_queue, 1).await;
    let response = deliver
        .invoke(serde_json::to_value(runner::poller::sqs_event("deliveries", &sent)).unwrap())
        .await;
    assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    let got = receiver.wait_for("swept", 1, WAIT).await;
    assert!(verify_signature(sub["secret"].as_str().unwrap(), &got[0]));
    let (swept, _) = &deliveries[1];
    let done = stores
        .deliveries
        .get(&account, &swept.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, DeliveryStatus::Succeeded);
}
