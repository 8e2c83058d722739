//! The retry policy: how a finished attempt is classified and how long to wait before the next.

use std::time::Duration;

use super::subscription::{Subscription, MAX_ATTEMPTS_LIMIT, MAX_RETRY_STEP_SECONDS};

/// Seconds between attempts after the first: 8 attempts over about 28 hours.
pub const DEFAULT_SCHEDULE: [u32; 7] = [5, 300, 1800, 7200, 18000, 36000, 36000];
/// In the default schedule, timeouts and 429s wait at least this long: hammering an
/// overloaded endpoint 5 s later only makes it worse.
const OVERLOAD_FLOOR_SECS: u64 = 60;
const JITTER: f64 = 0.2;

/// The queues keep a message 14 days (SQS's longest retention); a message that expires is
/// dropped without reaching any dead-letter queue. A delivery's retries must end before,
/// with a day to spare for deferrals and slow batches.
pub const MAX_RETRY_HORIZON: Duration = Duration::from_secs(13 * 86_400);
/// SQS hides a received message for at most 12 hours counted from its receipt, not from
/// the change: asking for more is refused, and the retry then comes back at the queue's
/// default instead.
pub const MAX_VISIBILITY_FROM_RECEIPT: Duration = Duration::from_secs(12 * 3600);
/// Between the receipt and the handler's first look: the event source mapping's own time.
const RECEIPT_MARGIN: Duration = Duration::from_secs(60);

/// The first wait of a delivery parked behind a failing endpoint's probe.
pub const FIRST_PARKING: Duration = Duration::from_secs(30);
/// The longest: a delivery parked this long is looked at again at least this often, so an
/// endpoint that came back gets its backlog within about this much.
pub const MAX_PARKING: Duration = Duration::from_secs(600);

/// How long a delivery waits, without spending an attempt, when its endpoint is failing and
/// its probe is in flight: 30 s, doubling with each parking of the same delivery up to 10
/// min, ±20 % (`unit` is a uniform sample in [0, 1)). Waiting a second and trying again, as
/// a busy healthy endpoint's deliveries do, would cycle every delivery of a dead endpoint
/// through the queue every second, ahead of every other account's new deliveries; growing
/// waits make each parked delivery cost a handful of receives over its whole wait.
pub fn parking_delay(parkings: u32, unit: f64) -> Duration {
    doubling(FIRST_PARKING, MAX_PARKING, parkings, unit)
}

/// The first wait of a delivery held for a failing endpoint's recovery, where the queue can
/// release it when a probe succeeds (`Queue::release_held`: the embedded runner). The wait
/// is then a backstop, for a recovery no probe in this process saw (a restart, another
/// process's attempt): long enough that a dead endpoint's backlog is not received and held
/// again every thirty seconds, ahead of every other account's deliveries.
pub const FIRST_HOLDING: Duration = Duration::from_secs(120);

/// How long a delivery held behind its failing endpoint's probe waits at most before it is
/// looked at again: 2 min, doubling with each holding of the same delivery up to
/// [`MAX_PARKING`], ±20 %. (One held behind its account's stalled probes waits its
/// `parking_delay`: its endpoint may be healthy, and only waiting for a probe slot.)
pub fn holding_delay(holdings: u32, unit: f64) -> Duration {
    doubling(FIRST_HOLDING, MAX_PARKING, holdings, unit)
}

/// `first` doubled `n` times, at most `max`, ±20 % (`unit` is a uniform sample in [0, 1)).
fn doubling(first: Duration, max: Duration, n: u32, unit: f64) -> Duration {
    let base = first.as_secs_f64() * 2f64.powi(n.min(16) as i32);
    let secs = base.min(max.as_secs_f64());
    Duration::from_secs_f64(secs * (1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0)))
}

/// The first wait of a delivery to an endpoint not yet heard from, when its account's probes
/// are all in flight.
pub const FIRST_UNPROVEN_WAIT: Duration = Duration::from_secs(1);
/// The longest: by then the probes have timed out and the endpoint is known to be failing
/// (its deliveries are parked from then on), or it has answered.
pub const MAX_UNPROVEN_WAIT: Duration = Duration::from_secs(30);

/// How long a delivery waits, without spending an attempt, when its endpoint has not
/// answered yet in this process and its account already has its probes in flight: 1 s,
/// doubling with each wait of the same delivery up to 30 s, ±20 %. Short at first, since
/// an endpoint that answers at once is proven within milliseconds (a new customer's first
/// burst); growing, since one that hangs would otherwise cycle its backlog every second.
pub fn unproven_wait(waits: u32, unit: f64) -> Duration {
    doubling(FIRST_UNPROVEN_WAIT, MAX_UNPROVEN_WAIT, waits, unit)
}

