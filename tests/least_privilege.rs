//! Least privilege, proven: the four function binaries run a scenario that takes every
//! route of the API and every duty of the pipeline (a delivery, a retry, a deferral, an
//! endpoint disabled, a dead letter and its redrive, alert e-mail and its digest, the
//! stranded queue and the sweep) against moto, each through a recording proxy. Every AWS
//! call each one made must be allowed by its role in `template.yaml`, and every grant of
//! the role must have been used, or be one the Lambda service itself uses with the role
//! (`used_by_lambda_itself` says which, and why).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use app::ports::Queue;
use e2e::aws_recorder::{AwsCall, AwsRecorder, AwsResource};
use e2e::functions::{http_answer, http_event, receive, Function};
use e2e::template as tpl;
use e2e::{moto, Behavior, Receiver, WAIT};
use serde_json::{json, Value};
use store_aws::{Resources, SqsQueue};

/// Why a grant no handler calls is there, if the Lambda service uses it with the
/// function's role: to write its logs, and for its event source mappings to poll.
fn used_by_lambda_itself(
    t: &yaml_rust2::Yaml,
    function: &str,
    action: &str,
    resource: &str,
) -> Option<&'static str> {
    let properties = &t["Resources"][function]["Properties"];
    let log_group = format!(
        "${{{}.Arn}}",
        properties["LoggingConfig"]["LogGroup"]
            .as_str()
            .unwrap_or("?")
    );
    let sources: Vec<String> = properties["Events"]
        .as_hash()
        .into_iter()
        .flatten()
        .filter(|(_, e)| e["Type"].as_str() == Some("SQS"))
        .filter_map(|(_, e)| e["Properties"]["Queue"].as_str())
        .map(|q| format!("${{{q}}}"))
        .collect();
    let action = action.to_ascii_lowercase();
    match action.as_str() {
        "logs:createlogstream" | "logs:putlogevents" if resource == log_group => {
            Some("Lambda writes the function's logs")
        }
        "sqs:receivemessage" | "sqs:getqueueattributes" | "sqs:deletemessage"
            if sources.iter().any(|s| s == resource) =>
        {
            Some("the event source mapping polls the queue and deletes what was handled")
        }
        _ => None,
    }
}

/// The template's names for the tables and queues (the variables it sets them in, from
/// `Globals`), against this deployment's.
fn template_names(t: &yaml_rust2::Yaml, resources: &Resources) -> HashMap<String, String> {
    let ours = [
        ("SUBSCRIPTIONS_TABLE", &resources.subscriptions_table),
        ("EVENTS_TABLE", &resources.events_table),
        ("DELIVERIES_TABLE", &resources.deliveries_table),
        ("API_KEYS_TABLE", &resources.api_keys_table),
        ("EVENTS_QUEUE_URL", &resources.events_queue_url),
        ("DELIVERIES_QUEUE_URL", &resources.deliveries_queue_url),
        (
            "DELIVERIES_STRANDED_QUEUE_URL",
            &resources.deliveries_stranded_queue_url,
        ),
        ("DELIVERIES_DLQ_URL", &resources.deliveries_dlq_url),
    ];
    let globals = &t["Globals"]["Function"]["Environment"]["Variables"];
    ours.into_iter()
        .map(|(var, name)| {
            let logical = globals[var]
                .as_str()
                .unwrap_or_else(|| panic!("Globals does not set {var}"));
            assert!(
                !t["Resources"][logical].is_badvalue(),
                "{var} is not a resource: {logical}"
            );
            (name.clone(), logical.to_string())
        })
        .collect()
}

