//! Alert e-mail: which operational events an account wants by e-mail, the throttle that
//! sends at most one e-mail per endpoint and cause per hour (the digest counts the rest),
//! and the text of the e-mails.
//!
//! The throttle is a pure function over one topic's state; each store applies it with a
//! conditional write, so two fan-out batches racing on one topic cannot both send.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog;
use crate::delivery::FailureCause;
use crate::event::Event;
use crate::schema::Violation;
use crate::time::Timestamp;

/// Addresses one account's alerts go to.
pub const MAX_ALERT_EMAILS: usize = 10;
/// RFC 5321's limit on a forward path.
pub const MAX_EMAIL_CHARS: usize = 254;
/// The largest per-account `failing_after_failures`.
pub const MAX_FAILING_AFTER_FAILURES: u32 = 1000;
/// At most one e-mail per topic (endpoint, event type, cause) in this long.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(3600);
/// Topics one digest e-mail lists; the rest wait for the next run.
pub const MAX_DIGEST_TOPICS: usize = 50;

/// An account's alert settings (`GET`/`PUT /v1/accounts/{a}/alerts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertSettings {
    /// Where alert e-mail goes; none: no e-mail.
    pub emails: Vec<String>,
    /// The operational event types sent by e-mail.
    pub events: Vec<String>,
    /// This account's threshold for `webhook.failing`, when it has its own.
    #[serde(default)]
    pub failing_after_failures: Option<u32>,
}

impl Default for AlertSettings {
    /// What an account that never saved its settings has: no address, every operational
    /// event chosen (so adding an address is enough), the deployment's threshold.
    fn default() -> Self {
        AlertSettings {
            emails: Vec::new(),
            events: catalog::OPERATIONAL.iter().map(|s| s.to_string()).collect(),
            failing_after_failures: None,
        }
    }
}

impl AlertSettings {
    /// Every rule, each broken one named by its JSON pointer.
    pub fn check(&self, out: &mut Vec<Violation>) {
        if self.emails.len() > MAX_ALERT_EMAILS {
            out.push(violation(
                "/emails",
                format!("at most {MAX_ALERT_EMAILS} addresses"),
            ));
        } else {
            for (i, email) in self.emails.iter().enumerate() {
                if let Err(why) = check_email(email) {
                    out.push(violation(&format!("/emails/{i}"), why));
                } else if self.emails[..i]
                    .iter()
                    .any(|e| e.eq_ignore_ascii_case(email))
                {
                    out.push(violation(&format!("/emails/{i}"), "is listed twice"));
                }
            }
        }
        for (i, event) in self.events.iter().enumerate() {
            if !catalog::is_operational(event) {
                out.push(violation(
                    &format!("/events/{i}"),
                    format!(
                        "must be an operational event type: one of {}",
                        catalog::OPERATIONAL.join(", ")
                    ),
                ));
            } else if self.events[..i].contains(event) {
                out.push(violation(&format!("/events/{i}"), "is listed twice"));
            }
        }
        if let Some(n) = self.failing_after_failures {
            if n == 0 || n > MAX_FAILING_AFTER_FAILURES {
                out.push(violation(
                    "/failing_after_failures",
                    format!("must be between 1 and {MAX_FAILING_AFTER_FAILURES}"),
                ));
            }
        }
    }

    /// Whether an e-mail goes out for this event type.
    pub fn wants(&self, event_type: &str) -> bool {
        !self.emails.is_empty() && self.events.iter().any(|e| e == event_type)
    }
}

/// An address an alert may be sent to: a plain `local@domain` (no display name, no
/// comments, no quoting), so it can never carry a second header or recipient.
pub fn check_email(address: &str) -> Result<(), String> {
    if address.len() > MAX_EMAIL_CHARS {
        return Err(format!("must be at most {MAX_EMAIL_CHARS} characters"));
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err("must be an e-mail address (name@example.com)".into());
    };
    const LOCAL_SPECIALS: &str = "!#$%&'*+/=?^_`{|}~-.";
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(c));
    if !local_ok {
        return Err(
            "its part before @ may hold only letters, digits, dots and !#$%&'*+/=?^_`{|}~-".into(),
        );
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !domain_ok {
        return Err("its domain must be a host name with a dot (example.com)".into());
    }
    Ok(())
}

