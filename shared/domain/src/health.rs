//! Endpoint health. An endpoint that has failed without a single success for long enough
//! is disabled: its deliveries stop piling up in the retry schedule, and its owner is told
//! by an operational event instead of finding out from a dashboard days later.

use std::time::Duration;

use super::subscription::Subscription;
use super::time::Timestamp;

/// The default period of unbroken failure after which an endpoint is disabled.
pub const DEFAULT_AUTO_DISABLE_AFTER_SECONDS: u64 = 5 * 24 * 3600;

/// What one batch of attempts showed about one subscription's endpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub succeeded: bool,
    /// The earliest failed attempt of the batch.
    pub first_failure_at: Option<Timestamp>,
    /// The latest failed attempt of the batch.
    pub last_failure_at: Option<Timestamp>,
    /// The URL that answered 410 Gone, if one did.
    pub gone_url: Option<String>,
}

impl Observed {
    pub fn success(&mut self) {
        self.succeeded = true;
    }

    pub fn failure(&mut self, at: Timestamp) {
        self.first_failure_at = Some(self.first_failure_at.map_or(at, |t| t.min(at)));
        self.last_failure_at = Some(self.last_failure_at.map_or(at, |t| t.max(at)));
    }

    pub fn gone(&mut self, url: &str, at: Timestamp) {
        self.failure(at);
        self.gone_url = Some(url.to_string());
    }
}

/// Why the service disabled an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisableCause {
    Gone,
    FailingTooLong,
}

