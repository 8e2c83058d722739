//! The real function binaries, each under its own Lambda Runtime API emulator, configured
//! as the template configures them but pointed at moto (or at a recorder in front of it),
//! and the API Gateway and SQS events Lambda would hand them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::ports::Queue;
use serde_json::{json, Value};
use store_aws::{Resources, SqsQueue};

use crate::lambda_api::RuntimeApi;
use crate::{moto, WAIT};

/// A function process polling its own Runtime API, with its stdout collected.
pub struct Function {
    pub api: RuntimeApi,
    child: Child,
    pub stdout: Arc<Mutex<Vec<String>>>,
}

impl Function {
    pub async fn start(name: &str, resources: &Resources, key_hash: &str) -> Function {
        Self::start_with(name, resources, key_hash, &moto::endpoint(), &[]).await
    }

    /// With the AWS endpoint it calls, and variables added to (or replacing) the usual.
    pub async fn start_with(
        name: &str,
        resources: &Resources,
        key_hash: &str,
        aws_endpoint: &str,
        extra: &[(&str, &str)],
    ) -> Function {
        let command = Command::new(crate::workspace_binary(name));
        Self::start_command(command, name, resources, key_hash, aws_endpoint, extra).await
    }

    /// `command` runs the function `name` (another build of it, or under a wrapper).
    pub async fn start_command(
        mut command: Command,
        name: &str,
        resources: &Resources,
        key_hash: &str,
        aws_endpoint: &str,
        extra: &[(&str, &str)],
    ) -> Function {
        let api = RuntimeApi::start().await;
        // As in the template, only the functions that read or write secrets are told where
        // the sealing key is: fan-out and ingest start and work without it.
        if matches!(name, "api" | "deliver") {
            let parameter = resources.sealing_key_parameter.as_deref().unwrap();
            command.env("SEALING_KEY_PARAMETER", parameter);
        }
        let mut child = command
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", format!("webhooks-test-{name}"))
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("AWS_ENDPOINT_URL", aws_endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("EVENTS_QUEUE_URL", &resources.events_queue_url)
            .env("DELIVERIES_QUEUE_URL", &resources.deliveries_queue_url)
            .env(
                "DELIVERIES_STRANDED_QUEUE_URL",
                &resources.deliveries_stranded_queue_url,
            )
            .env("DELIVERIES_DLQ_URL", &resources.deliveries_dlq_url)
            .env("SUBSCRIPTIONS_TABLE", &resources.subscriptions_table)
            .env("EVENTS_TABLE", &resources.events_table)
            .env("DELIVERIES_TABLE", &resources.deliveries_table)
            .env("API_KEYS_TABLE", &resources.api_keys_table)
            .env("PLATFORM_KEY_HASH", key_hash)
            .env("STAGE", "test")
            .env("WEBHOOKS_ALLOW_HTTP", "true")
            .env("WEBHOOKS_ALLOWED_CIDRS", "127.0.0.0/8")
            // The sweep test's deliveries went missing two hours ago.
            .env("WEBHOOKS_SWEEP_GRACE_SECONDS", "3600")
            .envs(extra.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let lines = stdout.clone();
        let pipe = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Function { api, child, stdout }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn invoke(&self, payload: Value) -> Value {
        match self.api.invoke(payload, WAIT).await {
            Ok(v) => v,
            Err(e) => panic!("the function reported an error: {e}"),
        }
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An API Gateway HTTP API (payload v2) request, from the fixture.
pub fn http_event(method: &str, path: &str, key: &str, body: Option<Value>) -> Value {
    let mut event: Value =
        serde_json::from_str(include_str!("../fixtures/apigw_v2_request.json")).unwrap();
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(path);
    event["headers"]["authorization"] = json!(format!("Bearer {key}"));
    if let Some(b) = body {
        event["body"] = json!(b.to_string());
    }
    event
}

pub fn http_answer(response: &Value) -> (u64, Value) {
    let body = response["body"].as_str().unwrap_or("null");
    (
        response["statusCode"].as_u64().unwrap(),
        serde_json::from_str(body).unwrap(),
    )
}

/// Receives from a moto queue as the event source mapping would, waiting for `n`.
pub async fn receive(queue: &SqsQueue, n: usize) -> Vec<app::ports::QueueMessage> {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while got.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} messages arrived",
            got.len()
        );
        got.extend(queue.receive(10, Duration::from_secs(1)).await.unwrap());
    }
    got
}

/// Deliveries to `subscription` of events fanned out two hours ago whose messages are gone
/// (the functions' sweep grace is one hour), as a crash or a purged queue leaves them:
/// stored pending, with their events, and nothing in any queue.
pub async fn plant_lost_deliveries(
    stores: &app::Stores,
    subscription: &domain::subscription::Subscription,
    event_ids: &[&str],
) -> Vec<(domain::event::Event, domain::delivery::Delivery)> {
    let two_hours_ago = domain::time::Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - 2 * 3_600_000,
    );
    let mut planted = Vec::new();
    for &id in event_ids {
        let event = domain::event::Event {
            id: domain::ids::EventId::parse(id).unwrap(),
            event_type: domain::catalog::EventType::known("call.ended").unwrap(),
            account_id: subscription.account_id.clone(),
            occurred_at: "2026-11-29T08:00:00Z".into(),
            received_at: two_hours_ago,
            data: json!({"call_id": id}),
        };
        stores
            .events
            .insert_batch(std::slice::from_ref(&event))
            .await
            .unwrap();
        let delivery = domain::delivery::Delivery::new(&event, subscription, two_hours_ago);
        stores
            .deliveries
            .create_batch(std::slice::from_ref(&delivery))
            .await
            .unwrap();
        planted.push((event, delivery));
    }
    planted
}