/// What one alert is about: an endpoint, the kind of event, and its cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertTopic {
    pub webhook_id: String,
    pub event_type: String,
    /// A failure cause's key (`http_500`, `timeout`, …), a disable reason (`gone`,
    /// `failing`), or `recovered`.
    pub cause: String,
}

impl AlertTopic {
    /// The topic of an operational event about an endpoint; `None` for any other event.
    pub fn of(event: &Event) -> Option<AlertTopic> {
        let webhook_id = event.about_webhook()?.to_string();
        let text = |field: &str| event.data.get(field).and_then(Value::as_str);
        let cause = match event.event_type.as_str() {
            "webhook.disabled" => text("reason"),
            "webhook.recovered" => Some("recovered"),
            _ => text("cause"),
        }
        .unwrap_or("unknown");
        Some(AlertTopic {
            webhook_id,
            event_type: event.event_type.as_str().to_string(),
            cause: cause.to_string(),
        })
    }

    /// The key a store keeps the topic's throttle under.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.webhook_id, self.event_type, self.cause)
    }
}

/// One topic's throttle: the last e-mail, and what was held since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottleState {
    pub topic: AlertTopic,
    /// The endpoint's URL when last seen, for the digest.
    pub url: Option<String>,
    /// Bumped by every write; a store writes only on the version it read.
    pub version: u64,
    /// When the last e-mail (an alert or a digest) about this topic was claimed.
    pub last_sent_at: Timestamp,
    /// The event that e-mail was about, and whether it is known to have gone out: the same
    /// event coming back unconfirmed (its send failed) is sent again.
    pub last_event_id: String,
    pub confirmed: bool,
    /// Alerts held since the last e-mail; the next alert or the digest reports them.
    pub held: u64,
    /// What the last alert reported as held, so a second try reports the same.
    pub reported: u64,
    pub first_held_at: Option<Timestamp>,
    pub last_held_at: Option<Timestamp>,
    /// The latest held events (at most `REMEMBERED_HELD`), so a fan-out retry of a batch
    /// does not count them twice.
    #[serde(default)]
    pub held_event_ids: Vec<String>,
}

/// Held events a throttle remembers, newest last: more than one fan-out batch.
pub const REMEMBERED_HELD: usize = 32;

impl ThrottleState {
    /// When the held alerts are reported by a digest, if no alert reports them first.
    pub fn digest_due(&self) -> Option<Timestamp> {
        (self.held > 0).then(|| self.last_sent_at + THROTTLE_WINDOW)
    }
}

/// What the throttle says about one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Send it, saying how many alerts about the topic were held since the last e-mail.
    Send { held_since_last: u64 },
    /// Counted for the digest.
    Hold,
    /// This event was already sent or counted.
    Duplicate,
}

/// Decides one alert and gives the state to write (none when nothing changes).
pub fn claim(
    state: Option<&ThrottleState>,
    topic: &AlertTopic,
    event_id: &str,
    url: Option<&str>,
    now: Timestamp,
) -> (Claim, Option<ThrottleState>) {
    let sent = |prior: Option<&ThrottleState>| {
        let held = prior.map_or(0, |s| s.held);
        ThrottleState {
            topic: topic.clone(),
            url: url.map(str::to_string).or_else(|| prior?.url.clone()),
            version: prior.map_or(0, |s| s.version) + 1,
            last_sent_at: now,
            last_event_id: event_id.to_string(),
            confirmed: false,
            held: 0,
            reported: held,
            first_held_at: None,
            last_held_at: None,
            held_event_ids: Vec::new(),
        }
    };
    let Some(s) = state else {
        return (Claim::Send { held_since_last: 0 }, Some(sent(None)));
    };
    if s.last_event_id == event_id {
        return if s.confirmed {
            (Claim::Duplicate, None)
        } else {
            (
                Claim::Send {
                    held_since_last: s.reported,
                },
                None,
            )
        };
    }
    if s.held_event_ids.iter().any(|id| id == event_id) {
        return (Claim::Duplicate, None);
    }
    if now >= s.last_sent_at + THROTTLE_WINDOW {
        return (
            Claim::Send {
                held_since_last: s.held,
            },
            Some(sent(Some(s))),
        );
    }
    let mut next = s.clone();
    next.version += 1;
    next.held += 1;
    next.first_held_at = Some(s.first_held_at.unwrap_or(now));
    next.last_held_at = Some(now);
    next.held_event_ids.push(event_id.to_string());
    if next.held_event_ids.len() > REMEMBERED_HELD {
        next.held_event_ids.remove(0);
    }
    if let Some(url) = url {
        next.url = Some(url.to_string());
    }
    (Claim::Hold, Some(next))
}