/// How long a message received `elapsed` ago may still be hidden.
pub fn visibility_left(elapsed: Duration) -> Duration {
    MAX_VISIBILITY_FROM_RECEIPT
        .saturating_sub(elapsed)
        .saturating_sub(RECEIPT_MARGIN)
}

/// What one attempt's result means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Succeeded,
    /// 410 Gone: the endpoint asks us to stop; the subscription is disabled.
    Gone,
    /// Worth trying again later.
    Retry(Failure),
    /// Will never work (e.g. a refused destination); not retried.
    Permanent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Status(u16),
    Timeout,
    Network,
}

pub fn classify_status(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Succeeded,
        410 => Verdict::Gone,
        _ => Verdict::Retry(Failure::Status(status)),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    schedule: Vec<u32>,
    max_attempts: u32,
    is_default: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            schedule: DEFAULT_SCHEDULE.to_vec(),
            max_attempts: DEFAULT_SCHEDULE.len() as u32 + 1,
            is_default: true,
        }
    }
}

impl RetryPolicy {
    /// The subscription's own schedule and budget where it sets them. A budget longer than
    /// the schedule repeats its last step; a schedule without a budget uses all its steps.
    pub fn for_subscription(sub: &Subscription) -> Self {
        Self::new(sub.max_attempts, sub.retry_schedule.as_deref())
    }

