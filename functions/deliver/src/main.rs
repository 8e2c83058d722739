//! Delivery: deliveries queue batches are signed, sent, logged and retried.

use std::sync::Arc;

use app::handle_deliveries;
use app::ports::SystemClock;
use app::{Services, Settings};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let http = http_client::ReqwestSender::new(settings.destinations.as_ref().clone())?;
    let services = Services::new(
        store_aws::stores_from_env().await?,
        Arc::new(http),
        Arc::new(SystemClock),
        settings,
    );
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let services = services.clone();
        // Per-message failures are in the response; the batch itself never fails.
        async move { Ok::<SqsBatchResponse, Error>(handle_deliveries(&services, event.payload).await) }
    }))
    .await
}
