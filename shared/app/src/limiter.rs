//! Fairness between endpoints and between accounts: a per-subscription cap on attempts in
//! flight, the subscription's own rate limit, and a per-account cap on *slow* attempts in
//! flight. A delivery over any of them is not attempted but deferred, so a slow or
//! rate-limited endpoint waits its turn without holding up anyone else's.
//!
//! The account cap counts only attempts in flight for longer than [`SLOW_ATTEMPT`], or to
//! an endpoint already failing: an account whose endpoints answer quickly is never held
//! back however much it sends, while one whose endpoints hang can occupy at most that many
//! delivery slots (a slot is held for the whole batch an attempt is in), leaving the rest
//! to everyone else. A failing endpoint also gets one attempt in flight at a time.
//!
//! The counts are per process: one local runner sees them all; on Lambda each instance
//! enforces them alone, so the totals scale with the function's concurrency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::subscription::Subscription;

/// How long a delivery over an in-flight cap waits before its next try.
pub const IN_FLIGHT_DEFERRAL: Duration = Duration::from_secs(1);
/// An attempt in flight for longer than this counts against its account's slow cap.
pub const SLOW_ATTEMPT: Duration = Duration::from_secs(1);
/// How long a delivery of an account at its slow cap waits before its next try. Its
/// endpoints are hanging (each slot frees only at an attempt's timeout, up to 30 s), so
/// coming back every second would only churn the queue: thousands of deferrals a second
/// for a busy account, crowding everyone else's deliveries in the queue itself.
pub const SLOW_ACCOUNT_DEFERRAL: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Endpoint {
    in_flight: usize,
    tokens: f64,
    refilled: Instant,
}

/// One attempt in flight, as its account's cap sees it.
#[derive(Debug)]
struct InFlight {
    at: Instant,
    /// To an endpoint already failing: counted as slow from its start.
    suspect: bool,
}

#[derive(Debug, Default)]
struct Counts {
    endpoints: HashMap<String, Endpoint>,
    /// Per account, each attempt in flight, by permit number.
    accounts: HashMap<String, HashMap<u64, InFlight>>,
    next_permit: u64,
}

#[derive(Debug)]
pub struct Limiter {
    max_in_flight: usize,
    max_slow_per_account: usize,
    counts: Mutex<Counts>,
}

/// Holds one in-flight slot of a subscription (and of its account) until dropped.
pub struct Permit {
    limiter: Arc<Limiter>,
    subscription_id: String,
    account_id: String,
    number: u64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.limiter.counts.lock().expect("limiter lock");
        if let Some(e) = counts.endpoints.get_mut(&self.subscription_id) {
            e.in_flight = e.in_flight.saturating_sub(1);
        }
        if let Some(started) = counts.accounts.get_mut(&self.account_id) {
            started.remove(&self.number);
            if started.is_empty() {
                counts.accounts.remove(&self.account_id);
            }
        }
    }
}

impl Limiter {
    /// Caps attempts in flight per subscription, and slow ones per account.
    pub fn new(max_in_flight: usize, max_slow_per_account: usize) -> Arc<Self> {
        Arc::new(Limiter {
            max_in_flight: max_in_flight.max(1),
            max_slow_per_account: max_slow_per_account.max(1),
            counts: Mutex::new(Counts::default()),
        })
    }

