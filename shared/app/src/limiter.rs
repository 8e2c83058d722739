//! Fairness between endpoints and between accounts: a per-subscription cap on attempts in
//! flight, the subscription's own rate limit, and a per-account cap on the attempts that may
//! hang. A delivery over any of them is not attempted but deferred, so a slow, failing or
//! rate-limited endpoint waits its turn without holding up anyone else's.
//!
//! An attempt holds its batch (a poller here, an invocation on Lambda) until it ends, and
//! the attempts that may hang for their whole timeout are those to an endpoint that is
//! failing, or that has not answered yet in this process: a new endpoint, or any endpoint
//! just after a start. These are probes. An account gets at most [`PROBES_PER_ACCOUNT`]
//! probes at once: an account whose forty endpoints hang holds four delivery slots, not all
//! of them, whatever their timeouts, from its very first deliveries (before any of them is
//! known to fail). A failing endpoint gets one probe at a time. An endpoint that answers
//! 2xx is proven, and its attempts are no longer probes.
//!
//! The counts are per process: one local runner sees them all; on Lambda each instance
//! enforces them alone, so the totals scale with the function's concurrency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::ids::{AccountId, SubscriptionId};
use domain::subscription::Subscription;

/// How long a delivery over a healthy endpoint's in-flight cap waits before its next try.
pub const IN_FLIGHT_DEFERRAL: Duration = Duration::from_secs(1);

/// Probes of each kind (attempts to failing endpoints; attempts to endpoints not yet proven)
/// one account may have in flight at once.
pub const PROBES_PER_ACCOUNT: usize = 4;

/// How fast the deliveries held for an endpoint come back once a probe shows it answers
/// (`Queue::release_held`), unless its own rate limit says otherwise: about what ten
/// attempts in flight at 100 ms each carry, so a recovered endpoint's backlog is not
/// received only to be deferred as busy.
pub const RELEASE_PER_SECOND: u32 = 100;

/// A probe running this long suggests its endpoint hangs: the account's other unproven
/// deliveries are parked rather than retried within seconds.
pub const PROBE_STALLED_AFTER: Duration = Duration::from_secs(1);

/// Why a delivery may not be attempted now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// The endpoint is healthy and has its fill of attempts in flight: try again shortly.
    Busy,
    /// The endpoint's own rate limit: try again after this long.
    RateLimited(Duration),
    /// The endpoint is failing and its probe (or its account's probes) are in flight: the
    /// delivery is parked (see `domain::retry::parking_delay`), not cycled every second;
    /// where the queue can release it, held for the endpoint until a probe succeeds
    /// (`domain::retry::holding_delay` is then only a backstop).
    Failing,
    /// The endpoint has not answered yet and its account's probes are in flight. While they
    /// are quick (a new customer's first burst, answered in milliseconds) the delivery waits
    /// briefly (see `domain::retry::unproven_wait`); once one of them has run past
    /// [`PROBE_STALLED_AFTER`] (`stalled`), the account's endpoints may be hanging and the
    /// delivery is parked as behind a failing endpoint: cycling every second through the
    /// ten-second timeouts of forty endpoints is what it must not do.
    Unproven { stalled: bool },
}

#[derive(Debug)]
struct Endpoint {
    in_flight: usize,
    tokens: f64,
    refilled: Instant,
    /// The URL that answered 2xx in this process: a subscription moved to another URL is
    /// not proven by its old one.
    proven_url: Option<String>,
}

/// The two kinds of probe, capped apart: an account's hanging failing endpoints must not
/// crowd out the first attempts to its other endpoints after a start, nor the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Probe {
    Failing,
    Unproven,
}

#[derive(Debug, Default)]
struct Counts {
    endpoints: HashMap<SubscriptionId, Endpoint>,
    /// When each probe in flight started, by account and kind; an entry without any is not
    /// kept.
    probes: HashMap<(AccountId, Probe), Vec<Instant>>,
}

#[derive(Debug)]
pub struct Limiter {
    max_in_flight: usize,
    counts: Mutex<Counts>,
}

