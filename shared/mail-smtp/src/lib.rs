//! Alert e-mail through an SMTP server: the runner's `--smtp-url` (lettre).
//!
//! `smtp://host:port` speaks plain SMTP (a local relay, a test sink);
//! `smtp://host?tls=required` upgrades with STARTTLS and refuses a server that cannot;
//! `smtps://host` is TLS from the start. A user and password in the URL log in.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use app::ports::Mailer;
use app::{Error, Result};
use domain::alerts::Mail;

/// One SMTP conversation may take this long; fan-out waits for it.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    /// A mailer sending through the server at `url`, from the address `from`
    /// (`alerts@example.com` or `Webhooks <alerts@example.com>`).
    pub fn new(url: &str, from: &str) -> Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| Error::Config(format!("--smtp-url: {e}")))?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        let from = from
            .parse()
            .map_err(|e| Error::Config(format!("--smtp-from {from:?}: {e}")))?;
        Ok(SmtpMailer { transport, from })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Mail) -> Result<()> {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(&mail.subject)
            .header(ContentType::TEXT_PLAIN);
        for to in &mail.to {
            let to: Mailbox = to
                .parse()
                .map_err(|e| Error::mail_caused_by("a recipient", true, e))?;
            message = message.to(to);
        }
        let message = message
            .body(mail.text.clone())
            .map_err(|e| Error::mail_caused_by("the message", true, e))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            // 5xx: the server will refuse the same e-mail again.
            Err(e) => {
                let permanent = e.is_permanent();
                Err(Error::mail_caused_by("SMTP", permanent, e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_senders_are_checked_at_start() {
        assert!(SmtpMailer::new("smtp://127.0.0.1:2525", "alerts@example.com").is_ok());
        assert!(SmtpMailer::new("smtps://mail.example.com", "Webhooks <a@example.com>").is_ok());
        assert!(matches!(
            SmtpMailer::new("http://127.0.0.1", "alerts@example.com"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            SmtpMailer::new("smtp://127.0.0.1:2525", "not an address"),
            Err(Error::Config(_))
        ));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_failure_worth_retrying() {
        // Port 9 on the loopback: nothing listens (discard is not run here).
        let mailer = SmtpMailer::new("smtp://127.0.0.1:9", "alerts@example.com").unwrap();
        let err = mailer
            .send(&Mail {
                to: vec!["ops@example.com".into()],
                subject: "s".into(),
                text: "t".into(),
            })
            .await
            .unwrap_err();
        assert!(err.retryable(), "{err}");
    }
}