impl DisableCause {
    /// The machine-readable reason carried by the operational event.
    pub fn code(self) -> &'static str {
        match self {
            DisableCause::Gone => "gone",
            DisableCause::FailingTooLong => "failing",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum HealthChange {
    /// A success ended a run of failures.
    Recovered,
    /// The first failure after a success (or ever).
    StartedFailing(Timestamp),
    Disabled(DisableCause),
}

/// The change `observed` calls for on `sub` at `now`, if any, applied to `sub`. The
/// period is measured between failed attempts, not to the moment this runs, so an endpoint
/// is disabled only by an attempt that failed a whole period after the first one.
/// Run it on a fresh read before a conditional write: what a stale read called for may no
/// longer apply (the customer re-enabled the endpoint, or pointed it elsewhere).
pub fn apply(
    sub: &mut Subscription,
    observed: &Observed,
    now: Timestamp,
    auto_disable_after: Duration,
) -> Option<HealthChange> {
    if !sub.enabled {
        return None;
    }
    if observed.gone_url.as_deref() == Some(sub.url.as_str()) {
        disable(sub, now, "the endpoint answered 410 Gone".into());
        return Some(HealthChange::Disabled(DisableCause::Gone));
    }
    if observed.succeeded {
        return sub.failing_since.take().map(|_| HealthChange::Recovered);
    }
    let (first_failure, last_failure) = (observed.first_failure_at?, observed.last_failure_at?);
    match sub.failing_since {
        None => {
            sub.failing_since = Some(first_failure);
            Some(HealthChange::StartedFailing(first_failure))
        }
        Some(since) if last_failure.since(since) >= auto_disable_after => {
            let reason = format!(
                "every attempt failed for {} (since {})",
                describe_period(last_failure.since(since)),
                since.to_rfc3339()
            );
            disable(sub, now, reason);
            Some(HealthChange::Disabled(DisableCause::FailingTooLong))
        }
        Some(_) => None,
    }
}

fn disable(sub: &mut Subscription, now: Timestamp, reason: String) {
    sub.enabled = false;
    sub.disabled_reason = Some(reason);
    sub.disabled_at = Some(now);
}

/// The customer turned the endpoint back on: its history of failure is forgotten.
pub fn reenable(sub: &mut Subscription) {
    sub.enabled = true;
    sub.disabled_reason = None;
    sub.disabled_at = None;
    sub.failing_since = None;
}

/// "5 days", "3 hours", "2 minutes", "40 seconds": the largest whole unit.
fn describe_period(period: Duration) -> String {
    let seconds = period.as_secs();
    let (n, unit) = match seconds {
        s if s >= 86_400 => (s / 86_400, "day"),
        s if s >= 3_600 => (s / 3_600, "hour"),
        s if s >= 60 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const PERIOD: i64 = 5 * DAY;

    fn sub() -> Subscription {
        serde_json::from_value(serde_json::json!({
            "id": "wh_1", "account_id": "a", "url": "https://example.com/hook",
            "event_types": ["*"], "enabled": true, "timeout_seconds": 10,
            "secrets": [], "created_at": 0, "updated_at": 0
        }))
        .unwrap()
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn failed(ms: i64) -> Observed {
        let mut o = Observed::default();
        o.failure(at(ms));
        o
    }

    fn period() -> Duration {
        Duration::from_millis(PERIOD as u64)
    }

    #[test]
    fn a_first_failure_starts_the_clock_and_a_success_stops_it() {
        let mut s = sub();
        assert_eq!(
            apply(&mut s, &failed(10), at(20), period()),
            Some(HealthChange::StartedFailing(at(10)))
        );
        assert_eq!(s.failing_since, Some(at(10)));
        // Later failures inside the period change nothing: no write per failed attempt.
        assert_eq!(apply(&mut s, &failed(DAY), at(DAY), period()), None);
        let mut ok = failed(DAY);
        ok.success();
        assert_eq!(
            apply(&mut s, &ok, at(DAY), period()),
            Some(HealthChange::Recovered)
        );
        assert_eq!(s.failing_since, None);
        assert_eq!(apply(&mut s, &ok, at(DAY), period()), None);
    }

    #[test]
    fn failing_for_the_whole_period_disables_with_a_reason() {
        let mut s = sub();
        apply(&mut s, &failed(0), at(0), period());
        assert_eq!(
            apply(&mut s, &failed(PERIOD - 1), at(PERIOD - 1), period()),
            None
        );
        // Handled late, an attempt still counts at the time it was made.
        assert_eq!(
            apply(&mut s, &failed(PERIOD - 1), at(PERIOD + 500), period()),
            None
        );
        assert!(s.enabled);
        assert_eq!(
            apply(&mut s, &failed(PERIOD), at(PERIOD), period()),
            Some(HealthChange::Disabled(DisableCause::FailingTooLong))
        );
        assert!(!s.enabled);
        assert_eq!(s.disabled_at, Some(at(PERIOD)));
        assert_eq!(
            s.disabled_reason.as_deref(),
            Some("every attempt failed for 5 days (since 1970-01-01T00:00:00Z)")
        );
        // Already disabled: nothing more to do, nothing announced twice.
        assert_eq!(
            apply(&mut s, &failed(PERIOD + 1), at(PERIOD + 1), period()),
            None
        );
        reenable(&mut s);
        assert!(s.enabled && s.failing_since.is_none() && s.disabled_reason.is_none());
    }

    #[test]
    fn gone_disables_only_the_url_that_answered_it() {
        let mut s = sub();
        let mut o = Observed::default();
        o.gone("https://old.example.com/hook", at(5));
        // The customer pointed the subscription elsewhere while the attempt was in flight.
        assert_eq!(
            apply(&mut s, &o, at(5), period()),
            Some(HealthChange::StartedFailing(at(5)))
        );
        assert!(s.enabled);
        o.gone("https://example.com/hook", at(6));
        assert_eq!(
            apply(&mut s, &o, at(6), period()),
            Some(HealthChange::Disabled(DisableCause::Gone))
        );
        assert_eq!(
            s.disabled_reason.as_deref(),
            Some("the endpoint answered 410 Gone")
        );
    }

    #[test]
    fn periods_read_in_their_largest_unit() {
        assert_eq!(
            describe_period(Duration::from_millis(5 * DAY as u64)),
            "5 days"
        );
        assert_eq!(describe_period(Duration::from_millis(3_600_000)), "1 hour");
        assert_eq!(describe_period(Duration::from_millis(2_500)), "2 seconds");
    }
}
