//! An endpoint's path taken apart: the same request a delivery sends, made one phase at a
//! time so each can be timed and, when it fails, named. It trusts what deliveries trust
//! (the same root certificates) and reaches only what they may reach (the same address
//! guard, applied before any connection), so it can neither probe a refused address nor
//! succeed where a delivery would fail.
//!
//! Nor may it tell more than a delivery would about what it may not reach: a refused
//! address is reported as refused, never shown (a name a customer controls could point at
//! our own network, and its answers would map it), and a non-HTTP answer is not echoed.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use app::ports::OutboundRequest;
use domain::destination::DestinationPolicy;
use domain::diagnosis::{
    AddressVerdict, CertificateInfo, ConnectPhase, Diagnosis, DnsPhase, HttpPhase, TlsPhase,
};
use domain::time::Timestamp;

use super::USER_AGENT;

/// The most a whole diagnosis takes, within API Gateway's 29 s.
pub const TOTAL_BUDGET: Duration = Duration::from_secs(24);

/// What a refused address shows instead of itself.
const HIDDEN: &str = "not shown";

/// Runs the diagnosis; every phase is bounded by the request's timeout.
pub async fn diagnose(
    policy: &DestinationPolicy,
    request: OutboundRequest,
    egress_ips: Vec<String>,
) -> Diagnosis {
    let mut d = Diagnosis {
        url: request.url.clone(),
        egress_ips,
        ..Diagnosis::default()
    };
    let url = match url::Url::parse(&request.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
        _ => {
            d.fail("url", "the endpoint's URL cannot be parsed as http(s)");
            return d;
        }
    };
    let https = url.scheme() == "https";
    let port = url
        .port_or_known_default()
        .unwrap_or(if https { 443 } else { 80 });
    let host = url.host_str().unwrap_or_default().to_string();
    // Each phase waits at most the request's timeout, and all of them together at most
    // `TOTAL_BUDGET` (a host with many addresses that drop packets must not outlast the API).
    let deadline = Instant::now() + TOTAL_BUDGET;
    let budget = |phase: Duration| phase.min(deadline.saturating_duration_since(Instant::now()));
    let timeout = request.timeout;

    // DNS (a literal address resolves to itself).
    let started = Instant::now();
    let literal: Option<IpAddr> = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(v4.into()),
        Some(url::Host::Ipv6(v6)) => Some(v6.into()),
        _ => None,
    };
    let addresses: Vec<SocketAddr> = match literal {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => match tokio::time::timeout(
            budget(timeout),
            tokio::net::lookup_host((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(found)) => dedup(found.collect()),
            Ok(Err(e)) => {
                d.dns = Some(DnsPhase {
                    duration_ms: ms(started),
                    addresses: vec![],
                    refused: 0,
                    error: Some(e.to_string()),
                });
                d.fail(
                    "dns",
                    format!("{host} does not resolve: check the host name and its DNS records"),
                );
                return d;
            }
            Err(_) => {
                d.dns = Some(DnsPhase {
                    duration_ms: ms(started),
                    addresses: vec![],
                    refused: 0,
                    error: Some(format!("no answer within {} s", timeout.as_secs())),
                });
                d.fail("dns", "the name servers did not answer in time");
                return d;
            }
        },
    };
    let dns_ms = ms(started);

    // The address guard, on every address: only allowed ones are ever connected to.
    let mut allowed = Vec::new();
    for address in &addresses {
        let decision = policy.decide(address.ip());
        if decision.allowed {
            allowed.push(*address);
            d.address_guard.push(AddressVerdict {
                address: address.ip().to_string(),
                allowed: true,
                reason: decision.reason,
            });
        } else {
            d.address_guard.push(AddressVerdict {
                address: HIDDEN.into(),
                allowed: false,
                reason: "not an address deliveries may reach (private, reserved, or outside this deployment's ranges)".into(),
            });
        }
    }
    d.dns = Some(DnsPhase {
        duration_ms: dns_ms,
        addresses: allowed.iter().map(|a| a.ip().to_string()).collect(),
        refused: addresses.len() - allowed.len(),
        error: None,
    });
    if allowed.is_empty() {
        d.fail(
            "address_guard",
            "every address of this host is in a range deliveries may not reach: point it at a public address",
        );
        return d;
    }

    // TCP: each allowed address in turn until one answers, as a delivery's client does.
    let mut connected = None;
    for &target in &allowed {
        let started = Instant::now();
        let outcome = tokio::time::timeout(budget(timeout), TcpStream::connect(target)).await;
        let (error, hint) = match outcome {
            Ok(Ok(tcp)) => {
                d.connect = Some(ConnectPhase {
                    address: target.to_string(),
                    duration_ms: ms(started),
                    error: None,
                });
                connected = Some(tcp);
                break;
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => (
                e.to_string(),
                "nothing accepts connections on this port: is the receiver running, and listening on this port?",
            ),
            Ok(Err(e)) => (
                e.to_string(),
                "the connection failed: check firewalls and security groups between us and the endpoint",
            ),
            Err(_) => (
                format!("no answer within {} s", timeout.as_secs()),
                "the connection timed out: a firewall may drop our packets; allow our egress addresses",
            ),
        };
        d.connect = Some(ConnectPhase {
            address: target.to_string(),
            duration_ms: ms(started),
            error: Some(error),
        });
        d.fail("connect", hint);
    }
    let Some(tcp) = connected else {
        return d;
    };
    // An address that failed before the one that answered is not the endpoint's failure.
    d.failed_phase = None;
    d.hint = None;
    let _ = tcp.set_nodelay(true);

    if !https {
        http_phase(&mut d, tcp, &url, &request, budget(timeout)).await;
        return d;
    }

    // TLS, trusting what deliveries trust; the certificate is kept even when it is not.
    let started = Instant::now();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let recorder = match WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    {
        Ok(inner) => Arc::new(RecordingVerifier {
            inner,
            seen: Mutex::new(None),
        }),
        Err(e) => {
            d.fail("tls", format!("the TLS client could not be set up: {e}"));
            return d;
        }
    };
    let config = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone())
            .with_no_client_auth(),
        Err(e) => {
            d.fail("tls", format!("the TLS client could not be set up: {e}"));
            return d;
        }
    };
    let server_name = match literal {
        Some(ip) => ServerName::IpAddress(ip.into()),
        None => match ServerName::try_from(host.clone()) {
            Ok(name) => name,
            Err(e) => {
                d.fail("tls", format!("{host} is not a valid TLS server name: {e}"));
                return d;
            }
        },
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake =
        tokio::time::timeout(budget(timeout), connector.connect(server_name, tcp)).await;
    let certificate = recorder.certificate();
    match handshake {
        Ok(Ok(tls)) => {
            let protocol = tls
                .get_ref()
                .1
                .protocol_version()
                .and_then(|v| v.as_str())
                .map(str::to_string);
            d.tls = Some(TlsPhase {
                duration_ms: ms(started),
                protocol,
                certificate,
                error: None,
            });
            http_phase(&mut d, tls, &url, &request, budget(timeout)).await;
        }
        Ok(Err(e)) => {
            let error = tls_error(&e);
            d.tls = Some(TlsPhase {
                duration_ms: ms(started),
                protocol: None,
                certificate,
                error: Some(error.clone()),
            });
            d.fail("tls", format!("the TLS handshake failed ({error}): the endpoint needs a certificate from a public authority, valid now, for this host name"));
        }
        Err(_) => {
            d.tls = Some(TlsPhase {
                duration_ms: ms(started),
                protocol: None,
                certificate,
                error: Some(format!("no handshake within {} s", timeout.as_secs())),
            });
            d.fail(
                "tls",
                "the TLS handshake timed out: is this port serving TLS?",
            );
        }
    }
    d
}