    pub fn new(max_attempts: Option<u32>, schedule: Option<&[u32]>) -> Self {
        match schedule.filter(|s| !s.is_empty()) {
            Some(steps) => RetryPolicy {
                schedule: steps.to_vec(),
                max_attempts: max_attempts.unwrap_or(steps.len() as u32 + 1).max(1),
                is_default: false,
            },
            None => RetryPolicy {
                max_attempts: max_attempts
                    .unwrap_or(DEFAULT_SCHEDULE.len() as u32 + 1)
                    .max(1),
                ..Self::default()
            },
        }
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The latest the last attempt can come after the first: every step at its longest
    /// jitter (a `Retry-After` can stretch a step further; the deliver handler guards that).
    pub fn horizon(&self) -> Duration {
        // Bounded by the largest budget a subscription may have: a budget straight from a
        // request (4 billion, say) must not become 4 billion steps to add up.
        let attempts = self.max_attempts.min(MAX_ATTEMPTS_LIMIT + 1);
        let secs: f64 = (1..attempts)
            .map(|attempt| {
                let index = (attempt as usize - 1).min(self.schedule.len() - 1);
                f64::from(self.schedule[index]).min(MAX_RETRY_STEP_SECONDS as f64) * (1.0 + JITTER)
            })
            .sum();
        Duration::from_secs_f64(secs)
    }

    /// How long to wait after failed attempt number `attempt` (1-based), or `None` when the
    /// budget is spent. `unit` is a uniform sample in [0, 1) for the ±20 % jitter.
    pub fn next_delay(
        &self,
        attempt: u32,
        failure: Failure,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let index = (attempt.max(1) as usize - 1).min(self.schedule.len() - 1);
        let step = self.schedule[index] as f64;
        let honours_retry_after = matches!(failure, Failure::Status(429 | 503));
        let mut secs = match retry_after.filter(|_| honours_retry_after) {
            Some(asked) => asked.as_secs_f64().clamp(step, 2.0 * step),
            None => step * (1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0)),
        };
        let overloaded = matches!(failure, Failure::Timeout | Failure::Status(429));
        if self.is_default && overloaded {
            secs = secs.max(OVERLOAD_FLOOR_SECS as f64);
        }
        Some(Duration::from_secs_f64(
            secs.min(MAX_RETRY_STEP_SECONDS as f64),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parking_grows_from_thirty_seconds_and_holding_from_two_minutes_to_ten_with_jitter() {
        assert_eq!(unproven_wait(0, 0.5), Duration::from_secs(1));
        assert_eq!(unproven_wait(3, 0.5), Duration::from_secs(8));
        assert_eq!(unproven_wait(u32::MAX, 0.5), Duration::from_secs(30));
        assert_eq!(parking_delay(0, 0.5), Duration::from_secs(30));
        assert_eq!(parking_delay(1, 0.5), Duration::from_secs(60));
        assert_eq!(parking_delay(5, 0.5), Duration::from_secs(600));
        assert_eq!(parking_delay(u32::MAX, 0.5), Duration::from_secs(600));
        assert_eq!(parking_delay(0, 0.0), Duration::from_secs(24));
        assert!(parking_delay(0, 0.999_999) < Duration::from_secs(36));
        assert_eq!(holding_delay(0, 0.5), Duration::from_secs(120));
        assert_eq!(holding_delay(1, 0.5), Duration::from_secs(240));
        assert_eq!(holding_delay(3, 0.5), Duration::from_secs(600));
        assert_eq!(holding_delay(0, 0.0), Duration::from_secs(96));
    }

    const S500: Failure = Failure::Status(500);

    #[test]
    fn the_horizon_counts_every_step_at_its_longest() {
        // The default: 5 s + 5 min + … + 10 h = 27 h 35 min 5 s, plus 20 %.
        let default = RetryPolicy::default().horizon().as_secs_f64().round();
        assert_eq!(default, 99_305.0 * 1.2);
        assert!(RetryPolicy::default().horizon() < MAX_RETRY_HORIZON);
        // A budget longer than the schedule repeats its last step.
        let repeated = RetryPolicy::new(Some(4), Some(&[10, 100])).horizon();
        assert_eq!(repeated.as_secs_f64().round(), (10.0 + 100.0 + 100.0) * 1.2);
        let longest = RetryPolicy::new(Some(30), Some(&[43_200])).horizon();
        assert!(longest > MAX_RETRY_HORIZON);
        assert_eq!(RetryPolicy::new(Some(1), None).horizon(), Duration::ZERO);
        // An absurd budget from a request is counted as the largest allowed, at once.
        let absurd = RetryPolicy::new(Some(u32::MAX), None).horizon();
        assert_eq!(
            absurd,
            RetryPolicy::new(Some(MAX_ATTEMPTS_LIMIT + 1), None).horizon()
        );
    }

    #[test]
    fn visibility_is_counted_from_the_receipt() {
        let h = Duration::from_secs(3600);
        assert_eq!(visibility_left(Duration::ZERO), 12 * h - RECEIPT_MARGIN);
        assert_eq!(visibility_left(h), 11 * h - RECEIPT_MARGIN);
        assert_eq!(visibility_left(13 * h), Duration::ZERO);
    }

    #[test]
    fn default_schedule_has_eight_attempts_with_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts(), 8);
        assert_eq!(
            p.next_delay(1, S500, None, 0.5),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            p.next_delay(1, S500, None, 0.0),
            Some(Duration::from_secs(4))
        );
        let hi = p
            .next_delay(1, S500, None, 0.999_999)
            .unwrap()
            .as_secs_f64();
        assert!((5.99..=6.0).contains(&hi));
        assert_eq!(
            p.next_delay(7, S500, None, 0.5),
            Some(Duration::from_secs(36000))
        );
        assert_eq!(p.next_delay(8, S500, None, 0.5), None);
    }

    #[test]
    fn every_default_step_fits_one_visibility_change() {
        let p = RetryPolicy::default();
        for attempt in 1..8 {
            let d = p.next_delay(attempt, S500, None, 0.999_999).unwrap();
            assert!(d <= Duration::from_secs(12 * 3600));
        }
    }

    #[test]
    fn retry_after_is_honoured_within_one_to_two_steps() {
        let p = RetryPolicy::default();
        let s = |secs| Some(Duration::from_secs(secs));
        assert_eq!(p.next_delay(2, Failure::Status(503), s(400), 0.5), s(400));
        assert_eq!(p.next_delay(2, Failure::Status(503), s(1), 0.5), s(300));
        assert_eq!(p.next_delay(2, Failure::Status(503), s(9999), 0.5), s(600));
        // Only 429 and 503 carry a meaningful Retry-After.
        assert_eq!(p.next_delay(2, S500, s(9999), 0.5), s(300));
    }

    #[test]
    fn timeouts_and_429_wait_at_least_a_minute_in_the_default_schedule() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.next_delay(1, Failure::Timeout, None, 0.5),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            p.next_delay(1, Failure::Status(429), Some(Duration::from_secs(2)), 0.5),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            p.next_delay(1, Failure::Network, None, 0.5),
            Some(Duration::from_secs(5))
        );
        let custom = RetryPolicy::new(None, Some(&[1, 2]));
        assert_eq!(
            custom.next_delay(1, Failure::Timeout, None, 0.5),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn subscription_overrides_budget_and_schedule() {
        let p = RetryPolicy::new(Some(5), Some(&[1, 2]));
        assert_eq!(p.max_attempts(), 5);
        assert_eq!(
            p.next_delay(4, S500, None, 0.5),
            Some(Duration::from_secs(2))
        );
        assert_eq!(p.next_delay(5, S500, None, 0.5), None);
        assert_eq!(RetryPolicy::new(None, Some(&[1, 2])).max_attempts(), 3);
        assert_eq!(RetryPolicy::new(Some(2), None).max_attempts(), 2);
    }

    #[test]
    fn statuses_classify() {
        assert_eq!(classify_status(204), Verdict::Succeeded);
        assert_eq!(classify_status(410), Verdict::Gone);
        assert_eq!(classify_status(301), Verdict::Retry(Failure::Status(301)));
        assert_eq!(classify_status(500), Verdict::Retry(S500));
    }
}
