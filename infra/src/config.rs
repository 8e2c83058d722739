use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use ipnet::IpNet;

/// The settings of the local runner, as flags or environment variables.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "webhooks",
    version,
    about = "Webhook delivery service: local runner"
)]
pub struct Config {
    /// Address to serve the ingest and management API on.
    #[arg(long, env = "WEBHOOKS_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// Directory of the durable queues and tables.
    #[arg(long, env = "WEBHOOKS_DATA_DIR", default_value = "./.webhooks")]
    pub data_dir: PathBuf,
    /// The platform key; generated and kept in the data dir when unset.
    #[arg(long, env = "WEBHOOKS_PLATFORM_KEY", hide_env_values = true)]
    pub platform_key: Option<String>,
    /// The key that seals signing secrets, credentials and custom header values at rest
    /// (32 bytes, base64); generated and kept in the data dir, owner-only, when unset.
    /// Embedded backend only: on AWS the key is kept in SSM (`SEALING_KEY_PARAMETER`).
    #[arg(long, env = "WEBHOOKS_SEALING_KEY", hide_env_values = true)]
    pub sealing_key: Option<String>,
    /// Accept plain-http endpoint URLs (for local receivers).
    #[arg(long, env = "WEBHOOKS_ALLOW_HTTP", default_value_t = false)]
    pub allow_http: bool,
    /// Address ranges exempt from the SSRF guard, comma-separated (e.g. 127.0.0.0/8).
    #[arg(
        long = "allow-cidr",
        env = "WEBHOOKS_ALLOWED_CIDRS",
        value_delimiter = ','
    )]
    pub allowed_cidrs: Vec<IpNet>,
    /// The addresses deliveries leave from, comma-separated, reported by a diagnosis so
    /// customers can allow them through their firewalls (none when unset).
    #[arg(long = "egress-ip", env = "WEBHOOKS_EGRESS_IPS", value_delimiter = ',')]
    pub egress_ips: Vec<std::net::IpAddr>,
    /// Deliver only to the `--allow-cidr` ranges, never to public addresses (a sandbox).
    #[arg(long, env = "WEBHOOKS_ONLY_ALLOWED_CIDRS", default_value_t = false)]
    pub only_allowed_cidrs: bool,
    /// Where queues and tables live: embedded SQLite, or SQS and DynamoDB (resource names
    /// from the same variables the Lambda functions read; `AWS_ENDPOINT_URL` for moto).
    #[arg(long, env = "WEBHOOKS_BACKEND", value_enum, default_value_t = Backend::Embedded)]
    pub backend: Backend,
    /// Disable an endpoint that has failed without a single success for this many seconds
    /// (default 5 days), and announce it with a `webhook.disabled` event.
    #[arg(
        long,
        env = "WEBHOOKS_AUTO_DISABLE_AFTER_SECONDS",
        default_value_t = domain::health::DEFAULT_AUTO_DISABLE_AFTER_SECONDS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub auto_disable_after_seconds: u64,
    /// Announce an endpoint as failing (`webhook.failing`) after this many failed attempts
    /// in a row, and as recovered (`webhook.recovered`) at its next success.
    #[arg(
        long,
        env = "WEBHOOKS_FAILING_AFTER_FAILURES",
        default_value_t = domain::health::DEFAULT_FAILING_AFTER_FAILURES,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub failing_after_failures: u32,
    /// Seconds a client has to send a request's headers (and an idle keep-alive connection
    /// lives): a client trickling bytes is cut off instead of holding a connection.
    #[arg(
        long,
        env = "WEBHOOKS_HTTP_HEADER_TIMEOUT_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub http_header_timeout_seconds: u64,
    /// Seconds a request may take, body and answer included (a test send waits up to its
    /// endpoint's 30 s timeout).
    #[arg(
        long,
        env = "WEBHOOKS_HTTP_REQUEST_TIMEOUT_SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub http_request_timeout_seconds: u64,
    /// Connections served at once; more wait in the listen backlog.
    #[arg(
        long,
        env = "WEBHOOKS_HTTP_MAX_CONNECTIONS",
        default_value_t = 4096,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub http_max_connections: u64,
    /// Concurrent batches taken from the deliveries queue.
    #[arg(
        long,
        env = "WEBHOOKS_DELIVER_CONCURRENCY",
        default_value_t = 32,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub deliver_concurrency: u64,
    /// Deliveries of one batch sent at once (the deliver function reads the same variable).
    #[arg(
        long,
        env = "WEBHOOKS_SEND_CONCURRENCY",
        default_value_t = app::services::DEFAULT_SEND_CONCURRENCY as u64,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub send_concurrency: u64,
    /// Attempts to one endpoint in flight at once; the rest wait without spending an attempt.
    #[arg(
        long,
        env = "WEBHOOKS_MAX_IN_FLIGHT_PER_SUBSCRIPTION",
        default_value_t = app::services::DEFAULT_MAX_IN_FLIGHT as u64,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_in_flight_per_subscription: u64,
    /// Subscriptions one account may have; creating one more answers 409 `limit_exceeded`.
    #[arg(
        long,
        env = "WEBHOOKS_MAX_SUBSCRIPTIONS_PER_ACCOUNT",
        default_value_t = domain::subscription::DEFAULT_MAX_SUBSCRIPTIONS_PER_ACCOUNT,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_subscriptions_per_account: u64,
    /// Seconds past its due time after which a pending delivery is taken to have no
    /// message, and is sent again (the deliver function reads the same variable).
    #[arg(
        long,
        env = "WEBHOOKS_SWEEP_GRACE_SECONDS",
        default_value_t = app::sweep::DEFAULT_GRACE.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub sweep_grace_seconds: u64,
    /// Seconds between two sweeps for pending deliveries left without a message (embedded
    /// backend only: on AWS the template's schedule sweeps).
    #[arg(
        long,
        env = "WEBHOOKS_SWEEP_INTERVAL_SECONDS",
        default_value_t = app::sweep::DEFAULT_INTERVAL.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub sweep_interval_seconds: u64,
    /// The SMTP server alert e-mail goes through: `smtp://host:port` (plain),
    /// `smtp://host?tls=required` (STARTTLS), `smtps://host`; a user and password in the
    /// URL log in. Alert e-mail is off when unset.
    #[arg(long, env = "WEBHOOKS_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The sender of alert e-mail.
    #[arg(
        long,
        env = "WEBHOOKS_SMTP_FROM",
        default_value = "Webhooks <webhooks@localhost.localdomain>"
    )]
    pub smtp_from: String,
    /// The base that links in alert e-mail point to (`https://hooks.example.com`); the
    /// runner's own address when unset.
    #[arg(long, env = "WEBHOOKS_CONSOLE_URL")]
    pub console_url: Option<String>,
}

impl Config {
    /// Defaults for a given data dir, as if no flag or variable were set.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let mut c = Config::parse_from(["webhooks"]);
        c.data_dir = data_dir.into();
        c
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Embedded,
    Aws,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_subscription_cap_is_a_positive_count_defaulting_to_100() {
        let parse = |args: &[&str]| Config::try_parse_from([&["webhooks"], args].concat());
        assert_eq!(parse(&[]).unwrap().max_subscriptions_per_account, 100);
        let five = parse(&["--max-subscriptions-per-account", "5"]).unwrap();
        assert_eq!(five.max_subscriptions_per_account, 5);
        assert!(parse(&["--max-subscriptions-per-account", "0"]).is_err());
        let command = Config::command();
        let arg = command
            .get_arguments()
            .find(|a| a.get_id() == "max_subscriptions_per_account")
            .unwrap();
        assert_eq!(
            arg.get_env().and_then(|e| e.to_str()),
            Some("WEBHOOKS_MAX_SUBSCRIPTIONS_PER_ACCOUNT")
        );
    }
}
