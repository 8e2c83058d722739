//! The delivery client: reqwest over rustls with a keep-alive pool, the SSRF guard as its
//! resolver, no proxy, no redirects, and response bodies read only up to a cap.

use std::error::Error as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use app::ports::{Fetched, HttpSender, OutboundRequest, SendError, SendResult};
use domain::delivery::{logged_response_headers, truncate_body, MAX_LOGGED_RESPONSE_BYTES};
use domain::destination::DestinationPolicy;
use domain::diagnosis::Diagnosis;

pub use guard::{GuardedResolver, RefusedDestination, UnresolvedHost};

mod diagnose;
pub use diagnose::TOTAL_BUDGET as TOTAL_DIAGNOSIS_BUDGET;
mod guard;

/// Bytes of a response body read at most; the rest is never read, so an endless body costs
/// neither memory nor time.
pub const MAX_READ_RESPONSE_BYTES: usize = 64 * 1024;
pub const USER_AGENT: &str = concat!("VoiceHooks-Webhooks/", env!("CARGO_PKG_VERSION"));

pub struct ReqwestSender {
    client: reqwest::Client,
    policy: Arc<DestinationPolicy>,
}

impl ReqwestSender {
    pub fn new(policy: DestinationPolicy) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            // No proxy, whatever HTTP_PROXY, HTTPS_PROXY or ALL_PROXY say: a proxy would
            // resolve the customer's host itself, so the guard below would never see the
            // addresses and the proxy would connect wherever the name points, our own
            // network included.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .user_agent(USER_AGENT)
            .build()?;
        Ok(ReqwestSender { client, policy })
    }

    /// A literal IP host never reaches the resolver, so it is checked here.
    fn refuse_literal(&self, url: &reqwest::Url) -> Option<SendError> {
        let ip: IpAddr = match url.host()? {
            url::Host::Ipv4(v4) => v4.into(),
            url::Host::Ipv6(v6) => v6.into(),
            url::Host::Domain(_) => return None,
        };
        (!self.policy.allows(ip)).then(|| SendError::Refused(format!("{ip} may not be reached")))
    }
}

fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// What went wrong, without the URL: a query string may carry the customer's token, and
/// errors end up in logs and in the attempt log. The kind comes from the error chain's
/// types (the guard's refusal, the resolver's failure, the TLS library's error, the
/// socket's error kind), never from the wording of a message.
fn classify_error(err: reqwest::Error) -> SendError {
    let err = err.without_url();
    let detail = match err.source() {
        Some(s) => format!("{err}: {s}"),
        None => err.to_string(),
    };
    if err.is_timeout() {
        return SendError::Timeout(detail);
    }
    let mut source = err.source();
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<RefusedDestination>() {
            return SendError::Refused(refused.to_string());
        }
        if s.is::<UnresolvedHost>() {
            return SendError::Dns(detail);
        }
        if is_tls(s) {
            return SendError::Tls(detail);
        }
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return SendError::ConnectionRefused(detail);
        }
        source = s.source();
    }
    SendError::Network(detail)
}

/// Whether `err` is the TLS library's, directly or wrapped in I/O errors (which hide what
/// they wrap from `source()`: the TLS stream wraps it twice).
fn is_tls(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = err;
    loop {
        if current.is::<rustls::Error>() {
            return true;
        }
        match current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => current = inner,
            None => return false,
        }
    }
}

#[async_trait]
impl HttpSender for ReqwestSender {
    async fn diagnose(&self, request: OutboundRequest, egress_ips: Vec<String>) -> Diagnosis {
        diagnose::diagnose(&self.policy, request, egress_ips).await
    }

    async fn send(&self, request: OutboundRequest) -> SendResult {
        let exchange = self.exchange(request).await;
        let text = exchange
            .body
            .as_deref()
            .map(|body| truncate_body(&String::from_utf8_lossy(body), MAX_LOGGED_RESPONSE_BYTES));
        SendResult {
            status: exchange.status,
            headers: exchange.headers,
            latency: exchange.latency,
            body: text,
            retry_after: exchange.retry_after,
            error: exchange.error,
        }
    }

    async fn fetch(&self, request: OutboundRequest) -> Result<Fetched, SendError> {
        let exchange = self.exchange(request).await;
        match (exchange.status, exchange.error) {
            (Some(status), None) => Ok(Fetched {
                status,
                body: String::from_utf8_lossy(&exchange.body.unwrap_or_default()).into_owned(),
            }),
            (_, Some(error)) => Err(error),
            (None, None) => Err(SendError::Network("no response".into())),
        }
    }
}

/// One request's outcome, its body as read (up to `MAX_READ_RESPONSE_BYTES`).
struct Exchange {
    status: Option<u16>,
    headers: Vec<(String, String)>,
    latency: Duration,
    body: Option<Vec<u8>>,
    retry_after: Option<Duration>,
    error: Option<SendError>,
}

impl ReqwestSender {
    async fn exchange(&self, request: OutboundRequest) -> Exchange {
        let started = Instant::now();
        let failed = |error: SendError| Exchange {
            status: None,
            headers: Vec::new(),
            latency: started.elapsed(),
            body: None,
            retry_after: None,
            error: Some(error),
        };
        let url = match reqwest::Url::parse(&request.url) {
            Ok(u) => u,
            Err(e) => return failed(SendError::Refused(format!("invalid URL: {e}"))),
        };
        if let Some(refused) = self.refuse_literal(&url) {
            return failed(refused);
        }
        let mut builder = self
            .client
            .post(url)
            .timeout(request.timeout)
            .body(request.body);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let deadline = started + request.timeout;
        let mut response = match builder.send().await {
            Ok(r) => r,
            Err(e) => return failed(classify_error(e)),
        };
        let status = response.status().as_u16();
        let headers = logged_response_headers(
            response
                .headers()
                .iter()
                .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))),
        );
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut body = Vec::new();
        let mut error = None;
        while body.len() < MAX_READ_RESPONSE_BYTES {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, response.chunk()).await {
                Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
                Ok(Ok(None)) => break,
                Ok(Err(e)) => {
                    error = Some(classify_error(e));
                    break;
                }
                Err(_) => {
                    error = Some(SendError::Timeout("reading the response body".into()));
                    break;
                }
            }
        }
        body.truncate(MAX_READ_RESPONSE_BYTES);
        Exchange {
            status: Some(status),
            headers,
            latency: started.elapsed(),
            body: Some(body),
            retry_after,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