/// Sends the request over the connection and reads up to the status line.
async fn http_phase<S>(
    d: &mut Diagnosis,
    mut stream: S,
    url: &url::Url,
    request: &OutboundRequest,
    timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: {USER_AGENT}\r\ncontent-length: {}\r\nconnection: close\r\n",
        request.body.len()
    );
    for (name, value) in &request.headers {
        // A header that would break the request's framing is left out, not sent.
        if name.contains(['\r', '\n', ':']) || value.contains(['\r', '\n']) {
            continue;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let started = Instant::now();
    let exchange = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&request.body).await?;
        stream.flush().await?;
        let mut first = [0u8; 1];
        let n = stream.read(&mut first).await?;
        let ttfb = started.elapsed();
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection closed without an answer",
            ));
        }
        // The status line: "HTTP/1.1 200 OK".
        let mut line = first.to_vec();
        let mut byte = [0u8; 1];
        while line.len() < 256 && !line.ends_with(b"\n") {
            if stream.read(&mut byte).await? == 0 {
                break;
            }
            line.push(byte[0]);
        }
        Ok::<_, std::io::Error>((ttfb, String::from_utf8_lossy(&line).to_string()))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok((ttfb, line))) => {
            let status = line
                .split_whitespace()
                .nth(1)
                .and_then(|code| code.parse::<u16>().ok())
                .filter(|code| (100..=999).contains(code));
            d.http = Some(HttpPhase {
                status_code: status,
                time_to_first_byte_ms: Some(ttfb.as_millis() as u64),
                error: status
                    .is_none()
                    .then(|| "the answer is not HTTP".to_string()),
            });
            match status {
                Some(code) if (200..300).contains(&code) => {
                    d.ok = true;
                }
                Some(code) => d.fail(
                    "http",
                    format!("the endpoint answered {code}: check its logs (it received a signed webhook.test event)"),
                ),
                None => d.fail("http", "the endpoint did not answer in HTTP"),
            }
        }
        Ok(Err(e)) => {
            d.http = Some(HttpPhase {
                status_code: None,
                time_to_first_byte_ms: None,
                error: Some(e.to_string()),
            });
            d.fail("http", "the connection broke before an answer");
        }
        Err(_) => {
            d.http = Some(HttpPhase {
                status_code: None,
                time_to_first_byte_ms: None,
                error: Some(format!("no answer within {} s", timeout.as_secs())),
            });
            d.fail(
                "http",
                "the endpoint did not answer within the subscription's timeout: answer first, process after",
            );
        }
    }
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

