//! The delivery client ignores proxy variables. A proxy would resolve the customer's host
//! itself, past the SSRF guard (the client's resolver), so a delivery to a name that
//! points inside our network would get there. This file is its own test binary because it
//! sets process-wide environment variables.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use app::ports::{HttpSender, OutboundRequest, SendError};
use domain::destination::DestinationPolicy;
use http_client::ReqwestSender;

/// A listener that records the first line of every connection made to it (for a proxy,
/// the request line or CONNECT naming the target) and then hangs up.
struct RecordingProxy {
    seen: Mutex<Vec<String>>,
}

impl RecordingProxy {
    /// What reached the proxy for the receiver on `port` (the tests run in parallel and
    /// share the proxy), and any connection that named no target.
    fn seen_for(&self, port: u16) -> Vec<String> {
        // "POST http://host:port/path HTTP/1.1" or "CONNECT host:port HTTP/1.1"
        let (in_url, in_connect) = (format!(":{port}/"), format!(":{port} "));
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|line| {
                line.contains(&in_url) || line.contains(&in_connect) || !line.contains(':')
            })
            .cloned()
            .collect()
    }
}

/// Starts the recording proxy and points every proxy variable reqwest reads at it. Runs
/// once, before any client in this binary is built; every test calls it first.
fn proxy() -> &'static RecordingProxy {
    static PROXY: OnceLock<&'static RecordingProxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let proxy: &'static RecordingProxy = Box::leak(Box::new(RecordingProxy {
            seen: Mutex::new(Vec::new()),
        }));
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut first_line = String::new();
                let _ = BufReader::new(&stream).read_line(&mut first_line);
                let line = first_line.trim_end();
                proxy.seen.lock().unwrap().push(if line.is_empty() {
                    "<a connection>".to_string()
                } else {
                    line.to_string()
                });
            }
        });
        for name in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            std::env::set_var(name, &url);
        }
        // Nothing may exempt the test's hosts from the proxy, and reqwest ignores
        // HTTP_PROXY when it thinks it runs as a CGI script.
        for name in ["NO_PROXY", "no_proxy", "REQUEST_METHOD"] {
            std::env::remove_var(name);
        }
        proxy
    })
}

/// A plain HTTP server answering every request with 200, counting the requests.
fn receiver() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut reader = BufReader::new(&stream);
            let mut content_length = 0usize;
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line == "\r\n" => break,
                    Ok(_) => {
                        let lower = line.to_ascii_lowercase();
                        if let Some(value) = lower.strip_prefix("content-length:") {
                            content_length = value.trim().parse().unwrap_or(0);
                        }
                    }
                }
            }
            let mut body = vec![0; content_length];
            let _ = reader.read_exact(&mut body);
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (addr, hits)
}

fn request(url: String) -> OutboundRequest {
    OutboundRequest {
        url,
        headers: vec![("content-type".into(), "application/json".into())],
        body: r#"{"hello":"world"}"#.into(),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn an_allowed_delivery_goes_straight_to_the_receiver_not_through_the_proxy() {
    let proxy = proxy();
    let (addr, hits) = receiver();
    let sender = ReqwestSender::new(DestinationPolicy {
        allowed: vec!["127.0.0.0/8".parse().unwrap()],
        public: false,
    })
    .unwrap();

    let result = sender.send(request(format!("http://{addr}/hook"))).await;

    assert_eq!(
        proxy.seen_for(addr.port()),
        Vec::<String>::new(),
        "the proxy was used"
    );
    assert_eq!(result.error, None);
    assert_eq!(result.status, Some(200));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_host_resolving_to_a_private_address_is_refused_and_not_handed_to_the_proxy() {
    let proxy = proxy();
    let (addr, hits) = receiver();
    let sender = ReqwestSender::new(DestinationPolicy {
        allowed: vec!["10.0.0.0/8".parse().unwrap()],
        public: true,
    })
    .unwrap();

    let result = sender
        .send(request(format!("http://localhost:{}/hook", addr.port())))
        .await;

    assert_eq!(
        proxy.seen_for(addr.port()),
        Vec::<String>::new(),
        "the proxy was used"
    );
    assert!(
        matches!(result.error, Some(SendError::Refused(_))),
        "expected a refusal, got {:?}",
        result.error
    );
    assert_eq!(result.status, None);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}
