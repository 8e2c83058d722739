//! The runner's HTTP server against clients that trickle: a thousand connections sending
//! their headers one byte a second neither starve the API nor keep their connections.

use std::time::{Duration, Instant};

use e2e::TestRunner;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SLOW_CLIENTS: usize = 1000;
const HEADER_TIMEOUT_SECONDS: u64 = 3;

/// Sends a request's first line and headers one byte a second, then waits for whatever the
/// server does; says whether the server closed the connection (read end-of-file or an
/// answer) before the client finished.
async fn trickle(addr: std::net::SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let request =
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let (mut read, mut write) = stream.split();
    let writing = async {
        for byte in request {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // All sent: far longer than the header timeout, so reaching here is a failure.
        std::future::pending::<()>().await;
    };
    let mut buf = [0u8; 256];
    tokio::select! {
        _ = writing => false,
        _ = read.read(&mut buf) => true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_trickling_clients_neither_starve_the_api_nor_keep_their_connections() {
    let t =
        TestRunner::start_with(|c| c.http_header_timeout_seconds = HEADER_TIMEOUT_SECONDS).await;
    let addr = t.runner.addr;
    let slow: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| tokio::spawn(trickle(addr)))
        .collect();
    // Let them all connect and start trickling.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut latencies = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let answer = t.http.get(t.url("/healthz")).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("healthz beside {SLOW_CLIENTS} trickling clients: {latencies:?}");
    // Generous against a loaded machine: what matters is that the API is not starved.
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(2)),
        "{latencies:?}"
    );

    // Each trickling connection is cut off at the header timeout, long before its
    // 70-odd bytes are sent.
    let deadline = Duration::from_secs(HEADER_TIMEOUT_SECONDS + 20);
    let mut cut_off = 0;
    for client in slow {
        if tokio::time::timeout(deadline, client)
            .await
            .is_ok_and(|r| r.unwrap())
        {
            cut_off += 1;
        }
    }
    assert_eq!(
        cut_off, SLOW_CLIENTS,
        "connections kept past the header timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_slower_than_its_timeout_answers_408() {
    let t = TestRunner::start_with(|c| c.http_request_timeout_seconds = 1).await;
    let mut stream = TcpStream::connect(t.runner.addr).await.unwrap();
    // Headers complete, body promised and never sent.
    stream
        .write_all(
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
                t.runner.platform_key
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await
    .expect("the server never answered a stalled body");
    let head = String::from_utf8_lossy(&answer);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
}
