//! Fairness between endpoints: a per-subscription cap on attempts in flight and the
//! subscription's own rate limit. A delivery over either is not attempted but deferred, so a
//! slow or rate-limited endpoint waits its turn without holding up anyone else's.
//!
//! The counts are per process: one local runner sees them all; on Lambda each instance
//! enforces them alone, so the totals scale with the function's concurrency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::ids::SubscriptionId;
use domain::subscription::Subscription;

/// How long a delivery over the in-flight cap waits before its next try.
pub const IN_FLIGHT_DEFERRAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Endpoint {
    in_flight: usize,
    tokens: f64,
    refilled: Instant,
}

#[derive(Debug)]
pub struct Limiter {
    max_in_flight: usize,
    endpoints: Mutex<HashMap<SubscriptionId, Endpoint>>,
}

/// Holds one in-flight slot of a subscription until dropped.
pub struct Permit {
    limiter: Arc<Limiter>,
    subscription_id: SubscriptionId,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut endpoints = self.limiter.endpoints.lock().expect("limiter lock");
        if let Some(e) = endpoints.get_mut(&self.subscription_id) {
            e.in_flight = e.in_flight.saturating_sub(1);
        }
    }
}

impl Limiter {
    pub fn new(max_in_flight: usize) -> Arc<Self> {
        Arc::new(Limiter {
            max_in_flight: max_in_flight.max(1),
            endpoints: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one attempt to `sub` now, or how long to wait for one.
    pub fn try_acquire(
        self: &Arc<Self>,
        sub: &Subscription,
        now: Instant,
    ) -> Result<Permit, Duration> {
        let mut endpoints = self.endpoints.lock().expect("limiter lock");
        let burst = sub.rate_limit_per_second.map_or(0.0, f64::from);
        let e = endpoints.entry(sub.id.clone()).or_insert(Endpoint {
            in_flight: 0,
            tokens: burst,
            refilled: now,
        });
        // A failing endpoint (no success since its last failure) gets one attempt at a
        // time, like a half-open circuit breaker: the first answer tells whether it is back,
        // and a hanging endpoint holds one delivery slot, not ten.
        let cap = if sub.failing_since.is_some() {
            1
        } else {
            self.max_in_flight
        };
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
        Ok(Permit {
            limiter: self.clone(),
            subscription_id: sub.id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(rate: Option<u32>) -> Subscription {
        serde_json::from_value(serde_json::json!({
            "id": "wh_1", "account_id": "a", "url": "https://x", "event_types": ["*"],
            "enabled": true, "timeout_seconds": 10, "secrets": [], "created_at": 0,
            "updated_at": 0, "rate_limit_per_second": rate
        }))
        .unwrap()
    }

    #[test]
    fn caps_attempts_in_flight_per_subscription() {
        let limiter = Limiter::new(2);
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
        let limiter = Limiter::new(100);
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
    fn a_failing_endpoint_gets_one_attempt_at_a_time() {
        let limiter = Limiter::new(10);
        let now = Instant::now();
        let mut failing = sub(None);
        failing.failing_since = Some(domain::time::Timestamp::EPOCH);
        let probe = limiter.try_acquire(&failing, now).unwrap();
        assert_eq!(
            limiter.try_acquire(&failing, now).err(),
            Some(IN_FLIGHT_DEFERRAL)
        );
        drop(probe);
        assert!(limiter.try_acquire(&failing, now).is_ok());
    }
}