/// A recorded call in the template's words: the resource as its ARN is written there, and
/// the condition keys it carries.
fn in_template_words(
    call: &AwsCall,
    names: &HashMap<String, String>,
    sealing_key: (&str, &str),
    alert_sender: (&str, &str),
) -> (String, Vec<(&'static str, String)>) {
    let logical = |name: &str| {
        names
            .get(name)
            .unwrap_or_else(|| panic!("{call:?} names a resource outside the stack"))
            .clone()
    };
    match &call.resource {
        AwsResource::Table { name, index } => {
            let table = format!("${{{}.Arn}}", logical(name));
            match index {
                Some(index) => (format!("{table}/index/{index}"), vec![]),
                None => (table, vec![]),
            }
        }
        AwsResource::Queue { url } => (format!("${{{}.Arn}}", logical(url)), vec![]),
        AwsResource::Parameter { name } => {
            assert_eq!(
                name, sealing_key.0,
                "{call:?}: a parameter other than the key"
            );
            (
                format!(
                    "arn:${{AWS::Partition}}:ssm:${{AWS::Region}}:${{AWS::AccountId}}:parameter{}",
                    sealing_key.1
                ),
                vec![],
            )
        }
        AwsResource::EmailFrom { address } => {
            assert_eq!(address, alert_sender.0, "{call:?}: sent as another address");
            let domain = address.rsplit('@').next().unwrap();
            (
                format!("arn:${{AWS::Partition}}:ses:${{AWS::Region}}:${{AWS::AccountId}}:identity/{domain}"),
                vec![("ses:FromAddress", alert_sender.1.to_string())],
            )
        }
    }
}

/// Invokes the api function, expecting a status below 500; the path is noted for the
/// coverage check.
struct Api<'a> {
    function: &'a Function,
    called: std::sync::Mutex<BTreeSet<(String, String)>>,
}

impl Api<'_> {
    async fn call(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> (u64, Value) {
        self.called
            .lock()
            .unwrap()
            .insert((method.to_ascii_lowercase(), path.to_string()));
        let response = self
            .function
            .invoke(http_event(method, path, key, body))
            .await;
        let status = response["statusCode"].as_u64().unwrap();
        let body = response["body"].as_str().unwrap_or("null");
        let body = serde_json::from_str(body).unwrap_or(json!(body));
        assert!(status < 500, "{method} {path}: {status} {body}");
        (status, body)
    }

    async fn ok(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> Value {
        let (status, body) = self.call(method, path, key, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {body}"
        );
        body
    }
}

/// Whether an OpenAPI path (`/v1/accounts/{account_id}`) matches a called one.
fn route_matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(a, b)| (a.starts_with('{') && !b.is_empty()) || a == b)
}