fn dedup(mut addresses: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut seen = std::collections::HashSet::new();
    addresses.retain(|a| seen.insert(*a));
    addresses
}

/// The TLS library's own error where the I/O error carries one (its message names the
/// cause: `UnknownIssuer`, `Expired`, `NotValidForName`…).
fn tls_error(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => tls.to_string(),
        None => e.to_string(),
    }
}

/// The standard verifier, recording the certificate it was shown.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<Vec<u8>>>,
}

impl RecordingVerifier {
    fn certificate(&self) -> Option<CertificateInfo> {
        let der = self.seen.lock().ok()?.clone()?;
        describe_certificate(&der)
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(end_entity.to_vec());
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Subject, issuer, names and validity of a DER certificate.
fn describe_certificate(der: &[u8]) -> Option<CertificateInfo> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let validity = cert.validity();
    let at = |t: &ASN1Time| Timestamp::from_millis(t.timestamp().saturating_mul(1000));
    let not_after = at(&validity.not_after);
    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    let dns_names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(n) => Some(n.to_string()),
                    GeneralName::IPAddress(bytes) => ip_of(bytes).map(|ip| ip.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(CertificateInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        dns_names,
        not_before: at(&validity.not_before).to_rfc3339(),
        not_after: not_after.to_rfc3339(),
        days_left: (validity.not_after.timestamp() - now_secs).div_euclid(86_400),
    })
}

fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}