/// The state once the alert claimed for `event_id` went out; `None` when there is nothing
/// to confirm (already confirmed, or a later alert took its place).
pub fn confirmed(state: &ThrottleState, event_id: &str) -> Option<ThrottleState> {
    if state.last_event_id != event_id || state.confirmed {
        return None;
    }
    let mut next = state.clone();
    next.version += 1;
    next.confirmed = true;
    Some(next)
}

/// The state once a digest reported the alerts held in `reported` (the state it read),
/// written over `current` (the state now stored, which may have held more since): the
/// digest counts as the topic's e-mail for the next window, and what was held after the
/// read stays held. `None` when an alert was sent meanwhile: it reported the held count
/// itself, and the state is left to it. Whether the last alert went out is kept as it
/// was, so an alert whose send failed is still sent when its event comes back.
pub fn digested(
    reported: &ThrottleState,
    current: &ThrottleState,
    now: Timestamp,
) -> Option<ThrottleState> {
    if current.last_sent_at != reported.last_sent_at {
        return None;
    }
    let mut next = current.clone();
    next.version += 1;
    next.last_sent_at = now;
    next.held = current.held.saturating_sub(reported.held);
    next.reported = 0;
    if next.held == 0 {
        next.first_held_at = None;
        next.last_held_at = None;
    } else {
        next.first_held_at = current.last_held_at;
    }
    Some(next)
}

/// An e-mail to send: plain text, to every address of the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
}

/// A cause as a person reads it.
pub fn cause_name(cause: &str) -> String {
    match cause {
        "recovered" => "recovered".into(),
        "gone" => "the endpoint answered 410 Gone".into(),
        "failing" => "it failed for too long without a success".into(),
        "unknown" => "unknown".into(),
        key => match FailureCause::parse(key) {
            Some(FailureCause::Http(code)) => format!("HTTP {code}"),
            Some(FailureCause::Timeout) => "timeout".into(),
            Some(FailureCause::ConnectionRefused) => "connection refused".into(),
            Some(FailureCause::Tls) => "TLS".into(),
            Some(FailureCause::Dns) => "DNS".into(),
            Some(FailureCause::BlockedAddress) => "blocked by the address guard".into(),
            Some(FailureCause::Connection) => "connection failed".into(),
            Some(FailureCause::OAuthToken) => "no OAuth token from the token endpoint".into(),
            None => key.to_string(),
        },
    }
}

/// Links into the console, from its base (`https://host`, no trailing slash needed).
pub struct ConsoleLinks<'a>(pub &'a str);

impl ConsoleLinks<'_> {
    fn base(&self) -> &str {
        self.0.trim_end_matches('/')
    }
    pub fn delivery(&self, id: &str) -> String {
        format!("{}/console/#/deliveries/{id}", self.base())
    }
    pub fn endpoint(&self, id: &str) -> String {
        format!("{}/console/#/endpoints/{id}", self.base())
    }
    pub fn alerts(&self) -> String {
        format!("{}/console/#/alerts", self.base())
    }
}

const FOOTER: &str =
    "You get at most one e-mail per endpoint and cause per hour; a digest counts the rest.";