/// Holds one in-flight slot of a subscription (and, for a probe, one of its account's) until
/// dropped.
pub struct Permit {
    limiter: Arc<Limiter>,
    subscription_id: SubscriptionId,
    /// The account, kind and start of a probe.
    probe_of: Option<((AccountId, Probe), Instant)>,
    url: String,
}

impl Permit {
    /// Whether this attempt is a probe (see [`Permit::succeeded`]).
    pub fn is_probe(&self) -> bool {
        self.probe_of.is_some()
    }

    /// The attempt got a 2xx: the endpoint is proven, and its next attempts are not probes.
    /// Says whether this attempt was a probe: the endpoint was failing or not yet heard
    /// from, so deliveries may be held for it (see `Queue::release_held`).
    pub fn succeeded(&self) -> bool {
        let mut counts = self.limiter.counts.lock().expect("limiter lock");
        if let Some(e) = counts.endpoints.get_mut(&self.subscription_id) {
            e.proven_url = Some(self.url.clone());
        }
        self.probe_of.is_some()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.limiter.counts.lock().expect("limiter lock");
        if let Some(e) = counts.endpoints.get_mut(&self.subscription_id) {
            e.in_flight = e.in_flight.saturating_sub(1);
        }
        if let Some((key, started)) = &self.probe_of {
            if let Some(starts) = counts.probes.get_mut(key) {
                if let Some(i) = starts.iter().position(|s| s == started) {
                    starts.swap_remove(i);
                }
                if starts.is_empty() {
                    counts.probes.remove(key);
                }
            }
        }
    }
}

