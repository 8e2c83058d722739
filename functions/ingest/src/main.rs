//! Ingest: `POST /v1/events` behind API Gateway (HTTP API, payload v2).

use std::sync::Arc;

use app::ports::{NoOutboundHttp, SystemClock};
use app::{Services, Settings};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let services = Services::new(
        store_aws::stores_from_env().await?,
        Arc::new(NoOutboundHttp),
        Arc::new(SystemClock),
        Settings::from_env()?,
    );
    lambda_http::run(http_api::ingest_app(services)).await
}