/// The e-mail for one operational event, reporting what was held before it.
pub fn alert_mail(
    event: &Event,
    topic: &AlertTopic,
    held_since_last: u64,
    links: &ConsoleLinks<'_>,
    to: &[String],
) -> Mail {
    let data = &event.data;
    let text = |field: &str| data.get(field).and_then(Value::as_str);
    let number = |field: &str| data.get(field).and_then(Value::as_u64);
    let url = text("url").unwrap_or(&topic.webhook_id);
    let cause = cause_name(&topic.cause);
    let mut lines = vec![
        format!("Account:  {}", event.account_id),
        format!("Endpoint: {url} ({})", topic.webhook_id),
    ];
    let subject = match topic.event_type.as_str() {
        "webhook.failing" => {
            let count = number("consecutive_failures").unwrap_or(0);
            lines.push(format!("Cause:    {cause}"));
            lines.push(format!(
                "Count:    {count} attempts in a row failed (threshold {})",
                number("threshold").unwrap_or(count)
            ));
            if let Some(since) = text("failing_since") {
                lines.push(format!("Since:    {since}"));
            }
            if let Some(error) = text("last_error") {
                lines.push(format!("Last error: {error}"));
            }
            format!("Endpoint failing ({cause}): {url}")
        }
        "delivery.dead" => {
            lines.push(format!("Cause:    {cause}"));
            let attempts = number("attempts").unwrap_or(1);
            lines.push(format!(
                "Count:    {attempts} attempt{}, none succeeded",
                plural(attempts)
            ));
            if let Some(event_type) = text("event_type") {
                lines.push(format!(
                    "Event:    {event_type} {}",
                    text("event_id").unwrap_or("")
                ));
            }
            if let Some(error) = text("last_error") {
                lines.push(format!("Last error: {error}"));
            }
            lines.push("It is in the dead letters, where it can be redriven.".into());
            format!("Delivery dead ({cause}): {url}")
        }
        "webhook.disabled" => {
            lines.push(format!("Cause:    {cause}"));
            if let Some(message) = text("message") {
                lines.push(format!("Why:      {message}"));
            }
            lines.push("Nothing is sent to it until it is enabled again.".into());
            format!("Endpoint disabled: {url}")
        }
        _ => {
            if let Some(since) = text("failing_since") {
                lines.push(format!("Failing since: {since}"));
            }
            lines.push("It answered successfully again.".into());
            format!("Endpoint recovered: {url}")
        }
    };
    if let Some(delivery) = text("delivery_id") {
        lines.push(format!("Delivery: {}", links.delivery(delivery)));
    }
    lines.push(format!(
        "Endpoint page: {}",
        links.endpoint(&topic.webhook_id)
    ));
    if held_since_last > 0 {
        lines.push(String::new());
        lines.push(format!(
            "{held_since_last} more alert{} about this endpoint and cause {} held since the last e-mail.",
            plural(held_since_last),
            if held_since_last == 1 { "was" } else { "were" }
        ));
    }
    lines.push(String::new());
    lines.push(FOOTER.into());
    lines.push(format!("Choose which alerts you get: {}", links.alerts()));
    Mail {
        to: to.to_vec(),
        subject: format!("[Webhooks] {subject}"),
        text: lines.join("\n") + "\n",
    }
}