impl Limiter {
    pub fn new(max_in_flight: usize) -> Arc<Self> {
        Arc::new(Limiter {
            max_in_flight: max_in_flight.max(1),
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Whether a delivery to `sub` would be parked if it were received now: its endpoint is
    /// failing and its probe (or its account's probes) are in flight, or it is unproven and
    /// its account's probes have stalled (the `Failing` and stalled `Unproven` refusals of
    /// [`Limiter::try_acquire`]). Fan-out asks it, so that such a delivery is sent parked
    /// instead of being received only to be sent back: two queue writes fewer for each
    /// delivery of a hanging account's backlog. Takes nothing. Asked at the send, not at
    /// the receipt: should the probes end in between, a delivery deliver would have
    /// attempted waits its parking (or, held, until its endpoint's release) all the same.
    pub fn would_park(&self, sub: &Subscription, now: Instant) -> bool {
        let counts = self.counts.lock().expect("limiter lock");
        let endpoint = counts.endpoints.get(&sub.id);
        let failing = sub.failing_since.is_some();
        let probe = if failing {
            Probe::Failing
        } else if endpoint.and_then(|e| e.proven_url.as_deref()) == Some(sub.url.as_str()) {
            return false;
        } else {
            Probe::Unproven
        };
        let account_probes = counts
            .probes
            .get(&(sub.account_id.clone(), probe))
            .map_or(&[][..], Vec::as_slice);
        let full = account_probes.len() >= PROBES_PER_ACCOUNT;
        match probe {
            Probe::Failing => full || endpoint.is_some_and(|e| e.in_flight >= 1),
            // Over its own cap, deliver would wait a second (`Busy`), not park it.
            Probe::Unproven if endpoint.is_some_and(|e| e.in_flight >= self.max_in_flight) => false,
            Probe::Unproven => {
                full && account_probes
                    .iter()
                    .any(|started| now.saturating_duration_since(*started) >= PROBE_STALLED_AFTER)
            }
        }
    }

    /// Whether a delivery to `sub` should be held for its endpoint now (see
    /// `Queue::release_held`): [`Limiter::would_park`], unless the endpoint has answered 2xx
    /// at its URL since `sub` was read. A batch's copy of a subscription can be tens of
    /// seconds old (one of its attempts may hang that long), and may still say failing
    /// after a probe succeeded and released the endpoint: a delivery held then would wait
    /// its whole backstop. The proof may also predate the failure `sub` records (no
    /// attempt since, which would have cleared it): the delivery then comes back within a
    /// second, is refused, and is held.
    pub fn would_hold(&self, sub: &Subscription, now: Instant) -> bool {
        let proven = {
            let counts = self.counts.lock().expect("limiter lock");
            counts
                .endpoints
                .get(&sub.id)
                .and_then(|e| e.proven_url.as_deref())
                == Some(sub.url.as_str())
        };
        !proven && self.would_park(sub, now)
    }

    /// A slot for one attempt to `sub` now, or why not.
    pub fn try_acquire(
        self: &Arc<Self>,
        sub: &Subscription,
        now: Instant,
    ) -> Result<Permit, Refusal> {
        let mut counts = self.counts.lock().expect("limiter lock");
        let Counts { endpoints, probes } = &mut *counts;
        let burst = sub.rate_limit_per_second.map_or(0.0, f64::from);
        let e = endpoints.entry(sub.id.clone()).or_insert(Endpoint {
            in_flight: 0,
            tokens: burst,
            refilled: now,
            proven_url: None,
        });
        // A failing endpoint (no success since its last failure) gets one attempt at a
        // time, like a half-open circuit breaker: the first answer tells whether it is back,
        // and a hanging endpoint holds one delivery slot, not ten. An unproven one is not
        // known to hang, but may. Each kind is capped per account.
        let failing = sub.failing_since.is_some();
        if failing {
            // It may have answered once in this process, but has failed since.
            e.proven_url = None;
        }
        let probe = if failing {
            Some(Probe::Failing)
        } else {
            (e.proven_url.as_deref() != Some(sub.url.as_str())).then_some(Probe::Unproven)
        };
        let key = probe.map(|kind| (sub.account_id.clone(), kind));
        let account_probes = key
            .as_ref()
            .and_then(|k| probes.get(k))
            .map_or(&[][..], Vec::as_slice);
        if failing && (e.in_flight >= 1 || account_probes.len() >= PROBES_PER_ACCOUNT) {
            return Err(Refusal::Failing);
        }
        if e.in_flight >= self.max_in_flight {
            return Err(Refusal::Busy);
        }
        if probe.is_some() && account_probes.len() >= PROBES_PER_ACCOUNT {
            let stalled = account_probes
                .iter()
                .any(|started| now.saturating_duration_since(*started) >= PROBE_STALLED_AFTER);
            return Err(Refusal::Unproven { stalled });
        }
        if let Some(rate) = sub.rate_limit_per_second.filter(|r| *r > 0) {
            let rate = f64::from(rate);
            let elapsed = now.saturating_duration_since(e.refilled).as_secs_f64();
            e.tokens = (e.tokens + elapsed * rate).min(rate);
            e.refilled = now;
            if e.tokens < 1.0 {
                return Err(Refusal::RateLimited(Duration::from_secs_f64(
                    (1.0 - e.tokens) / rate,
                )));
            }
            e.tokens -= 1.0;
        }
        e.in_flight += 1;
        let probe_of = key.map(|key| {
            probes.entry(key.clone()).or_default().push(now);
            (key, now)
        });
        Ok(Permit {
            limiter: self.clone(),
            subscription_id: sub.id.clone(),
            probe_of,
            url: sub.url.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(rate: Option<u32>) -> Subscription {
        endpoint("a", "wh_1", rate)
    }

    fn endpoint(account: &str, id: &str, rate: Option<u32>) -> Subscription {
        serde_json::from_value(serde_json::json!({
            "id": id, "account_id": account, "url": "https://x", "event_types": ["*"],
            "enabled": true, "timeout_seconds": 10, "secrets": [], "created_at": 0,
            "updated_at": 0, "rate_limit_per_second": rate
        }))
        .unwrap()
    }

    fn failing(account: &str, id: &str) -> Subscription {
        let mut s = endpoint(account, id, None);
        s.failing_since = Some(domain::time::Timestamp::EPOCH);
        s
    }

    #[test]
    fn caps_attempts_in_flight_per_subscription() {
        let limiter = Limiter::new(2);
        let now = Instant::now();
        let a = limiter.try_acquire(&sub(None), now).unwrap();
        let _b = limiter.try_acquire(&sub(None), now).unwrap();
        assert_eq!(
            limiter.try_acquire(&sub(None), now).err(),
            Some(Refusal::Busy)
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
        assert_eq!(wait, Refusal::RateLimited(Duration::from_millis(500)));
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
        let failing = failing("a", "wh_1");
        let probe = limiter.try_acquire(&failing, now).unwrap();
        assert_eq!(
            limiter.try_acquire(&failing, now).err(),
            Some(Refusal::Failing)
        );
        drop(probe);
        assert!(limiter.try_acquire(&failing, now).is_ok());
    }

    #[test]
    fn an_account_holds_a_bounded_number_of_probes_and_its_healthy_endpoints_are_free() {
        let limiter = Limiter::new(10);
        let now = Instant::now();
        let proven = |id: &str| {
            let p = limiter.try_acquire(&endpoint("a", id, None), now).unwrap();
            p.succeeded();
        };
        proven("wh_ok");
        let probes: Vec<Permit> = (0..PROBES_PER_ACCOUNT)
            .map(|i| {
                limiter
                    .try_acquire(&failing("a", &format!("wh_{i}")), now)
                    .unwrap()
            })
            .collect();
        // One more failing endpoint of the same account waits ...
        assert_eq!(
            limiter.try_acquire(&failing("a", "wh_more"), now).err(),
            Some(Refusal::Failing)
        );
        // ... but neither its proven healthy endpoints nor another account's failing ones do.
        let healthy: Vec<Permit> = (0..10)
            .map(|_| {
                limiter
                    .try_acquire(&endpoint("a", "wh_ok", None), now)
                    .unwrap()
            })
            .collect();
        let other = limiter.try_acquire(&failing("b", "wh_b"), now).unwrap();
        // Nor an endpoint never heard from (as every one is after a start), even once the
        // failing probes have hung past a second: the two kinds are capped apart.
        let later = now + PROBE_STALLED_AFTER * 5;
        let fresh = limiter.try_acquire(&endpoint("a", "wh_new", None), later);
        assert!(fresh.is_ok(), "{:?}", fresh.err());
        drop((healthy, other, fresh));
        // A probe that ends frees its account's slot.
        drop(probes);
        assert!(limiter.try_acquire(&failing("a", "wh_more"), now).is_ok());
        assert!(limiter.counts.lock().unwrap().probes.len() <= 1);
    }

    /// `would_park` answers what `try_acquire` would do, without taking anything.
    #[test]
    fn would_park_says_whether_a_delivery_would_be_parked_and_takes_nothing() {
        let limiter = Limiter::new(10);
        let now = Instant::now();
        let parked_on_receipt = |sub: &Subscription, at: Instant| {
            matches!(
                limiter.try_acquire(sub, at).err(),
                Some(Refusal::Failing | Refusal::Unproven { stalled: true })
            )
        };
        let proven = limiter
            .try_acquire(&endpoint("a", "wh_ok", None), now)
            .unwrap();
        proven.succeeded();
        drop(proven);
        let probes: Vec<Permit> = (0..PROBES_PER_ACCOUNT)
            .map(|i| {
                limiter
                    .try_acquire(&endpoint("a", &format!("wh_{i}"), None), now)
                    .unwrap()
            })
            .collect();
        let down = failing("b", "wh_down");
        let down_probe = limiter.try_acquire(&down, now).unwrap();
        let stalled = now + PROBE_STALLED_AFTER;
        let cases = [
            // The account's probes are quick so far: a short wait, not a parking.
            (endpoint("a", "wh_new", None), now, false),
            // They have run past a second: parked.
            (endpoint("a", "wh_new", None), stalled, true),
            // A proven endpoint of the same account is not held up.
            (endpoint("a", "wh_ok", None), stalled, false),
            // Another account is not either.
            (endpoint("c", "wh_c", None), stalled, false),
            // A failing endpoint whose probe is in flight: parked.
            (down.clone(), now, true),
            // A failing endpoint with no probe in flight: this one is its probe.
            (failing("b", "wh_other"), now, false),
        ];
        for (sub, at, parked) in &cases {
            assert_eq!(limiter.would_park(sub, *at), *parked, "{}", sub.id);
            // Asked twice: nothing was taken by asking.
            assert_eq!(limiter.would_park(sub, *at), *parked, "{}", sub.id);
            assert_eq!(parked_on_receipt(sub, *at), *parked, "{}", sub.id);
        }
        drop((probes, down_probe));
        assert!(!limiter.would_park(&endpoint("a", "wh_new", None), stalled));
        assert!(!limiter.would_park(&down, now));

        // An unproven endpoint at its own cap while its account's probes stall: deliver
        // would wait a second (`Busy`), so it is not parked either.
        let small = Limiter::new(2);
        let busy = endpoint("a", "wh_busy", None);
        let own: Vec<Permit> = (0..2)
            .map(|_| small.try_acquire(&busy, now).unwrap())
            .collect();
        let others: Vec<Permit> = (0..PROBES_PER_ACCOUNT - 2)
            .map(|i| {
                small
                    .try_acquire(&endpoint("a", &format!("wh_o{i}"), None), now)
                    .unwrap()
            })
            .collect();
        assert_eq!(small.try_acquire(&busy, stalled).err(), Some(Refusal::Busy));
        assert!(!small.would_park(&busy, stalled));
        assert!(small.would_park(&endpoint("a", "wh_next", None), stalled));
        drop((own, others));
    }

    #[test]
    fn an_endpoint_not_heard_from_is_probed_until_it_answers() {
        let limiter = Limiter::new(10);
        let now = Instant::now();
        // A new account's first deliveries, to endpoints that may hang: four at once.
        let first: Vec<Permit> = (0..PROBES_PER_ACCOUNT)
            .map(|i| {
                limiter
                    .try_acquire(&endpoint("a", &format!("wh_{i}"), None), now)
                    .unwrap()
            })
            .collect();
        assert_eq!(
            limiter.try_acquire(&endpoint("a", "wh_9", None), now).err(),
            Some(Refusal::Unproven { stalled: false })
        );
        // A second later they are still in flight: the account's endpoints may hang.
        assert_eq!(
            limiter
                .try_acquire(&endpoint("a", "wh_0", None), now + PROBE_STALLED_AFTER)
                .err(),
            Some(Refusal::Unproven { stalled: true })
        );
        // Another account is not held up by it.
        assert!(limiter
            .try_acquire(&endpoint("b", "wh_b", None), now)
            .is_ok());
        // wh_0 answers: proven, it takes its full ten in flight, none of them probes.
        first[0].succeeded();
        drop(first);
        let many: Vec<Permit> = (0..10)
            .map(|_| {
                limiter
                    .try_acquire(&endpoint("a", "wh_0", None), now)
                    .unwrap()
            })
            .collect();
        assert_eq!(
            limiter.try_acquire(&endpoint("a", "wh_0", None), now).err(),
            Some(Refusal::Busy)
        );
        assert!(!limiter
            .counts
            .lock()
            .unwrap()
            .probes
            .contains_key(&(AccountId::from_static("a"), Probe::Unproven)));
        drop(many);
        // Moved to another URL: not proven by the old one.
        let mut moved = endpoint("a", "wh_0", None);
        moved.url = "https://elsewhere".into();
        let blockers: Vec<Permit> = (1..PROBES_PER_ACCOUNT)
            .map(|i| {
                limiter
                    .try_acquire(&endpoint("a", &format!("wh_x{i}"), None), now)
                    .unwrap()
            })
            .collect();
        let probe = limiter.try_acquire(&moved, now).unwrap();
        assert_eq!(
            limiter.try_acquire(&moved, now).err(),
            Some(Refusal::Unproven { stalled: false })
        );
        drop((probe, blockers));
        // Failing again later: probed again, one at a time.
        let mut down = endpoint("a", "wh_0", None);
        down.failing_since = Some(domain::time::Timestamp::EPOCH);
        let probe = limiter.try_acquire(&down, now).unwrap();
        assert_eq!(
            limiter.try_acquire(&down, now).err(),
            Some(Refusal::Failing)
        );
        drop(probe);
    }
}
