//! Delivery: deliveries queue batches are signed, sent, logged and retried. The same
//! function marks dead what the deliveries queue gave up on (the stranded queue) and runs
//! the scheduled sweep for deliveries left without a message. It opens the
//! sealed signing secrets and credentials (and reseals a subscription it disables), with
//! the key fetched from SSM on first need, not at init.

use std::sync::Arc;

use app::config::Vars;
use app::deliver_function::{self, queue_name, Invocation, Response};
use app::ports::SystemClock;
use app::{Services, Settings};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let http = http_client::ReqwestSender::new(settings.destinations.as_ref().clone())?;
    let services = Services::new(
        store_aws::sealed_stores_from_env(store_aws::SealingKeyAccess::OpenOnly).await?,
        Arc::new(http),
        Arc::new(SystemClock),
        settings,
    );
    let stranded_url = Vars::from_env().required("DELIVERIES_STRANDED_QUEUE_URL")?;
    let stranded_queue = queue_name(&stranded_url).to_string();
    lambda_runtime::run(service_fn(|event: LambdaEvent<Invocation>| {
        let services = services.clone();
        let stranded_queue = stranded_queue.clone();
        // Per-message failures are in a batch's response; a batch itself never fails.
        async move {
            Ok::<Response, Error>(
                deliver_function::handle(&services, &stranded_queue, event.payload).await?,
            )
        }
    }))
    .await
}
