//! The management API behind API Gateway (HTTP API, payload v2). It sends test webhooks,
//! so it carries the outbound HTTP client; it writes signing secrets and credentials, so
//! its subscriptions are sealed (the key is fetched from SSM on first need, not at init).

use std::sync::Arc;

use app::ports::SystemClock;
use app::{Services, Settings};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let http = http_client::ReqwestSender::new(settings.destinations.as_ref().clone())?;
    let services = Services::new(
        store_aws::sealed_stores_from_env(store_aws::SealingKeyAccess::CreateOnFirstUse).await?,
        Arc::new(http),
        Arc::new(SystemClock),
        settings,
    );
    lambda_http::run(http_api::management_app(services)).await
}
