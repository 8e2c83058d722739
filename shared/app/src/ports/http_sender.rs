use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use domain::delivery::FailureCause;
use domain::diagnosis::Diagnosis;

#[derive(Debug, Clone)]
pub struct OutboundRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// No complete response within the timeout.
    Timeout(String),
    /// The host name did not resolve.
    Dns(String),
    /// Nothing accepted the connection.
    ConnectionRefused(String),
    /// The TLS handshake failed.
    Tls(String),
    /// Any other failure to connect, or the connection broke.
    Network(String),
    /// The destination is not allowed (SSRF guard); retrying cannot help.
    Refused(String),
    /// No OAuth access token, so the endpoint was not called. `refused`: the guard refused
    /// the token endpoint, and retrying cannot help.
    OAuthToken { detail: String, refused: bool },
}

impl SendError {
    /// How error analysis groups it.
    pub fn cause(&self) -> FailureCause {
        match self {
            SendError::Timeout(_) => FailureCause::Timeout,
            SendError::Dns(_) => FailureCause::Dns,
            SendError::ConnectionRefused(_) => FailureCause::ConnectionRefused,
            SendError::Tls(_) => FailureCause::Tls,
            SendError::Network(_) => FailureCause::Connection,
            SendError::Refused(_) => FailureCause::BlockedAddress,
            SendError::OAuthToken { .. } => FailureCause::OAuthToken,
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Timeout(m) => write!(f, "timeout: {m}"),
            SendError::Dns(m) => write!(f, "DNS error: {m}"),
            SendError::ConnectionRefused(m) => write!(f, "connection refused: {m}"),
            SendError::Tls(m) => write!(f, "TLS error: {m}"),
            SendError::Network(m) => write!(f, "network error: {m}"),
            SendError::Refused(m) => write!(f, "destination refused: {m}"),
            SendError::OAuthToken { detail, .. } => write!(f, "OAuth token: {detail}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SendResult {
    pub status: Option<u16>,
    /// The response's headers as the attempt log keeps them (`logged_response_headers`).
    pub headers: Vec<(String, String)>,
    pub latency: Duration,
    /// The start of the response body, already cut to the logged size.
    pub body: Option<String>,
    pub retry_after: Option<Duration>,
    pub error: Option<SendError>,
}

impl SendResult {
    /// No response: `error` after `latency`.
    pub fn failed(error: SendError, latency: Duration) -> SendResult {
        SendResult {
            status: None,
            headers: Vec::new(),
            latency,
            body: None,
            retry_after: None,
            error: Some(error),
        }
    }
}

/// A response read whole (see `HttpSender::fetch`).
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: u16,
    pub body: String,
}

/// Sends one webhook request. Never follows redirects; never returns an `Err`: every
/// failure is an outcome to log.
#[async_trait]
pub trait HttpSender: Send + Sync {
    async fn send(&self, request: OutboundRequest) -> SendResult;

    /// Sends `request` as `send` does (same guard, no redirects) and answers the status and
    /// the body whole, up to the read cap: for an OAuth token endpoint, whose answer is
    /// read, not logged. A sender that cannot reach the network says so.
    async fn fetch(&self, request: OutboundRequest) -> Result<Fetched, SendError> {
        let _ = request;
        Err(SendError::Network(
            "this process was built to send no requests".into(),
        ))
    }

    /// Sends `request` as `send` would, one phase at a time (DNS, the address guard, TCP,
    /// TLS, HTTP), and reports each. A sender that cannot take the path apart says so.
    async fn diagnose(&self, request: OutboundRequest, egress_ips: Vec<String>) -> Diagnosis {
        let mut diagnosis = Diagnosis {
            url: request.url,
            egress_ips,
            ..Diagnosis::default()
        };
        diagnosis.fail("url", "this process cannot diagnose endpoints");
        diagnosis
    }
}

/// The sender of a process that sends no webhooks (ingest, fan-out): those functions then
/// link no HTTP client. Reaching it is a wiring mistake; the attempt fails as retryable, so
/// nothing is lost.
pub struct NoOutboundHttp;

#[async_trait]
impl HttpSender for NoOutboundHttp {
    async fn send(&self, request: OutboundRequest) -> SendResult {
        tracing::error!(url = %request.url, "this process was built to send no webhooks");
        SendResult::failed(
            SendError::Network("this process sends no webhooks".to_string()),
            Duration::ZERO,
        )
    }
}
