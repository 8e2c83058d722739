//! A local SMTP server that keeps every message it is given: the sink the alert e-mail
//! tests point the runner at. No TLS, no login: just enough of RFC 5321 for a client to
//! hand over a message, and a decoder for the body's transfer encoding.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One message as the sink received it.
#[derive(Debug, Clone)]
pub struct SunkMail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent: headers, a blank line, the encoded body.
    pub data: String,
}

impl SunkMail {
    /// A header's value (the first of that name), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.split("\r\n").find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The body, decoded from its transfer encoding (quoted-printable, base64 or none).
    pub fn text(&self) -> String {
        let body = self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let encoding = self
            .header("Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let bytes = match encoding.as_str() {
            "base64" => STANDARD
                .decode(body.replace("\r\n", ""))
                .expect("a base64 body"),
            "quoted-printable" => quoted_printable(body),
            _ => body.as_bytes().to_vec(),
        };
        String::from_utf8(bytes)
            .expect("a UTF-8 body")
            .replace("\r\n", "\n")
    }
}

fn quoted_printable(body: &str) -> Vec<u8> {
    let joined = body.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[derive(Clone)]
pub struct SmtpSink {
    pub addr: SocketAddr,
    messages: Arc<Mutex<Vec<SunkMail>>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let kept = messages.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, kept.clone()));
            }
        });
        SmtpSink { addr, messages }
    }

    /// The URL to give the runner's `--smtp-url`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn messages(&self) -> Vec<SunkMail> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until at least `n` messages arrived, or panics after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<SunkMail> {
        crate::eventually("e-mail at the SMTP sink", timeout, || async {
            let got = self.messages();
            if got.len() >= n {
                Ok(got)
            } else {
                Err(format!("{} of {n}", got.len()))
            }
        })
        .await
    }
}

async fn session(stream: TcpStream, messages: Arc<Mutex<Vec<SunkMail>>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    if !reply(&mut write, "220 sink ESMTP\r\n").await {
        return;
    }
    let (mut from, mut to) = (String::new(), Vec::new());
    while let Ok(Some(line)) = lines.next_line().await {
        let upper = line.to_ascii_uppercase();
        let answer = if upper.starts_with("EHLO") {
            "250-sink\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            "250 OK\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&line[10..]);
            to.clear();
            "250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&line[8..]));
            "250 OK\r\n"
        } else if upper.starts_with("RSET") {
            (from, to) = (String::new(), Vec::new());
            "250 OK\r\n"
        } else if upper == "DATA" {
            if !reply(&mut write, "354 end with <CRLF>.<CRLF>\r\n").await {
                return;
            }
            let mut data = Vec::new();
            while let Ok(Some(l)) = lines.next_line().await {
                if l == "." {
                    break;
                }
                data.push(l.strip_prefix('.').map_or(l.clone(), str::to_string));
            }
            messages.lock().unwrap().push(SunkMail {
                from: from.clone(),
                to: std::mem::take(&mut to),
                data: data.join("\r\n"),
            });
            "250 OK queued\r\n"
        } else if upper.starts_with("QUIT") {
            let _ = reply(&mut write, "221 bye\r\n").await;
            return;
        } else {
            "502 not implemented\r\n"
        };
        if !reply(&mut write, answer).await {
            return;
        }
    }
}

async fn reply(write: &mut tokio::net::tcp::OwnedWriteHalf, text: &str) -> bool {
    write.write_all(text.as_bytes()).await.is_ok()
}

/// `<a@b>` (and any parameters after it) as `a@b`.
fn address(arg: &str) -> String {
    let arg = arg.trim();
    match (arg.find('<'), arg.find('>')) {
        (Some(l), Some(r)) if l < r => arg[l + 1..r].to_string(),
        _ => arg.split_whitespace().next().unwrap_or("").to_string(),
    }
}
