//! The management API behind API Gateway (HTTP API, payload v2).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let services = shared::adapters::aws::services_from_env().await?;
    lambda_http::run(shared::api::management_app(services)).await
}
