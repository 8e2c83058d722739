//! Fan-out: events queue batches become deliveries.

use std::sync::Arc;

use app::handle_events;
use app::ports::{NoOutboundHttp, SystemClock};
use app::{Services, Settings};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let services = Services::new(
        store_aws::stores_from_env().await?,
        Arc::new(NoOutboundHttp),
        Arc::new(SystemClock),
        Settings::from_env()?,
    );
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let services = services.clone();
        // Per-message failures are in the response; the batch itself never fails.
        async move { Ok::<SqsBatchResponse, Error>(handle_events(&services, event.payload).await) }
    }))
    .await
}