    /// A slot for one attempt to `sub` now, or how long to wait for one.
    pub fn try_acquire(
        self: &Arc<Self>,
        sub: &Subscription,
        now: Instant,
    ) -> Result<Permit, Duration> {
        let suspect = sub.failing_since.is_some();
        let mut counts = self.counts.lock().expect("limiter lock");
        let slow = counts.accounts.get(&sub.account_id).map_or(0, |started| {
            started
                .values()
                .filter(|a| a.suspect || now.saturating_duration_since(a.at) > SLOW_ATTEMPT)
                .count()
        });
        if slow >= self.max_slow_per_account {
            return Err(SLOW_ACCOUNT_DEFERRAL);
        }
        let burst = sub.rate_limit_per_second.map_or(0.0, f64::from);
        let e = counts.endpoints.entry(sub.id.clone()).or_insert(Endpoint {
            in_flight: 0,
            tokens: burst,
            refilled: now,
        });
        // A failing endpoint (no success since its last failure) gets one attempt at a
        // time, like a half-open circuit breaker: the first answer tells whether it is back.
        let cap = if suspect { 1 } else { self.max_in_flight };
        if e.in_flight >= cap {
            return Err(IN_FLIGHT_DEFERRAL);
        }
        if let Some(rate) = sub.rate_limit_per_second.filter(|r| *r > 0) {
            let rate = f64::from(rate);
            let elapsed = now.saturating_duration_since(e.refilled).as_secs_f64();
            e.tokens = (e.tokens + elapsed * rate).min(rate);
            e.refilled = now;
            if e.tokens < 1.0 {
                return Err(Duration::from_secs_f64((1.0 - e.tokens) / rate));
            }
            e.tokens -= 1.0;
        }
        e.in_flight += 1;
        let number = counts.next_permit;
        counts.next_permit += 1;
        counts
            .accounts
            .entry(sub.account_id.clone())
            .or_default()
            .insert(number, InFlight { at: now, suspect });
        Ok(Permit {
            limiter: self.clone(),
            subscription_id: sub.id.clone(),
            account_id: sub.account_id.clone(),
            number,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(rate: Option<u32>) -> Subscription {
        sub_of("a", "wh_1", rate)
    }

    fn sub_of(account: &str, id: &str, rate: Option<u32>) -> Subscription {
        serde_json::from_value(serde_json::json!({
            "id": id, "account_id": account, "url": "https://x", "event_types": ["*"],
            "enabled": true, "timeout_seconds": 10, "secrets": [], "created_at": 0,
            "updated_at": 0, "rate_limit_per_second": rate
        }))
        .unwrap()
    }

    #[test]
    fn caps_attempts_in_flight_per_subscription() {
        let limiter = Limiter::new(2, 100);
        let now = Instant::now();
        let a = limiter.try_acquire(&sub(None), now).unwrap();
        let _b = limiter.try_acquire(&sub(None), now).unwrap();
        assert_eq!(
            limiter.try_acquire(&sub(None), now).err(),
            Some(IN_FLIGHT_DEFERRAL)
        );
        drop(a);
        assert!(limiter.try_acquire(&sub(None), now).is_ok());
    }

    #[test]
    fn rate_limits_with_a_one_second_burst() {
        let limiter = Limiter::new(100, 100);
        let now = Instant::now();
        let s = sub(Some(2));
        let _p: Vec<Permit> = (0..2)
            .map(|_| limiter.try_acquire(&s, now).unwrap())
            .collect();
        let wait = limiter.try_acquire(&s, now).err().unwrap();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(limiter
            .try_acquire(&s, now + Duration::from_millis(500))
            .is_ok());
        assert!(limiter
            .try_acquire(&s, now + Duration::from_millis(600))
            .is_err());
    }

    #[test]
    fn an_account_may_hold_only_so_many_slow_attempts_and_fast_ones_never_count() {
        let limiter = Limiter::new(100, 2);
        let t0 = Instant::now();
        let hanging: Vec<Permit> = (0..2)
            .map(|i| {
                limiter
                    .try_acquire(&sub_of("a", &format!("wh_{i}"), None), t0)
                    .unwrap()
            })
            .collect();
        // Fresh attempts are not slow yet: more of the account's go out.
        let later = t0 + Duration::from_millis(500);
        let quick = limiter
            .try_acquire(&sub_of("a", "wh_9", None), later)
            .unwrap();
        drop(quick);
        // Past the slow mark, the account's two hanging attempts fill its share...
        let slow = t0 + SLOW_ATTEMPT + Duration::from_millis(1);
        assert_eq!(
            limiter.try_acquire(&sub_of("a", "wh_7", None), slow).err(),
            Some(SLOW_ACCOUNT_DEFERRAL)
        );
        // ...and another account goes on as before.
        assert!(limiter
            .try_acquire(&sub_of("b", "wh_b", None), slow)
            .is_ok());
        // When one of them ends, the account gets its slot back.
        drop(hanging);
        assert!(limiter
            .try_acquire(&sub_of("a", "wh_7", None), slow)
            .is_ok());
    }

    #[test]
    fn a_failing_endpoint_gets_one_attempt_at_a_time_and_counts_as_slow_at_once() {
        let limiter = Limiter::new(10, 2);
        let now = Instant::now();
        let mut failing = sub_of("a", "wh_f", None);
        failing.failing_since = Some(0);
        let probe = limiter.try_acquire(&failing, now).unwrap();
        assert_eq!(
            limiter.try_acquire(&failing, now).err(),
            Some(IN_FLIGHT_DEFERRAL)
        );
        let mut other = sub_of("a", "wh_g", None);
        other.failing_since = Some(0);
        let _second = limiter.try_acquire(&other, now).unwrap();
        // Two suspect attempts fill the account's share without waiting a second.
        assert_eq!(
            limiter.try_acquire(&sub_of("a", "wh_ok", None), now).err(),
            Some(SLOW_ACCOUNT_DEFERRAL)
        );
        drop(probe);
        assert!(limiter
            .try_acquire(&sub_of("a", "wh_ok", None), now)
            .is_ok());
    }
}
