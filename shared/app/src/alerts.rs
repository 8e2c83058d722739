//! Alert e-mail. Fan-out hands each operational event here once its deliveries are made:
//! an account that chose the event's type and gave an address gets an e-mail, at most one
//! per endpoint and cause per hour (`domain::alerts::THROTTLE_WINDOW`). What the throttle
//! held is counted, and reported by the topic's next e-mail or by a digest once the window
//! is over (`send_digests`, on a schedule).
//!
//! At least once: the throttle's claim is written before the e-mail is sent and confirmed
//! after, so an event whose send failed comes back with its fan-out message and is sent
//! again, while one that went out is not sent twice.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{Error, Result, Services};
use domain::alerts::{
    self, alert_mail, digest_mail, AlertTopic, Claim, ConsoleLinks, ThrottleState,
    MAX_DIGEST_TOPICS,
};
use domain::event::Event;
use domain::ids::AccountId;

/// Conditional writes lost to concurrent fan-out batches before the event is given back
/// (one batch's events about one topic are handled one after the other, see `fanout`).
const MAX_CONFLICTS: usize = 10;
/// Receives of an events-queue message after which a failed alert e-mail is given up
/// rather than the message given back: a mail outage must not hold operational events
/// until they reach the dead-letter queue.
pub const MAX_ALERT_RECEIVES: u32 = 3;
/// Due topics one digest run reads; the rest wait for the next run.
pub const DIGEST_PAGE: usize = 500;
/// How often the runner looks for due digests. On AWS a schedule in the template says it.
pub const DIGEST_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// What happened to one operational event's e-mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notified {
    /// E-mail is off on this deployment, or the event is not one an account is alerted of.
    NotAnAlert,
    /// The account wants no e-mail for it.
    NotWanted,
    Sent,
    /// Counted for the digest: an e-mail about the same topic went out within the window.
    Held,
    /// Already sent or counted (the fan-out message came back).
    Duplicate,
}

/// E-mails the account about `event` if it asked to be. Fails (and the fan-out message
/// comes back) only when trying again may help: a permanent refusal by the mail service
/// is logged and dropped, so one bad address never holds events up.
pub async fn notify(services: &Services, event: &Event) -> Result<Notified> {
    match try_notify(services, event).await {
        Err(e) if !e.retryable() => {
            tracing::error!(account_id = %event.account_id, event_id = %event.id, error = %e, "alert e-mail refused; not sent");
            Ok(Notified::NotWanted)
        }
        other => other,
    }
}

async fn try_notify(services: &Services, event: &Event) -> Result<Notified> {
    let (Some(mailer), Some(topic)) = (&services.mailer, AlertTopic::of(event)) else {
        return Ok(Notified::NotAnAlert);
    };
    let account = &event.account_id;
    let settings = services.alerts.settings(account).await?.unwrap_or_default();
    if !settings.wants(event.event_type.as_str()) {
        return Ok(Notified::NotWanted);
    }
    let key = topic.key();
    let url = event.data.get("url").and_then(|u| u.as_str());
    for _ in 0..MAX_CONFLICTS {
        let now = services.clock.now();
        let prior = services.alerts.throttle(account, &key).await?;
        let (decision, next) = alerts::claim(prior.as_ref(), &topic, event.id.as_str(), url, now);
        if let Some(next) = &next {
            if !services
                .alerts
                .put_throttle(account, &key, prior.as_ref(), next)
                .await?
            {
                // Another instance's batch wrote first: a moment, then read again.
                let jitter = 5 + (services.random.unit() * 20.0) as u64;
                tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
                continue;
            }
        }
        return match decision {
            Claim::Send { held_since_last } => {
                let links = ConsoleLinks(&services.settings.console_url);
                let mail = alert_mail(event, &topic, held_since_last, &links, &settings.emails);
                mailer.send(&mail).await?;
                tracing::info!(account_id = %account, topic = %key, held_since_last, "alert e-mail sent");
                confirm(services, account, &key, event.id.as_str()).await;
                Ok(Notified::Sent)
            }
            Claim::Hold => Ok(Notified::Held),
            Claim::Duplicate => Ok(Notified::Duplicate),
        };
    }
    Err(Error::storage(
        "the alert throttle kept changing under this event; it will be tried again",
    ))
}