/// Runs one queue's messages through a function as the event source mapping does: a
/// batch in, and what it did not report failed deleted.
async fn pump(queue: &SqsQueue, queue_name: &str, function: &Function) -> usize {
    let messages = queue.receive(10, Duration::from_millis(200)).await.unwrap();
    if messages.is_empty() {
        return 0;
    }
    let response = function
        .invoke(serde_json::to_value(runner::poller::sqs_event(queue_name, &messages)).unwrap())
        .await;
    let failed: BTreeSet<&str> = response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["itemIdentifier"].as_str())
        .collect();
    let done: Vec<String> = messages
        .iter()
        .filter(|m| !failed.contains(m.message_id.as_str()))
        .map(|m| m.receipt_handle.clone())
        .collect();
    // The function deletes some itself (deferred originals, dead letters): a stale
    // receipt is no failure here.
    let _ = queue.delete_batch(done).await;
    messages.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_aws_call_is_granted_by_the_functions_role_and_every_grant_is_used() {
    let (clients, resources) = moto::deployment("iam").await;
    let config = moto::config().await;
    let prefix = moto::unique_prefix("iam");
    let sender = format!("{prefix}alerts@example.com");
    aws_sdk_sesv2::Client::new(&config)
        .create_email_identity()
        .email_identity(&sender)
        .send()
        .await
        .unwrap();
    let platform_key = domain::api_key::generate_platform_key(&app::ports::OsRandom);
    let key_hash = domain::api_key::hash_key(&platform_key);

    let mut recorders = HashMap::new();
    let mut functions = HashMap::new();
    for name in ["api", "ingest", "fanout", "deliver"] {
        let recorder = AwsRecorder::start(&moto::endpoint()).await;
        let extra: &[(&str, &str)] = match name {
            "fanout" => &[
                ("WEBHOOKS_ALERT_SENDER", &sender),
                ("WEBHOOKS_CONSOLE_URL", "https://hooks.example.com"),
            ],
            "deliver" => &[("WEBHOOKS_CONSOLE_URL", "https://hooks.example.com")],
            _ => &[],
        };
        let function =
            Function::start_with(name, &resources, &key_hash, &recorder.url, extra).await;
        recorders.insert(name, recorder);
        functions.insert(name, function);
    }
    let api = Api {
        function: &functions["api"],
        called: Default::default(),
    };
    let receiver = Receiver::start().await;
    let account = "acct_iam";
    let base = format!("/v1/accounts/{account}");
    let pk = platform_key.as_str();

    // What needs no account.
    for path in [
        "/healthz",
        "/openapi.json",
        "/v1/.well-known/jwks.json",
        "/v1/event-types",
        "/v1/whoami",
        "/v1/egress-ips",
    ] {
        api.ok("GET", path, pk, None).await;
    }

    // Keys. The account has kept as many as it may, all revoked: the next one created
    // forgets the oldest.
    let now = domain::time::Timestamp::from_millis(1_800_000_000_000);
    let account_id = domain::ids::AccountId::parse(account).unwrap();
    let stores = store_aws::stores(&clients, &resources);
    for _ in 0..domain::api_key::MAX_KEPT_KEYS_PER_ACCOUNT {
        let random = app::ports::OsRandom;
        let mut old = domain::api_key::ApiKeyRecord::new(
            domain::ids::ApiKeyId::generate(now, &random),
            account_id.clone(),
            &domain::api_key::generate_account_key(&random),
            now,
            None,
        );
        old.revoked_at = Some(now);
        stores.api_keys.create(&old).await.unwrap();
    }
    let created = api
        .ok("POST", &format!("{base}/api-keys"), pk, Some(json!({})))
        .await;
    let key = created["key"].as_str().unwrap().to_string();
    let spare = api
        .ok("POST", &format!("{base}/api-keys"), pk, Some(json!({})))
        .await;
    api.ok("GET", &format!("{base}/api-keys"), &key, None).await;
    api.ok(
        "DELETE",
        &format!("{base}/api-keys/{}", spare["id"].as_str().unwrap()),
        pk,
        None,
    )
    .await;
    api.ok("GET", "/v1/whoami", &key, None).await;
    let listed = api.ok("GET", &format!("{base}/api-keys"), &key, None).await;
    assert_eq!(
        listed["data"].as_array().map(Vec::len),
        Some(domain::api_key::MAX_KEPT_KEYS_PER_ACCOUNT),
        "{listed}"
    );
    // One only ever shown to ingest, so that its first use is written there.
    let ingest_key = api
        .ok("POST", &format!("{base}/api-keys"), pk, Some(json!({})))
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();

    // Alert e-mail for every operational event.
    api.ok(
        "PUT",
        &format!("{base}/alerts"),
        &key,
        Some(json!({"emails": [format!("{prefix}ops@example.com")]})),
    )
    .await;
    api.ok("GET", &format!("{base}/alerts"), &key, None).await;

    // Five endpoints: one that answers (with a JWT, at most once a second), one that fails
    // once, two that always fail, one that is gone. Each failing one gets one event: a
    // second one in the same batch would find its endpoint failing, with a probe in
    // flight, and be parked for half a minute.
    let mut hooks = HashMap::new();
    for (name, behavior, extra) in [
        (
            "ok",
            Behavior::Status(204),
            json!({"event_types": ["call.*", "delivery.*", "webhook.*"],
                   "auth": {"type": "jwt"}, "rate_limit_per_second": 1}),
        ),
        (
            "flaky",
            Behavior::Sequence(vec![500]),
            json!({"event_types": ["call.ended"], "retry_schedule": [1]}),
        ),
        (
            "doomed_a",
            Behavior::Status(500),
            json!({"event_types": ["call.ended"], "retry_schedule": [1]}),
        ),
        (
            "doomed_b",
            Behavior::Status(500),
            json!({"event_types": ["call.started"], "retry_schedule": [1]}),
        ),
        (
            "gone",
            Behavior::Status(410),
            json!({"event_types": ["call.*"]}),
        ),
    ] {
        let mut body = extra;
        body["url"] = json!(receiver.url(name, behavior));
        let created = api
            .ok("POST", &format!("{base}/webhooks"), &key, Some(body))
            .await;
        hooks.insert(name, created["id"].as_str().unwrap().to_string());
    }
    // More endpoints than ingest fans out itself (they want no event sent here), so this
    // account's events go through the events queue to fan-out.
    for i in 0..app::ingest::DIRECT_FAN_OUT_MAX_SUBSCRIPTIONS - hooks.len() + 1 {
        let body = json!({"url": receiver.url(&format!("quiet{i}"), Behavior::Status(204)),
                          "event_types": ["knowledge_base.*"]});
        api.ok("POST", &format!("{base}/webhooks"), &key, Some(body))
            .await;
    }
    // A small account, fanned out by ingest itself: one endpoint that answers, one paused.
    let small = "acct_iam_small";
    let mut small_hooks = HashMap::new();
    for (name, paused) in [("small_ok", false), ("small_paused", true)] {
        let body = json!({"url": receiver.url(name, Behavior::Status(204)),
                          "event_types": ["call.*"]});
        let created = api
            .ok(
                "POST",
                &format!("/v1/accounts/{small}/webhooks"),
                pk,
                Some(body),
            )
            .await;
        small_hooks.insert(name, created["id"].as_str().unwrap().to_string());
        if paused {
            let id = created["id"].as_str().unwrap();
            api.ok(
                "PATCH",
                &format!("/v1/accounts/{small}/webhooks/{id}"),
                pk,
                Some(json!({"enabled": false})),
            )
            .await;
        }
    }

    // Two events, and one of them again; an account's key is looked up and refused.
    let ingest = |key: String, id: &'static str| {
        let kind = if id == "evt_iam_2" {
            "call.started"
        } else {
            "call.ended"
        };
        let event = e2e::event(kind, account, Some(id));
        let function = &functions["ingest"];
        async move {
            http_answer(
                &function
                    .invoke(http_event("POST", "/v1/events", &key, Some(event)))
                    .await,
            )
        }
    };
    let (status, body) = ingest(ingest_key, "evt_iam_0").await;
    assert_eq!(status, 403, "{body}");
    for id in ["evt_iam_1", "evt_iam_2", "evt_iam_1"] {
        let (status, body) = ingest(platform_key.clone(), id).await;
        assert!(status == 202 || status == 200, "{status} {body}");
    }
    let (status, body) = http_answer(
        &functions["ingest"]
            .invoke(http_event(
                "POST",
                "/v1/events",
                &platform_key,
                Some(e2e::event("call.ended", small, Some("evt_iam_small"))),
            ))
            .await,
    );
    assert_eq!(status, 202, "{body}");
    // A request of several events to the small account: their first-try successes are
    // kept together in one listing, once deliver has read that none has an item yet.
    let batch: Vec<Value> = (0..5)
        .map(|i| e2e::event("call.ended", small, Some(&format!("evt_iam_small_b{i}"))))
        .collect();
    let (status, body) = http_answer(
        &functions["ingest"]
            .invoke(http_event(
                "POST",
                "/v1/events",
                &platform_key,
                Some(json!({ "events": batch })),
            ))
            .await,
    );
    assert_eq!(status, 202, "{body}");
    // And one the fan-out cannot read, set aside at once.
    let events_queue = SqsQueue::new(clients.sqs.clone(), &resources.events_queue_url);
    events_queue
        .send_batch(vec![app::ports::OutgoingMessage {
            id: "0".into(),
            body: "not an event".into(),
            delay: Duration::ZERO,
            held_for: None,
        }])
        .await
        .unwrap();

    // The pipeline, until every endpoint has what it will get.
    let deliveries_queue = SqsQueue::new(clients.sqs.clone(), &resources.deliveries_queue_url);
    let gone_id = domain::ids::SubscriptionId::parse(&hooks["gone"]).unwrap();
    let deadline = std::time::Instant::now() + 3 * WAIT;
    loop {
        pump(&events_queue, "events", &functions["fanout"]).await;
        pump(&deliveries_queue, "deliveries", &functions["deliver"]).await;
        let gone = stores
            .subscriptions
            .get(&account_id, &gone_id)
            .await
            .unwrap()
            .unwrap();
        let counts = |path: &str| receiver.received(path).len();
        let emailed = recorders["fanout"]
            .calls()
            .iter()
            .any(|c| c.action == "ses:SendEmail");
        // Logged dead, not only tried twice: the retry and the redrive below need them so.
        let dead_logged = stores
            .deliveries
            .list_dead(&account_id, None, 10)
            .await
            .unwrap()
            .items
            .len();
        // Two events and three operational ones (one endpoint disabled, two deliveries
        // dead) to `ok`; the three failing ones tried twice each.
        if counts("ok") >= 5
            && dead_logged >= 2
            && counts("small_ok") >= 6
            && counts("flaky") >= 2
            && counts("doomed_a") >= 2
            && counts("doomed_b") >= 2
            && !gone.enabled
            && emailed
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pipeline did not settle: ok {}, flaky {}, doomed {} and {}, gone enabled {}, e-mailed {emailed}",
            counts("ok"),
            counts("flaky"),
            counts("doomed_a"),
            counts("doomed_b"),
            gone.enabled
        );
    }
    // The digest run finds what the throttle held, and removes a marker left behind by a
    // write that failed half-way (its topic holds nothing due).
    clients
        .dynamodb
        .put_item()
        .table_name(&resources.deliveries_table)
        .item(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("alertdue".into()),
        )
        .item(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!(
                "{:013}#{account}#webhook.failing#nowhere",
                1_700_000_000_000i64
            )),
        )
        .item(
            "account_id",
            aws_sdk_dynamodb::types::AttributeValue::S(account.into()),
        )
        .item(
            "topic",
            aws_sdk_dynamodb::types::AttributeValue::S("webhook.failing#nowhere".into()),
        )
        .send()
        .await
        .unwrap();
    let scheduled = json!({
        "version": "0", "id": "s1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-29T10:00:00Z", "region": "us-east-1",
        "resources": [], "detail": {}
    });
    functions["fanout"].invoke(scheduled.clone()).await;

    // The small account's endpoint paused, and one of its delivered events posted again:
    // ingest finds its success kept in a listing, and logs no skip over it.
    api.ok(
        "PATCH",
        &format!("/v1/accounts/{small}/webhooks/{}", small_hooks["small_ok"]),
        pk,
        Some(json!({"enabled": false})),
    )
    .await;
    let (status, body) = http_answer(
        &functions["ingest"]
            .invoke(http_event(
                "POST",
                "/v1/events",
                &platform_key,
                Some(e2e::event("call.ended", small, Some("evt_iam_small_b0"))),
            ))
            .await,
    );
    assert_eq!(status, 202, "{body}");

    // Every other route, on what the pipeline left.
    let dead: Vec<String> = ["doomed_a", "doomed_b"]
        .iter()
        .map(|path| receiver.received(path)[0].header("webhook-id").to_string())
        .collect();
    let (ok, flaky, gone) = (&hooks["ok"], &hooks["flaky"], &hooks["gone"]);
    for path in [
        format!("{base}/webhooks"),
        format!("{base}/webhooks/{ok}"),
        format!("{base}/webhooks/{ok}/deliveries"),
        format!("{base}/webhooks/{ok}/stats"),
        format!("{base}/stats"),
        format!("{base}/events"),
        format!("{base}/events/evt_iam_1"),
        format!("{base}/dead-letters"),
        format!("{base}/deliveries/{}", dead[0]),
    ] {
        api.ok("GET", &path, &key, None).await;
    }
    // Fanned out by ingest: its deliveries are read by id from the event's list.
    let small_event = format!("/v1/accounts/{small}/events/evt_iam_small");
    api.ok("GET", &small_event, &platform_key, None).await;
    // In this order: the retry and the redrive need the dead letters as they are, the
    // deletion comes last.
    let writes = [
        ("POST", format!("{base}/deliveries/{}/retry", dead[0]), None),
        (
            "POST",
            format!("{base}/dead-letters/redrive"),
            Some(json!({"ids": [dead[1]]})),
        ),
        (
            "POST",
            format!("{base}/webhooks/{flaky}/recover"),
            Some(json!({"since": "2026-01-01T00:00:00Z"})),
        ),
        (
            "POST",
            format!("{base}/webhooks/{ok}/test"),
            Some(json!({})),
        ),
        ("POST", format!("{base}/webhooks/{ok}/diagnose"), None),
        (
            "POST",
            format!("{base}/webhooks/{flaky}/rotate-secret"),
            None,
        ),
        (
            "POST",
            format!("{base}/webhooks/{flaky}/expire-previous-secrets"),
            None,
        ),
        (
            "PATCH",
            format!("{base}/webhooks/{flaky}"),
            Some(json!({"description": "fails once"})),
        ),
        ("DELETE", format!("{base}/webhooks/{gone}"), None),
    ];
    for (method, path, body) in writes {
        api.ok(method, &path, &key, body).await;
    }

    // What the api sent again is delivered.
    let deadline = std::time::Instant::now() + WAIT;
    while pump(&deliveries_queue, "deliveries", &functions["deliver"]).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the deliveries queue never emptied"
        );
    }

    // The deliver function's other duties: the stranded queue and the sweep.
    let stranded_queue = SqsQueue::new(
        clients.sqs.clone(),
        &resources.deliveries_stranded_queue_url,
    );
    let subscription = stores
        .subscriptions
        .get(
            &account_id,
            &domain::ids::SubscriptionId::parse(ok).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    // Two deliveries whose messages are gone: one is in the stranded queue, the other
    // only the sweep finds.
    let planted = e2e::functions::plant_lost_deliveries(
        &stores,
        &subscription,
        &["evt_iam_stranded", "evt_iam_swept"],
    )
    .await;
    // And a first try the queue gave up on: never logged, so it is logged dead.
    let first_try = domain::event::Event {
        id: domain::ids::EventId::parse("evt_iam_first_try").unwrap(),
        ..planted[0].0.clone()
    };
    stores
        .events
        .insert_batch(std::slice::from_ref(&first_try))
        .await
        .unwrap();
    let never_logged =
        domain::delivery::Delivery::new(&first_try, &subscription, planted[0].1.created_at);
    let stranded: Vec<app::ports::OutgoingMessage> =
        [(&planted[0].0, &planted[0].1), (&first_try, &never_logged)]
            .into_iter()
            .enumerate()
            .map(|(i, (event, delivery))| app::ports::OutgoingMessage {
                id: i.to_string(),
                body: serde_json::to_string(&delivery.task(domain::delivery::Payload::of(event)))
                    .unwrap(),
                delay: Duration::ZERO,
                held_for: None,
            })
            .collect();
    stranded_queue.send_batch(stranded).await.unwrap();
    let messages = receive(&stranded_queue, 2).await;
    let name = app::deliver_function::queue_name(&resources.deliveries_stranded_queue_url);
    let response = functions["deliver"]
        .invoke(serde_json::to_value(runner::poller::sqs_event(name, &messages)).unwrap())
        .await;
    assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    for (_, delivery) in [&planted[0], &(first_try.clone(), never_logged.clone())] {
        let logged = stores
            .deliveries
            .get(&account_id, &delivery.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(logged.status, domain::delivery::DeliveryStatus::Dead);
    }
    // The sweep reads the second one's event and sends it again. The first sweep of a
    // table scans it (giving older pending deliveries their index key); the next queries
    // the pending deliveries' index, and finds that one rescheduled.
    let report = functions["deliver"].invoke(scheduled.clone()).await;
    assert_eq!(report["requeued"], 1, "{report}");
    let report = functions["deliver"].invoke(scheduled).await;
    assert_eq!(report["requeued"], 0, "{report}");

    // Every route of the API was taken.
    let document = api.ok("GET", "/openapi.json", pk, None).await;
    let called = api.called.lock().unwrap().clone();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if path == "/v1/events" {
                continue; // the ingest function's, taken above
            }
            assert!(
                called
                    .iter()
                    .any(|(m, p)| m == method && route_matches(path, p)),
                "the scenario never took {method} {path}"
            );
        }
    }

    // Every call granted; every grant used, or listed with its reason.
    let t = tpl::load();
    let names = template_names(&t, &resources);
    let sealing_key = (
        resources.sealing_key_parameter.as_deref().unwrap(),
        "/webhooks-${Stage}/sealing-key",
    );
    let conditions: HashMap<&str, bool> = [
        ("HasAlertEmail", false),
        ("HasAlertSender", true),
        ("HasConsoleUrl", true),
        ("HasStaticEgress", false),
    ]
    .into();
    let mut problems = Vec::new();
    let mut report = Vec::new();
    for (name, function_id) in [
        ("api", "ApiFunction"),
        ("ingest", "IngestFunction"),
        ("fanout", "FanoutFunction"),
        ("deliver", "DeliverFunction"),
    ] {
        let recorder = &recorders[name];
        let unread = recorder.unread();
        assert!(
            unread.is_empty(),
            "{name}: calls the recorder could not read: {unread:?}"
        );
        let grants = tpl::grants(&t, function_id, &conditions);
        // Which (action, resource) of each grant some call used.
        let mut used: BTreeSet<(usize, String, String)> = BTreeSet::new();
        for call in recorder.calls() {
            let (resource, context) =
                in_template_words(&call, &names, sealing_key, (&sender, "AlertSender"));
            let context: Vec<(&str, &str)> =
                context.iter().map(|(k, v)| (*k, v.as_str())).collect();
            report.push(format!("{name}: {} {resource}", call.action));
            let mut granted = false;
            for (i, grant) in grants.iter().enumerate() {
                if grant.allows(&call.action, &resource, &context) {
                    granted = true;
                    for action in &grant.actions {
                        for pattern in &grant.resources {
                            if tpl::iam_match(action, &call.action, true)
                                && tpl::iam_match(pattern, &resource, false)
                            {
                                used.insert((i, action.clone(), pattern.clone()));
                            }
                        }
                    }
                }
            }
            if !granted {
                problems.push(format!(
                    "{function_id} calls {} on {resource}, which its role does not grant",
                    call.action
                ));
            }
        }
        for (i, grant) in grants.iter().enumerate() {
            for action in &grant.actions {
                for pattern in &grant.resources {
                    if used.contains(&(i, action.clone(), pattern.clone())) {
                        continue;
                    }
                    if let Some(reason) = used_by_lambda_itself(&t, function_id, action, pattern) {
                        report.push(format!("{name}: {action} {pattern}: not called: {reason}"));
                    } else {
                        problems.push(format!(
                            "{function_id}'s role grants {action} on {pattern}, which no call used"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n\nrecorded:\n{}",
        problems.join("\n"),
        report.join("\n")
    );
}
