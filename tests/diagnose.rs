//! An endpoint's path taken apart (`POST …/webhooks/{w}/diagnose`): each phase reported,
//! against local receivers, plain and TLS (a self-signed certificate shows what it is and
//! why it is not trusted), a refused address (never connected to), a closed port and a
//! name that does not resolve.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use app::ports::{HttpSender, OutboundRequest};
use axum::http::StatusCode;
use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use domain::destination::DestinationPolicy;
use e2e::server::serve;
use e2e::{Behavior, Receiver, TestRunner};
use http_client::ReqwestSender;
use reqwest::Method;
use serde_json::json;
use tokio::net::TcpListener;

fn sender(allowed: &[&str]) -> ReqwestSender {
    ReqwestSender::new(DestinationPolicy {
        allowed: allowed.iter().map(|n| n.parse().unwrap()).collect(),
        public: true,
    })
    .unwrap()
}

fn request(url: &str) -> OutboundRequest {
    OutboundRequest {
        url: url.to_string(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from_static(br#"{"type":"webhook.test"}"#),
        timeout: Duration::from_secs(5),
    }
}

fn counting(hits: Arc<AtomicUsize>, status: StatusCode) -> Router {
    Router::new().fallback(any(move || {
        let hits = hits.clone();
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            (status, "ok")
        }
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reachable_plain_endpoint_passes_every_phase_with_its_times() {
    let hits = Arc::new(AtomicUsize::new(0));
    let (addr, _) = serve(counting(hits.clone(), StatusCode::OK)).await;
    let d = sender(&["127.0.0.0/8"])
        .diagnose(
            request(&format!("http://{addr}/hook?x=1")),
            vec!["203.0.113.9".into()],
        )
        .await;
    assert!(d.ok, "{d:?}");
    assert_eq!(d.failed_phase, None);
    assert_eq!(d.dns.as_ref().unwrap().addresses, ["127.0.0.1"]);
    assert!(d.address_guard[0].allowed);
    assert!(d.address_guard[0].reason.contains("127.0.0.0/8"));
    assert_eq!(d.connect.as_ref().unwrap().address, addr.to_string());
    assert!(d.tls.is_none());
    let http = d.http.unwrap();
    assert_eq!(http.status_code, Some(200));
    assert!(http.time_to_first_byte_ms.is_some());
    assert_eq!(d.egress_ips, ["203.0.113.9"]);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the probe reached the receiver once"
    );

    // A status other than 2xx is the HTTP phase's failure.
    let (failing, _) = serve(counting(Arc::default(), StatusCode::INTERNAL_SERVER_ERROR)).await;
    let d = sender(&["127.0.0.0/8"])
        .diagnose(request(&format!("http://{failing}/")), vec![])
        .await;
    assert!(!d.ok);
    assert_eq!(d.failed_phase.as_deref(), Some("http"));
    assert_eq!(d.http.unwrap().status_code, Some(500));
    assert!(d.hint.unwrap().contains("500"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_certificate_is_described_and_its_verification_error_shown() {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            // The client gives up on the certificate: the handshake fails, as it should.
            let _ = acceptor.accept(tcp).await;
        }
    });

    let d = sender(&["127.0.0.0/8"])
        .diagnose(request(&format!("https://{addr}/hook")), vec![])
        .await;
    assert!(!d.ok);
    assert_eq!(d.failed_phase.as_deref(), Some("tls"), "{d:?}");
    assert!(d.connect.unwrap().error.is_none());
    let tls = d.tls.unwrap();
    let error = tls.error.unwrap();
    assert!(error.contains("UnknownIssuer"), "{error}");
    assert_eq!(tls.protocol, None);
    let cert = tls
        .certificate
        .expect("the presented certificate is described");
    assert!(cert.subject.contains("rcgen"), "{}", cert.subject);
    assert_eq!(cert.subject, cert.issuer, "self-signed");
    assert_eq!(cert.dns_names, ["127.0.0.1"]);
    assert!(cert.days_left > 300, "{}", cert.days_left);
    assert!(
        d.http.is_none(),
        "no request goes over an untrusted connection"
    );
    assert_eq!(handshakes.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_address_is_reported_and_never_connected_to() {
    let hits = Arc::new(AtomicUsize::new(0));
    let (addr, connections) = serve(counting(hits.clone(), StatusCode::OK)).await;
    let guarded = ReqwestSender::new(DestinationPolicy::default()).unwrap();
    for url in [
        format!("http://{addr}/"),
        format!("http://localhost:{}/", addr.port()),
    ] {
        let d = guarded.diagnose(request(&url), vec![]).await;
        assert_eq!(
            d.failed_phase.as_deref(),
            Some("address_guard"),
            "{url}: {d:?}"
        );
        assert!(!d.address_guard.is_empty());
        // Refused, and not shown: a name could point anywhere, and its answers would map
        // what deliveries may not reach.
        for verdict in &d.address_guard {
            assert!(!verdict.allowed, "{url}: {verdict:?}");
            assert_eq!(verdict.address, "not shown");
            assert!(!verdict.reason.contains("127."), "{verdict:?}");
        }
        let dns = d.dns.as_ref().unwrap();
        assert!(dns.addresses.is_empty(), "{url}: {dns:?}");
        assert_eq!(dns.refused, d.address_guard.len());
        assert!(d.connect.is_none() && d.http.is_none(), "{url}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a refused address was probed"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_and_an_unknown_name_fail_their_own_phase() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let d = sender(&["127.0.0.0/8"])
        .diagnose(request(&format!("http://{closed_addr}/")), vec![])
        .await;
    assert_eq!(d.failed_phase.as_deref(), Some("connect"), "{d:?}");
    assert!(d.connect.unwrap().error.is_some());
    assert!(d.hint.unwrap().contains("nothing accepts"));

    let d = sender(&[])
        .diagnose(request("https://no-such-host.invalid/hook"), vec![])
        .await;
    assert_eq!(d.failed_phase.as_deref(), Some("dns"), "{d:?}");
    assert!(d.dns.unwrap().error.is_some());
    assert!(d.address_guard.is_empty() && d.connect.is_none());
}

/// Through the API: the route runs the subscription's own request (signed, its headers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_diagnoses_a_webhook_with_a_signed_test_request() {
    let t = TestRunner::start().await;
    let r = Receiver::start().await;
    let sub = t
        .create_webhook(
            "acct_g",
            json!({"url": r.url("g", Behavior::Status(204)), "event_types": ["*"]}),
        )
        .await;
    let wh = sub["id"].as_str().unwrap();
    let (status, d) = t
        .call(
            Method::POST,
            &format!("/v1/accounts/acct_g/webhooks/{wh}/diagnose"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["ok"], true, "{d}");
    assert_eq!(d["http"]["status_code"], 204);
    assert!(d["dns"]["duration_ms"].is_u64());
    let got = r.received("g");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["type"], "webhook.test");
    assert!(e2e::verify_signature(
        sub["secret"].as_str().unwrap(),
        &got[0]
    ));
    // Not a delivery: nothing is logged.
    let (_, deliveries) = t
        .call(
            Method::GET,
            &format!("/v1/accounts/acct_g/webhooks/{wh}/deliveries"),
            None,
            None,
        )
        .await;
    assert_eq!(deliveries["data"], json!([]));
    let (status, _) = t
        .call(
            Method::POST,
            "/v1/accounts/acct_g/webhooks/wh_nope/diagnose",
            None,
            None,
        )
        .await;
    assert_eq!(status, 404);
}