/// The e-mail reporting alerts held past their window, several topics at once.
pub fn digest_mail(
    account: &str,
    held: &[ThrottleState],
    links: &ConsoleLinks<'_>,
    to: &[String],
) -> Mail {
    let total: u64 = held.iter().map(|s| s.held).sum();
    let mut lines = vec![
        format!("Account: {account}"),
        format!(
            "{total} alert{} held in the last hour, by endpoint and cause:",
            plural(total)
        ),
        String::new(),
    ];
    for s in held {
        let url = s.url.as_deref().unwrap_or(&s.topic.webhook_id);
        lines.push(format!(
            "- {} × {} ({}) on {url}",
            s.held,
            s.topic.event_type,
            cause_name(&s.topic.cause)
        ));
        if let (Some(first), Some(last)) = (s.first_held_at, s.last_held_at) {
            lines.push(format!("  from {first} to {last}"));
        }
        lines.push(format!("  {}", links.endpoint(&s.topic.webhook_id)));
    }
    lines.push(String::new());
    lines.push(FOOTER.into());
    lines.push(format!("Choose which alerts you get: {}", links.alerts()));
    Mail {
        to: to.to_vec(),
        subject: format!("[Webhooks] Digest: {total} held alert{}", plural(total)),
        text: lines.join("\n") + "\n",
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn violation(pointer: &str, message: impl Into<String>) -> Violation {
    Violation {
        pointer: pointer.into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::EventType;
    use crate::ids::{AccountId, EventId};
    use serde_json::json;

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_millis(1_800_000_000_000 + minutes * 60_000)
    }

    fn topic() -> AlertTopic {
        AlertTopic {
            webhook_id: "wh_1".into(),
            event_type: "webhook.failing".into(),
            cause: "http_500".into(),
        }
    }

    fn failing_event(id: &str) -> Event {
        Event {
            id: EventId::parse(id).unwrap(),
            event_type: EventType::known("webhook.failing").unwrap(),
            account_id: AccountId::parse("acct_1").unwrap(),
            occurred_at: at(0).to_rfc3339(),
            received_at: at(0),
            data: json!({"webhook_id": "wh_1", "url": "https://crm.example.com/hooks",
                         "consecutive_failures": 5, "threshold": 5, "cause": "http_500",
                         "last_error": "endpoint answered 500", "delivery_id": "dlv_9",
                         "failing_since": at(0).to_rfc3339()}),
        }
    }

    #[test]
    fn addresses_that_could_carry_a_header_or_a_second_recipient_are_refused() {
        for ok in [
            "ops@example.com",
            "a.b+alerts@mail.example.co.uk",
            "x_y@ex-ample.io",
        ] {
            assert_eq!(check_email(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "ops",
            "ops@",
            "@example.com",
            "ops@localhost",
            "ops@example.com\r\nBcc: x@evil.com",
            "ops@example.com, other@example.com",
            "Ops <ops@example.com>",
            "a..b@example.com",
            ".a@example.com",
            "ops@-example.com",
            "ops@exa mple.com",
            "o\"ps@example.com",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
        assert!(check_email(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn settings_are_checked_field_by_field() {
        let mut v = Vec::new();
        AlertSettings::default().check(&mut v);
        assert!(v.is_empty());
        let settings = AlertSettings {
            emails: vec![
                "ops@example.com".into(),
                "OPS@example.com".into(),
                "x".into(),
            ],
            events: vec![
                "call.ended".into(),
                "delivery.dead".into(),
                "delivery.dead".into(),
            ],
            failing_after_failures: Some(0),
        };
        settings.check(&mut v);
        let pointers: Vec<&str> = v.iter().map(|v| v.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/emails/1",
                "/emails/2",
                "/events/0",
                "/events/2",
                "/failing_after_failures"
            ]
        );
        let mut v = Vec::new();
        AlertSettings {
            emails: vec!["a@example.com".into(); MAX_ALERT_EMAILS + 1],
            ..AlertSettings::default()
        }
        .check(&mut v);
        assert_eq!(v.len(), 1, "one violation for too many, not one per entry");
    }

    #[test]
    fn only_chosen_events_go_to_accounts_with_an_address() {
        let mut s = AlertSettings::default();
        assert!(!s.wants("webhook.failing"), "no address, no e-mail");
        s.emails.push("ops@example.com".into());
        assert!(s.wants("webhook.failing"));
        s.events = vec!["delivery.dead".into()];
        assert!(!s.wants("webhook.failing"));
        assert!(s.wants("delivery.dead"));
    }

    #[test]
    fn topics_name_the_endpoint_the_type_and_the_cause() {
        let event = failing_event("evt_1");
        assert_eq!(AlertTopic::of(&event), Some(topic()));
        assert_eq!(topic().key(), "wh_1/webhook.failing/http_500");
        let mut disabled = event.clone();
        disabled.event_type = EventType::known("webhook.disabled").unwrap();
        disabled.data = json!({"webhook_id": "wh_1", "reason": "gone"});
        assert_eq!(AlertTopic::of(&disabled).unwrap().cause, "gone");
        let mut call = event;
        call.event_type = EventType::known("call.ended").unwrap();
        assert_eq!(AlertTopic::of(&call), None);
    }

    #[test]
    fn one_email_per_topic_per_window_and_the_next_one_counts_the_held() {
        let t = topic();
        let (c, s1) = claim(None, &t, "evt_1", Some("https://x.example"), at(0));
        assert_eq!(c, Claim::Send { held_since_last: 0 });
        let s1 = confirmed(&s1.unwrap(), "evt_1").unwrap();

        let (c, s2) = claim(Some(&s1), &t, "evt_2", None, at(10));
        assert_eq!(c, Claim::Hold);
        let s2 = s2.unwrap();
        assert_eq!((s2.held, s2.first_held_at), (1, Some(at(10))));
        assert_eq!(s2.digest_due(), Some(at(60)));
        assert_eq!(s2.url.as_deref(), Some("https://x.example"));

        // The held event coming back (a fan-out retry) is not counted again.
        assert_eq!(
            claim(Some(&s2), &t, "evt_2", None, at(11)).0,
            Claim::Duplicate
        );
        let (c, s3) = claim(Some(&s2), &t, "evt_3", None, at(59));
        assert_eq!(c, Claim::Hold);
        let s3 = s3.unwrap();
        assert_eq!(s3.held, 2);

        let (c, s4) = claim(Some(&s3), &t, "evt_4", None, at(60));
        assert_eq!(c, Claim::Send { held_since_last: 2 });
        let s4 = s4.unwrap();
        assert_eq!(
            (s4.held, s4.digest_due(), s4.last_sent_at),
            (0, None, at(60))
        );
        assert!(s4.version > s3.version);
    }

    #[test]
    fn a_digest_keeps_what_was_held_after_its_read_and_yields_to_an_alert() {
        let t = topic();
        let (_, s) = claim(None, &t, "evt_1", None, at(0));
        let (_, read) = claim(Some(&s.unwrap()), &t, "evt_2", None, at(5));
        let read = read.unwrap();
        let (_, later) = claim(Some(&read), &t, "evt_3", None, at(50));
        let later = later.unwrap();
        let next = digested(&read, &later, at(60)).unwrap();
        assert_eq!(
            next.held, 1,
            "evt_3 was held after the digest read: still to report"
        );
        assert_eq!(next.digest_due(), Some(at(120)));
        let (_, sent) = claim(Some(&later), &t, "evt_4", None, at(61));
        assert_eq!(digested(&read, &sent.unwrap(), at(62)), None);
    }

    #[test]
    fn a_batch_of_held_events_coming_back_is_not_counted_again() {
        let t = topic();
        let (_, s) = claim(None, &t, "evt_0", None, at(0));
        let mut s = s.unwrap();
        for i in 1..=10 {
            let (c, next) = claim(Some(&s), &t, &format!("evt_{i}"), None, at(i));
            assert_eq!(c, Claim::Hold);
            s = next.unwrap();
        }
        for i in 1..=10 {
            assert_eq!(
                claim(Some(&s), &t, &format!("evt_{i}"), None, at(20)).0,
                Claim::Duplicate
            );
        }
        assert_eq!(s.held, 10);
    }

    #[test]
    fn an_alert_whose_send_failed_is_sent_again_and_a_sent_one_is_not() {
        let t = topic();
        let (_, s) = claim(None, &t, "evt_1", None, at(0));
        let s = s.unwrap();
        assert_eq!(
            claim(Some(&s), &t, "evt_1", None, at(1)),
            (Claim::Send { held_since_last: 0 }, None)
        );
        let s = confirmed(&s, "evt_1").unwrap();
        assert_eq!(confirmed(&s, "evt_1"), None);
        assert_eq!(
            claim(Some(&s), &t, "evt_1", None, at(2)),
            (Claim::Duplicate, None)
        );
    }

    #[test]
    fn a_digest_counts_as_the_windows_email() {
        let t = topic();
        let (_, s) = claim(None, &t, "evt_1", None, at(0));
        let (_, s) = claim(Some(&s.unwrap()), &t, "evt_2", None, at(5));
        let held = s.unwrap();
        let s = digested(&held, &held, at(60)).unwrap();
        assert_eq!((s.held, s.digest_due(), s.last_sent_at), (0, None, at(60)));
        assert!(
            !s.confirmed,
            "the first alert's send is still unconfirmed: it may come back"
        );
        // The window restarts at the digest.
        assert_eq!(claim(Some(&s), &t, "evt_3", None, at(90)).0, Claim::Hold);
        assert_eq!(
            claim(Some(&s), &t, "evt_3", None, at(120)).0,
            Claim::Send { held_since_last: 0 }
        );
    }

    #[test]
    fn the_alert_names_the_endpoint_the_cause_the_count_and_links_the_delivery() {
        let event = failing_event("evt_1");
        let mail = alert_mail(
            &event,
            &topic(),
            3,
            &ConsoleLinks("https://hooks.example.com/"),
            &["ops@example.com".into()],
        );
        assert_eq!(
            mail.subject,
            "[Webhooks] Endpoint failing (HTTP 500): https://crm.example.com/hooks"
        );
        for expected in [
            "Endpoint: https://crm.example.com/hooks (wh_1)",
            "Cause:    HTTP 500",
            "Count:    5 attempts in a row failed (threshold 5)",
            "Delivery: https://hooks.example.com/console/#/deliveries/dlv_9",
            "3 more alerts about this endpoint and cause were held",
        ] {
            assert!(mail.text.contains(expected), "{expected}\n{}", mail.text);
        }
    }

    #[test]
    fn disabled_and_recovered_endpoints_are_told_as_such() {
        let links = ConsoleLinks("https://hooks.example.com");
        let to = ["ops@example.com".to_string()];
        let mut disabled = failing_event("evt_2");
        disabled.event_type = EventType::known("webhook.disabled").unwrap();
        disabled.data = json!({"webhook_id": "wh_1", "url": "https://crm.example.com/hooks",
                               "reason": "gone", "message": "the endpoint answered 410 Gone"});
        let topic = AlertTopic::of(&disabled).unwrap();
        let mail = alert_mail(&disabled, &topic, 0, &links, &to);
        assert_eq!(
            mail.subject,
            "[Webhooks] Endpoint disabled: https://crm.example.com/hooks"
        );
        assert!(
            mail.text
                .contains("Cause:    the endpoint answered 410 Gone"),
            "{}",
            mail.text
        );
        assert!(mail
            .text
            .contains("Nothing is sent to it until it is enabled again."));
        assert!(
            !mail.text.contains("more alert"),
            "nothing held, nothing said"
        );

        let mut recovered = failing_event("evt_3");
        recovered.event_type = EventType::known("webhook.recovered").unwrap();
        recovered.data = json!({"webhook_id": "wh_1", "url": "https://crm.example.com/hooks",
                                "failing_since": "2026-11-29T10:00:00Z"});
        let topic = AlertTopic::of(&recovered).unwrap();
        assert_eq!(topic.cause, "recovered");
        let mail = alert_mail(&recovered, &topic, 0, &links, &to);
        assert_eq!(
            mail.subject,
            "[Webhooks] Endpoint recovered: https://crm.example.com/hooks"
        );
        assert!(mail.text.contains("Failing since: 2026-11-29T10:00:00Z"));
        assert!(mail
            .text
            .contains("Endpoint page: https://hooks.example.com/console/#/endpoints/wh_1"));
    }

    #[test]
    fn the_digest_lists_each_topic_with_its_count() {
        let t = topic();
        let (_, s) = claim(
            None,
            &t,
            "evt_1",
            Some("https://crm.example.com/hooks"),
            at(0),
        );
        let (_, s) = claim(Some(&s.unwrap()), &t, "evt_2", None, at(5));
        let mail = digest_mail(
            "acct_1",
            &[s.unwrap()],
            &ConsoleLinks("http://127.0.0.1:3000"),
            &["ops@example.com".into()],
        );
        assert_eq!(mail.subject, "[Webhooks] Digest: 1 held alert");
        assert!(mail
            .text
            .contains("- 1 × webhook.failing (HTTP 500) on https://crm.example.com/hooks"));
        assert!(mail
            .text
            .contains("http://127.0.0.1:3000/console/#/endpoints/wh_1"));
    }
}
