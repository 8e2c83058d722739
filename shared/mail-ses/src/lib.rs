//! Alert e-mail through Amazon SES (API v2), from the sender identity the template's
//! `AlertSender` parameter names.

use async_trait::async_trait;
use aws_sdk_sesv2::error::ProvideErrorMetadata;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

use app::ports::Mailer;
use app::{Error, Result};
use domain::alerts::Mail;

pub struct SesMailer {
    client: aws_sdk_sesv2::Client,
    from: String,
}

impl SesMailer {
    pub fn new(config: &aws_config::SdkConfig, from: &str) -> Self {
        SesMailer {
            client: aws_sdk_sesv2::Client::new(config),
            from: from.to_string(),
        }
    }
}

/// SES errors that the same e-mail meets again: an identity not verified, a rejected
/// message, an account paused or not allowed to send.
fn permanent(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "MessageRejected"
                | "MailFromDomainNotVerifiedException"
                | "AccountSuspendedException"
                | "SendingPausedException"
                | "BadRequestException"
                | "NotFoundException"
                | "AccessDeniedException"
        )
    )
}

fn utf8(text: &str) -> Result<Content> {
    Content::builder()
        .data(text)
        .charset("UTF-8")
        .build()
        .map_err(|e| Error::mail_caused_by("SES content", true, e))
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, mail: &Mail) -> Result<()> {
        let message = Message::builder()
            .subject(utf8(&mail.subject)?)
            .body(Body::builder().text(utf8(&mail.text)?).build())
            .build();
        let out = self
            .client
            .send_email()
            .from_email_address(&self.from)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(mail.to.clone()))
                    .build(),
            )
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) => {
                let permanent = permanent(e.code());
                Err(Error::mail_caused_by("SES", permanent, e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_that_will_not_change_are_permanent() {
        assert!(permanent(Some("MessageRejected")));
        assert!(permanent(Some("MailFromDomainNotVerifiedException")));
        assert!(!permanent(Some("TooManyRequestsException")));
        assert!(!permanent(Some("LimitExceededException")));
        assert!(!permanent(None), "no code: a network failure");
    }
}
