//! Endpoint health. An endpoint that has failed without a single success for long enough
//! is disabled: its deliveries stop piling up in the retry schedule, and its owner is told
//! by an operational event instead of finding out from a dashboard days later.

use std::time::Duration;

use super::subscription::Subscription;
use super::time::Timestamp;

/// The default period of unbroken failure after which an endpoint is disabled.
pub const DEFAULT_AUTO_DISABLE_AFTER_SECONDS: u64 = 5 * 24 * 3600;
/// The default number of failed attempts in a row that makes an endpoint `failing`.
pub const DEFAULT_FAILING_AFTER_FAILURES: u32 = 5;
/// An endpoint announced failing is not announced failing again (nor recovered from the
/// runs in between) until this long after: one that flaps is told of once an hour, not at
/// every other batch.
pub const FAILING_REANNOUNCE_AFTER: Duration = Duration::from_secs(3600);

/// When the service steps in: the failing threshold and the auto-disable period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    pub failing_after_failures: u32,
    pub auto_disable_after: Duration,
}

/// What one batch of attempts showed about one subscription's endpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub succeeded: bool,
    /// Failed attempts in the batch.
    pub failures: u32,
    /// The error of the latest failed attempt, and its cause's key (`http_500`, …).
    pub last_error: Option<(String, String)>,
    /// The delivery of the latest failed attempt.
    pub last_failed_delivery: Option<String>,
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
        self.failures = self.failures.saturating_add(1);
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
    /// A success ended a run of failures; `announced`: the run had been announced as
    /// failing, so its end is announced too.
    Recovered {
        announced: bool,
    },
    /// The first failure after a success (or ever).
    StartedFailing(Timestamp),
    /// More failures in a row, still under the threshold: counted, nothing to announce.
    CountedFailures,
    /// The run of failures crossed the threshold: announce it (once per run).
    Failing {
        consecutive: u32,
    },
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
    policy: HealthPolicy,
) -> Option<HealthChange> {
    if !sub.enabled {
        return None;
    }
    if observed.gone_url.as_deref() == Some(sub.url.as_str()) {
        disable(sub, now, "the endpoint answered 410 Gone".into());
        return Some(HealthChange::Disabled(DisableCause::Gone));
    }
    if observed.succeeded {
        if sub.failing_since.is_none() && sub.consecutive_failures == 0 {
            return None;
        }
        // Announced during this run (the announcement is kept after it, for the cooldown).
        let announced = matches!(
            (sub.failing_announced_at, sub.failing_since),
            (Some(at), Some(since)) if at >= since
        );
        sub.failing_since = None;
        sub.consecutive_failures = 0;
        return Some(HealthChange::Recovered { announced });
    }
    let (first_failure, last_failure) = (observed.first_failure_at?, observed.last_failure_at?);
    let started = match sub.failing_since {
        None => {
            sub.failing_since = Some(first_failure);
            true
        }
        Some(since) if last_failure.since(since) >= policy.auto_disable_after => {
            let reason = format!(
                "every attempt failed for {} (since {})",
                describe_period(last_failure.since(since)),
                since.to_rfc3339()
            );
            disable(sub, now, reason);
            return Some(HealthChange::Disabled(DisableCause::FailingTooLong));
        }
        Some(_) => false,
    };
    // Counted only up to the threshold: past it, an endpoint costs no write per failed
    // attempt, announced or not.
    let threshold = policy.failing_after_failures.max(1);
    let announced_this_run = matches!(
        (sub.failing_announced_at, sub.failing_since),
        (Some(at), Some(since)) if at >= since
    );
    if !announced_this_run {
        let counted = sub.consecutive_failures < threshold;
        if counted {
            sub.consecutive_failures = sub.consecutive_failures.saturating_add(observed.failures);
        }
        let cooled = sub
            .failing_announced_at
            .is_none_or(|at| now.since(at) >= FAILING_REANNOUNCE_AFTER);
        if sub.consecutive_failures >= threshold && cooled {
            sub.failing_announced_at = Some(now);
            return Some(HealthChange::Failing {
                consecutive: sub.consecutive_failures,
            });
        }
        if counted && !started {
            return Some(HealthChange::CountedFailures);
        }
    }
    started.then_some(HealthChange::StartedFailing(first_failure))
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
    sub.consecutive_failures = 0;
    sub.failing_announced_at = None;
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

    /// The 5-day period, and a threshold no test of the period reaches.
    fn period() -> HealthPolicy {
        HealthPolicy {
            failing_after_failures: u32::MAX,
            auto_disable_after: Duration::from_millis(PERIOD as u64),
        }
    }

    fn threshold(failures: u32) -> HealthPolicy {
        HealthPolicy {
            failing_after_failures: failures,
            ..period()
        }
    }

    #[test]
    fn a_first_failure_starts_the_clock_and_a_success_stops_it() {
        let mut s = sub();
        let policy = threshold(3);
        assert_eq!(
            apply(&mut s, &failed(10), at(20), policy),
            Some(HealthChange::StartedFailing(at(10)))
        );
        assert_eq!(s.failing_since, Some(at(10)));
        assert_eq!(s.consecutive_failures, 1);
        assert_eq!(
            apply(&mut s, &failed(20), at(20), policy),
            Some(HealthChange::CountedFailures)
        );
        // The third in a row crosses the threshold: announced once.
        assert_eq!(
            apply(&mut s, &failed(30), at(30), policy),
            Some(HealthChange::Failing { consecutive: 3 })
        );
        assert_eq!(s.failing_announced_at, Some(at(30)));
        // Later failures inside the period change nothing: no write per failed attempt.
        assert_eq!(apply(&mut s, &failed(DAY), at(DAY), policy), None);
        assert_eq!(s.consecutive_failures, 3);
        let mut ok = failed(DAY);
        ok.success();
        assert_eq!(
            apply(&mut s, &ok, at(DAY), policy),
            Some(HealthChange::Recovered { announced: true })
        );
        assert_eq!(s.failing_since, None);
        assert_eq!(s.consecutive_failures, 0);
        assert_eq!(apply(&mut s, &ok, at(DAY), policy), None);
        // A run that never reached the threshold ends quietly.
        apply(&mut s, &failed(DAY + 1), at(DAY + 1), policy);
        assert_eq!(
            apply(&mut s, &ok, at(DAY + 2), policy),
            Some(HealthChange::Recovered { announced: false })
        );
    }

    #[test]
    fn a_flapping_endpoint_is_announced_failing_at_most_once_an_hour() {
        let mut s = sub();
        let policy = threshold(2);
        let mut ok = Observed::default();
        ok.success();
        let run = |s: &mut Subscription, start: i64| {
            apply(s, &failed(start), at(start), policy);
            apply(s, &failed(start + 1), at(start + 1), policy)
        };
        assert_eq!(
            run(&mut s, 0),
            Some(HealthChange::Failing { consecutive: 2 })
        );
        assert_eq!(
            apply(&mut s, &ok, at(10), policy),
            Some(HealthChange::Recovered { announced: true })
        );
        // Failing again within the hour: counted, not announced; nor is its recovery.
        assert_eq!(run(&mut s, 1_000), Some(HealthChange::CountedFailures));
        assert_eq!(
            apply(&mut s, &failed(1_002), at(1_002), policy),
            None,
            "no write past the threshold"
        );
        assert_eq!(
            apply(&mut s, &ok, at(2_000), policy),
            Some(HealthChange::Recovered { announced: false })
        );
        // An hour after the last announcement, a run is announced again, and so is its end.
        let later = FAILING_REANNOUNCE_AFTER.as_millis() as i64 + 10;
        assert_eq!(
            run(&mut s, later),
            Some(HealthChange::Failing { consecutive: 2 })
        );
        // Still failing when the cooldown ends: announced at its next failure.
        let mut t = sub();
        run(&mut t, 0);
        apply(&mut t, &ok, at(10), policy);
        run(&mut t, 20);
        assert_eq!(
            apply(&mut t, &failed(later), at(later), policy),
            Some(HealthChange::Failing { consecutive: 2 })
        );
    }

    #[test]
    fn a_batch_of_failures_counts_each_and_may_cross_the_threshold_at_once() {
        let mut s = sub();
        let mut o = failed(1);
        o.failure(at(2));
        o.failure(at(3));
        assert_eq!(o.failures, 3);
        assert_eq!(
            apply(&mut s, &o, at(4), threshold(2)),
            Some(HealthChange::Failing { consecutive: 3 })
        );
        assert_eq!(s.failing_since, Some(at(1)));
    }

    #[test]
    fn failing_for_the_whole_period_disables_with_a_reason() {
        // Announced failing at its first failure: no write after, until the period ends.
        let mut s = sub();
        apply(&mut s, &failed(0), at(0), threshold(1));
        assert_eq!(
            apply(&mut s, &failed(PERIOD - 1), at(PERIOD - 1), threshold(1)),
            None
        );
        // Handled late, an attempt still counts at the time it was made.
        assert_eq!(
            apply(&mut s, &failed(PERIOD - 1), at(PERIOD + 500), threshold(1)),
            None
        );
        assert!(s.enabled);
        assert_eq!(
            apply(&mut s, &failed(PERIOD), at(PERIOD), threshold(1)),
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
            apply(&mut s, &failed(PERIOD + 1), at(PERIOD + 1), threshold(1)),
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
