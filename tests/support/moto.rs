//! The AWS backend on a moto server: `./test.sh` starts one and names it in
//! `WEBHOOKS_TEST_MOTO_ENDPOINT`. A test that needs it and finds none fails, loudly.

use store_aws::{provision, Clients, Resources};

pub const ENDPOINT_VAR: &str = "WEBHOOKS_TEST_MOTO_ENDPOINT";

pub fn endpoint() -> String {
    std::env::var(ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!(
            "{ENDPOINT_VAR} is not set: these tests need a moto server. \
             Run ./test.sh, which installs and starts one."
        )
    })
}

/// SDK clients pointed at moto with test credentials.
pub async fn clients() -> Clients {
    Clients::new(&config().await)
}

/// The SDK configuration that points at moto with test credentials.
pub async fn config() -> aws_config::SdkConfig {
    config_at(&endpoint()).await
}

/// The same, for a moto (or a proxy in front of it) at `endpoint`.
pub async fn config_at(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "moto",
        ))
        .load()
        .await
}

/// A unique prefix, so tests running at once never share a queue or table.
pub fn unique_prefix(name: &str) -> String {
    let mut b = [0u8; 4];
    domain::random::Random::fill(&app::ports::OsRandom, &mut b);
    // SQS names are at most 80 characters; the longest suffix added is "deliveries-dlq".
    let short: String = name.chars().take(24).collect();
    format!("t{}-{short}-", u32::from_le_bytes(b))
}

/// Every queue and table of a fresh deployment, and the name of its sealing key's
/// parameter (created on first use).
pub async fn deployment(name: &str) -> (Clients, Resources) {
    let clients = clients().await;
    let resources = provision::create_all(&clients, &unique_prefix(name))
        .await
        .expect("moto accepts the queues and tables");
    (clients, resources)
}
