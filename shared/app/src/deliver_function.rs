//! What the deliver function is invoked with, and which use case takes it: batches of the
//! deliveries queue, batches of the stranded queue (what the deliveries queue gave up on),
//! and the sweep's schedule. One function, so the three share its code, its build and its
//! grants on the deliveries table and queues.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use serde::{Deserialize, Serialize};

use crate::sweep::{sweep, SweepReport, FUNCTION_BUDGET};
use crate::{handle_deliveries, handle_stranded, Result, Services};

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Invocation {
    /// An EventBridge schedule's event: `{"detail-type": "Scheduled Event", …}`.
    Scheduled(ScheduledEvent),
    Queue(SqsEvent),
}

#[derive(Debug, Deserialize)]
pub struct ScheduledEvent {
    #[serde(rename = "detail-type")]
    pub detail_type: String,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Response {
    Batch(SqsBatchResponse),
    Sweep(SweepReport),
}

/// The name of a queue from its URL (`https://…/<account>/<name>`) or ARN
/// (`arn:aws:sqs:<region>:<account>:<name>`).
pub fn queue_name(url_or_arn: &str) -> &str {
    url_or_arn.rsplit(['/', ':']).next().unwrap_or(url_or_arn)
}

/// Runs what `invocation` asks. A batch from the queue named `stranded_queue` goes to
/// `handle_stranded`, any other to `handle_deliveries` (an event source mapping hands a
/// function one queue's messages at a time). Only a sweep can fail as a whole, and is then
/// retried by its schedule's asynchronous invocation.
pub async fn handle(
    services: &Services,
    stranded_queue: &str,
    invocation: Invocation,
) -> Result<Response> {
    match invocation {
        Invocation::Scheduled(_) => Ok(Response::Sweep(
            sweep(services, services.settings.sweep_grace, FUNCTION_BUDGET).await?,
        )),
        Invocation::Queue(batch) => {
            let from_stranded = batch.records.first().is_some_and(|r| {
                r.event_source_arn
                    .as_deref()
                    .is_some_and(|arn| queue_name(arn) == stranded_queue)
            });
            Ok(Response::Batch(if from_stranded {
                handle_stranded(services, batch).await
            } else {
                handle_deliveries(services, batch).await
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocations_are_told_apart() {
        let scheduled = serde_json::json!({
            "version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "1", "time": "2026-11-29T00:00:00Z", "region": "eu-west-1",
            "resources": [], "detail": {}
        });
        assert!(matches!(
            serde_json::from_value::<Invocation>(scheduled).unwrap(),
            Invocation::Scheduled(_)
        ));
        let batch = serde_json::json!({"Records": []});
        assert!(matches!(
            serde_json::from_value::<Invocation>(batch).unwrap(),
            Invocation::Queue(_)
        ));
        assert!(serde_json::from_value::<Invocation>(serde_json::json!({"x": 1})).is_err());
        assert_eq!(
            queue_name("arn:aws:sqs:eu-west-1:123:webhooks-prod-deliveries-stranded"),
            "webhooks-prod-deliveries-stranded"
        );
        assert_eq!(
            queue_name("https://sqs.eu-west-1.amazonaws.com/123/webhooks-prod-deliveries-stranded"),
            "webhooks-prod-deliveries-stranded"
        );
    }
}