/// Marks the sent e-mail as gone out. Best effort: left unconfirmed, the event is sent
/// again only if its fan-out message comes back.
async fn confirm(services: &Services, account: &AccountId, key: &str, event_id: &str) {
    for _ in 0..MAX_CONFLICTS {
        let state = match services.alerts.throttle(account, key).await {
            Ok(Some(state)) => state,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(topic = %key, error = %e, "could not confirm an alert e-mail");
                return;
            }
        };
        let Some(next) = alerts::confirmed(&state, event_id) else {
            return;
        };
        match services
            .alerts
            .put_throttle(account, key, Some(&state), &next)
            .await
        {
            Ok(true) => return,
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(topic = %key, error = %e, "could not confirm an alert e-mail");
                return;
            }
        }
    }
}

/// What one digest run found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DigestReport {
    /// Topics whose held alerts were due.
    pub due: usize,
    /// Digest e-mails sent.
    pub sent: usize,
    /// Held alerts they reported.
    pub reported: u64,
    /// Held alerts cleared without an e-mail: the account no longer wants them.
    pub dropped: u64,
}

/// Sends each account one digest of its topics whose held alerts are due. Fails as a whole
/// only on a transient failure; the next run picks up what this one left.
pub async fn send_digests(services: &Services) -> Result<DigestReport> {
    let mut report = DigestReport::default();
    let Some(mailer) = &services.mailer else {
        return Ok(report);
    };
    let now = services.clock.now();
    let mut by_account: BTreeMap<AccountId, Vec<(String, ThrottleState)>> = BTreeMap::new();
    for (account, state) in services.alerts.due_digests(now, DIGEST_PAGE).await? {
        by_account
            .entry(account)
            .or_default()
            .push((state.topic.key(), state));
    }
    for (account, topics) in by_account {
        report.due += topics.len();
        let settings = services
            .alerts
            .settings(&account)
            .await?
            .unwrap_or_default();
        for chunk in topics.chunks(MAX_DIGEST_TOPICS) {
            let (wanted, unwanted): (Vec<_>, Vec<_>) = chunk
                .iter()
                .partition(|(_, s)| settings.wants(&s.topic.event_type));
            if !wanted.is_empty() {
                let states: Vec<ThrottleState> = wanted.iter().map(|(_, s)| s.clone()).collect();
                let links = ConsoleLinks(&services.settings.console_url);
                let mail = digest_mail(account.as_str(), &states, &links, &settings.emails);
                let held = states.iter().map(|s| s.held).sum::<u64>();
                match mailer.send(&mail).await {
                    Ok(()) => {
                        report.sent += 1;
                        report.reported += held;
                    }
                    Err(e) if e.retryable() => return Err(e),
                    Err(e) => {
                        tracing::error!(account_id = %account, error = %e, "digest e-mail refused; its alerts are dropped");
                        report.dropped += held;
                    }
                }
            }
            report.dropped += unwanted.iter().map(|(_, s)| s.held).sum::<u64>();
            for (key, state) in chunk {
                settle_digest(services, &account, key, state, now).await?;
            }
        }
    }
    if report.due > 0 {
        tracing::info!(?report, "alert digests");
    }
    Ok(report)
}

/// Records that the held alerts of `reported` (the state the digest read) went out,
/// keeping what was held after that read. An alert sent meanwhile reported them itself.
async fn settle_digest(
    services: &Services,
    account: &AccountId,
    key: &str,
    reported: &ThrottleState,
    now: domain::time::Timestamp,
) -> Result<()> {
    let mut current = reported.clone();
    for _ in 0..MAX_CONFLICTS {
        let Some(next) = alerts::digested(reported, &current, now) else {
            return Ok(());
        };
        if services
            .alerts
            .put_throttle(account, key, Some(&current), &next)
            .await?
        {
            return Ok(());
        }
        match services.alerts.throttle(account, key).await? {
            Some(read) => current = read,
            None => return Ok(()),
        }
    }
    Err(Error::storage(
        "the alert throttle kept changing under the digest; the next run settles it",
    ))
}
