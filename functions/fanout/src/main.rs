//! Fan-out: events queue batches become deliveries.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use shared::handlers::handle_events;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let services = shared::adapters::aws::services_from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let services = services.clone();
        // Per-message failures are in the response; the batch itself never fails.
        async move { Ok::<SqsBatchResponse, Error>(handle_events(&services, event.payload).await) }
    }))
    .await
}
