//! Delivery statistics, kept pre-aggregated: every recorded outcome adds to the five-minute
//! slot of its subscription (counts by outcome, a latency histogram, failures by cause), so
//! stats over 30 days read at most 8 640 slots per subscription and never scan deliveries.
//!
//! What a slot counts, at the time it happened:
//! - `succeeded` and `failed`: attempts, by whether the endpoint took the delivery. A
//!   delivery retried twice then delivered is two failures and one success.
//! - `dead`: deliveries whose last attempt spent their budget.
//! - the latency of every attempt.
//! - per failure cause: the failed attempts, the last time one was seen, and the ids of the
//!   most recent deliveries that failed so (to open in the inspector).

use std::collections::BTreeMap;
use std::time::Duration;

use super::delivery::{DeliveryStatus, DeliveryUpdate, FailureCause};
use super::ids::{AccountId, DeliveryId, SubscriptionId};
use super::time::Timestamp;

/// The longest window stats may cover.
pub const MAX_WINDOW: Duration = Duration::from_secs(30 * 86_400);

/// The grain of stored stats: every bucket a report asks for is a whole number of slots.
pub const SLOT: Duration = Duration::from_secs(300);
const SLOT_MS: i64 = 300_000;

/// Example deliveries kept per failure cause.
pub const MAX_EXAMPLES: usize = 3;

/// The most buckets one report may have (a week of five-minute buckets, and the one the
/// week's start falls in).
pub const MAX_BUCKETS: u64 = 2017;

/// The start of the slot `at` falls in.
pub fn slot_of(at: Timestamp) -> Timestamp {
    Timestamp::from_millis(at.as_millis().div_euclid(SLOT_MS) * SLOT_MS)
}

/// Latencies in milliseconds, counted in bins: exact below 16 ms, then eight bins per
/// doubling (a bin spans at most 1/8 of its lower bound), so a percentile read from it is
/// within 6 % of the exact one. Dense up to the highest bin hit (about 60 bins for
/// latencies up to a second): adding and merging are indexing, which a 30-day report does
/// for tens of thousands of slots. The last bin kept is never empty, so equal counts
/// compare equal.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LatencyHistogram(Vec<u64>);

impl LatencyHistogram {
    /// The highest bin (`u64::MAX` ms); a stored bin above it is corrupt.
    pub const MAX_BIN: u16 = 495;

    pub fn bin_of(ms: u64) -> u16 {
        if ms < 16 {
            return ms as u16;
        }
        let exponent = 63 - ms.leading_zeros(); // ≥ 4
        let sub = (ms >> (exponent - 3)) & 7;
        (16 + (exponent - 4) * 8 + sub as u32) as u16
    }

    /// The smallest and largest latency of a bin.
    pub fn bounds(bin: u16) -> (u64, u64) {
        let bin = bin.min(Self::MAX_BIN);
        if bin < 16 {
            return (bin as u64, bin as u64);
        }
        let exponent = (bin as u32 - 16) / 8 + 4;
        let sub = (bin as u64 - 16) % 8;
        let low = (8 + sub) << (exponent - 3);
        // The top bin ends at `u64::MAX`: computed wider so its end does not wrap.
        let high = ((9 + sub as u128) << (exponent - 3)) - 1;
        (low, high.min(u64::MAX as u128) as u64)
    }

    pub fn add(&mut self, ms: u64) {
        self.add_count(Self::bin_of(ms), 1);
    }

    /// Adds `count` to `bin` (how a store reads a stored histogram back).
    pub fn add_count(&mut self, bin: u16, count: u64) {
        let bin = bin.min(Self::MAX_BIN) as usize;
        if count > 0 {
            if self.0.len() <= bin {
                self.0.resize(bin + 1, 0);
            }
            self.0[bin] += count;
        }
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            *mine += theirs;
        }
    }

    /// The bins hit and their counts, lowest first.
    pub fn bins(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(b, c)| (b as u16, *c))
    }

    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The `p`-th percentile (0–100), nearest-rank, as the middle of its bin.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * total as f64).ceil().clamp(1.0, total as f64) as u64;
        let mut seen = 0;
        for (bin, count) in self.bins() {
            seen += count;
            if seen >= rank {
                let (low, high) = Self::bounds(bin);
                return Some(low + (high - low) / 2);
            }
        }
        None
    }
}

/// The failures of one cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CauseStats {
    pub count: u64,
    pub last_seen: Timestamp,
    /// Deliveries that failed so, at most `MAX_EXAMPLES`, no repeats: of two sums merged,
    /// the examples of the one seen last come first (within a slot, most recent first).
    pub examples: Vec<DeliveryId>,
}

impl CauseStats {
    fn merge(&mut self, other: &CauseStats) {
        self.count += other.count;
        let (newer, older) = if other.last_seen >= self.last_seen {
            (&other.examples, &self.examples)
        } else {
            (&self.examples, &other.examples)
        };
        let mut examples: Vec<DeliveryId> = Vec::with_capacity(MAX_EXAMPLES);
        for id in newer.iter().chain(older) {
            if examples.len() < MAX_EXAMPLES && !examples.contains(id) {
                examples.push(id.clone());
            }
        }
        self.examples = examples;
        self.last_seen = self.last_seen.max(other.last_seen);
    }
}

/// What one slot (or any sum of slots) holds; see the module's description.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SlotStats {
    pub succeeded: u64,
    pub failed: u64,
    pub dead: u64,
    pub latency: LatencyHistogram,
    pub causes: BTreeMap<FailureCause, CauseStats>,
}

impl SlotStats {
    pub fn merge(&mut self, other: &SlotStats) {
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.dead += other.dead;
        self.latency.merge(&other.latency);
        for (cause, stats) in &other.causes {
            match self.causes.get_mut(cause) {
                Some(mine) => mine.merge(stats),
                None => {
                    self.causes.insert(*cause, stats.clone());
                }
            }
        }
    }

    /// Successful attempts over all attempts; `None` before any.
    pub fn success_rate(&self) -> Option<f64> {
        let attempts = self.succeeded + self.failed;
        (attempts > 0).then(|| self.succeeded as f64 / attempts as f64)
    }

    pub fn is_empty(&self) -> bool {
        self == &SlotStats::default()
    }

    /// Counts one recorded outcome.
    fn count(&mut self, update: &DeliveryUpdate) {
        if let Some(attempt) = &update.attempt {
            self.latency.add(attempt.latency_ms);
            if update.status == DeliveryStatus::Succeeded {
                self.succeeded += 1;
            } else {
                self.failed += 1;
                let cause = FailureCause::of(attempt, update.cause);
                self.causes
                    .entry(cause)
                    .or_insert_with(|| CauseStats {
                        count: 0,
                        last_seen: attempt.at,
                        examples: Vec::new(),
                    })
                    .merge(&CauseStats {
                        count: 1,
                        last_seen: attempt.at,
                        examples: vec![update.delivery_id.clone()],
                    });
            }
            // Only an attempt spends a budget: a dead outcome without one re-logs a
            // delivery that was already counted dead.
            if update.status == DeliveryStatus::Dead {
                self.dead += 1;
            }
        }
    }
}

/// Where a slot's stats are kept.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotKey {
    pub account_id: AccountId,
    pub subscription_id: SubscriptionId,
    pub start: Timestamp,
}

/// How finely stored stats are read: five-minute slots, or hours (twelve slots summed). A
/// report whose buckets are whole hours reads hours (`StatsPlan::grain`): 30 days of one
/// subscription are 720 of them instead of 8 640 slots, and the report is the same, since
/// every hour lies within one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatsGrain {
    FiveMinutes,
    Hour,
}

impl StatsGrain {
    pub const fn millis(self) -> i64 {
        match self {
            StatsGrain::FiveMinutes => SLOT_MS,
            StatsGrain::Hour => 12 * SLOT_MS,
        }
    }

    /// The start of the slot or hour `at` falls in.
    pub fn start_of(self, at: Timestamp) -> Timestamp {
        let step = self.millis();
        Timestamp::from_millis(at.as_millis().div_euclid(step) * step)
    }
}

/// What a batch of recorded outcomes adds to each slot it touches. A store applies these in
/// the same write as the outcomes.
pub fn slot_deltas(updates: &[DeliveryUpdate]) -> BTreeMap<SlotKey, SlotStats> {
    deltas_by(updates, StatsGrain::FiveMinutes)
}

/// What a batch of recorded outcomes adds to each slot or hour of `grain` it touches (a
/// store that keeps hours beside the slots applies both in the outcomes' write).
pub fn deltas_by(updates: &[DeliveryUpdate], grain: StatsGrain) -> BTreeMap<SlotKey, SlotStats> {
    let mut deltas: BTreeMap<SlotKey, SlotStats> = BTreeMap::new();
    for update in updates {
        let Some(attempt) = &update.attempt else {
            continue;
        };
        let key = SlotKey {
            account_id: update.account_id.clone(),
            subscription_id: update.subscription_id.clone(),
            start: grain.start_of(attempt.at),
        };
        deltas.entry(key).or_default().count(update);
    }
    deltas
}

/// Sums five-minute slots into `grain`, keeping the sums that start at or after `since`:
/// how a backend that keeps only slots answers a read by hour (an hour that starts before
/// `since` is left out, as a backend keeping hours leaves it). Any order in; out ordered by
/// subscription, then start.
pub fn roll_up(mut slots: Vec<StatsSlot>, grain: StatsGrain, since: Timestamp) -> Vec<StatsSlot> {
    if grain == StatsGrain::FiveMinutes {
        slots.retain(|slot| slot.start >= since);
        return slots;
    }
    let mut sums: BTreeMap<(SubscriptionId, Timestamp), SlotStats> = BTreeMap::new();
    for slot in slots {
        let key = (slot.subscription_id, grain.start_of(slot.start));
        match sums.get_mut(&key) {
            Some(sum) => sum.merge(&slot.stats),
            None => {
                sums.insert(key, slot.stats);
            }
        }
    }
    sums.into_iter()
        .filter(|((_, start), _)| *start >= since)
        .map(|((subscription_id, start), stats)| StatsSlot {
            subscription_id,
            start,
            stats,
        })
        .collect()
}

/// One stored slot, as a store reads it back.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSlot {
    pub subscription_id: SubscriptionId,
    pub start: Timestamp,
    pub stats: SlotStats,
}

/// The window and the buckets of one report, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsPlan {
    /// The first bucket's start: the window's start rounded down to a bucket.
    pub since: Timestamp,
    pub until: Timestamp,
    pub bucket: Duration,
}

/// Which query parameter was wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub parameter: &'static str,
    pub message: String,
}

impl StatsPlan {
    /// The plan for the `window` ending `now` in buckets of `bucket` (default: about 12 to
    /// 28 buckets for the window).
    pub fn new(
        window: Duration,
        bucket: Option<Duration>,
        now: Timestamp,
    ) -> Result<Self, PlanError> {
        let bucket = bucket.unwrap_or_else(|| default_bucket(window));
        let bucket_ms = bucket.as_millis() as i64;
        let refuse = |message: String| PlanError {
            parameter: "bucket",
            message,
        };
        if bucket_ms % SLOT_MS != 0 || bucket > Duration::from_secs(86_400) {
            return Err(refuse(
                "must be a whole number of 5-minute slots, at most 1 day (`5m`, `15m`, `1h`, `6h`, `1d`)".into(),
            ));
        }
        // As many as `bucket_starts` yields: the window's start is rounded down to a bucket,
        // so a window of whole buckets touches one more.
        let buckets = window.as_millis() as u64 / bucket.as_millis() as u64 + 1;
        if buckets > MAX_BUCKETS {
            return Err(refuse(format!(
                "gives {buckets} buckets for this window; at most {MAX_BUCKETS}: choose a longer bucket"
            )));
        }
        let start = (now - window).as_millis();
        Ok(StatsPlan {
            since: Timestamp::from_millis(start.div_euclid(bucket_ms) * bucket_ms),
            until: now,
            bucket,
        })
    }

    fn bucket_ms(&self) -> i64 {
        self.bucket.as_millis() as i64
    }

    /// The coarsest stored grain whose every slot or hour lies within one bucket: hours
    /// when the buckets are whole hours (`since` is then on an hour too, being a multiple
    /// of the bucket), five-minute slots otherwise.
    pub fn grain(&self) -> StatsGrain {
        if self.bucket_ms() % StatsGrain::Hour.millis() == 0 {
            StatsGrain::Hour
        } else {
            StatsGrain::FiveMinutes
        }
    }

    /// The start of every bucket, oldest first.
    pub fn bucket_starts(&self) -> impl Iterator<Item = Timestamp> + '_ {
        let step = self.bucket_ms();
        let count = (self.until.as_millis() - self.since.as_millis()).div_euclid(step) + 1;
        (0..count).map(move |i| self.since.plus_millis(i * step))
    }
}

fn default_bucket(window: Duration) -> Duration {
    const HOUR: u64 = 3600;
    let secs = match window.as_secs() {
        w if w <= 2 * HOUR => 300,
        w if w <= 48 * HOUR => HOUR,
        w if w <= 7 * 24 * HOUR => 6 * HOUR,
        _ => 24 * HOUR,
    };
    Duration::from_secs(secs)
}

/// Stats over a plan: the totals, each bucket, and each subscription's totals.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsReport {
    pub totals: SlotStats,
    /// Every bucket of the plan, empty ones included, oldest first.
    pub series: Vec<(Timestamp, SlotStats)>,
    /// Each subscription's counts (its latencies and causes are in its own report).
    pub by_subscription: BTreeMap<SubscriptionId, SlotStats>,
}

impl StatsReport {
    /// Sums `slots` (any order; those outside the plan are left out) into the plan's buckets.
    pub fn build(plan: &StatsPlan, slots: &[StatsSlot]) -> StatsReport {
        let mut series: Vec<(Timestamp, SlotStats)> = plan
            .bucket_starts()
            .map(|start| (start, SlotStats::default()))
            .collect();
        let mut totals = SlotStats::default();
        let mut by_subscription: BTreeMap<SubscriptionId, SlotStats> = BTreeMap::new();
        for slot in slots {
            if slot.start < plan.since || slot.start > plan.until {
                continue;
            }
            let index = (slot.start.as_millis() - plan.since.as_millis()) / plan.bucket_ms();
            if let Some((_, bucket)) = series.get_mut(index as usize) {
                bucket.merge(&slot.stats);
            }
            let sub = by_subscription
                .entry(slot.subscription_id.clone())
                .or_default();
            sub.succeeded += slot.stats.succeeded;
            sub.failed += slot.stats.failed;
            sub.dead += slot.stats.dead;
        }
        // Summed from the buckets, not slot by slot again: a 30-day report has tens of
        // thousands of slots and a few dozen buckets.
        for (_, bucket) in &series {
            totals.merge(bucket);
        }
        StatsReport {
            totals,
            series,
            by_subscription,
        }
    }
}

/// Parses a window like `90m`, `24h` or `7d` (at most 30 days).
pub fn parse_window(s: &str) -> Option<Duration> {
    // Split before the last character, not the last byte: `€` is three bytes.
    let (split, _) = s.char_indices().next_back()?;
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs)).filter(|d| *d <= MAX_WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Attempt;

    #[test]
    fn a_multibyte_window_is_refused_not_a_panic() {
        for window in ["€", "1€", "€h", "7д", ""] {
            assert_eq!(parse_window(window), None, "{window}");
        }
    }

    #[test]
    fn windows_parse_within_thirty_days() {
        assert_eq!(parse_window("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_window("90m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_window("30d"), Some(MAX_WINDOW));
        for bad in ["31d", "0h", "h", "", "5s", "-1h", "1.5h"] {
            assert_eq!(parse_window(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_latency_falls_in_a_bin_whose_bounds_hold_it() {
        let mut previous_high = None;
        for bin in 0..=495u16 {
            let (low, high) = LatencyHistogram::bounds(bin);
            assert!(low <= high, "{bin}");
            if let Some(p) = previous_high {
                assert_eq!(low, p + 1, "bins are contiguous at {bin}");
            }
            previous_high = Some(high);
            assert_eq!(LatencyHistogram::bin_of(low), bin);
            assert_eq!(LatencyHistogram::bin_of(high), bin);
            assert!(high - low <= low / 8, "bin {bin} spans more than 1/8");
        }
        assert_eq!(previous_high, Some(u64::MAX));
    }

    #[test]
    fn percentiles_are_exact_below_16_ms_and_close_above() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.percentile(50.0), None);
        for ms in 1..=10 {
            h.add(ms);
        }
        assert_eq!(h.percentile(50.0), Some(5));
        assert_eq!(h.percentile(100.0), Some(10));
        let mut wide = LatencyHistogram::default();
        for ms in 1..=10_000 {
            wide.add(ms);
        }
        for (p, exact) in [(50.0, 5000.0), (95.0, 9500.0), (99.0, 9900.0)] {
            let got = wide.percentile(p).unwrap() as f64;
            assert!((got - exact).abs() / exact < 0.07, "p{p}: {got} vs {exact}");
        }
    }

    fn attempt_update(
        id: &str,
        at: i64,
        status: DeliveryStatus,
        code: Option<u16>,
    ) -> DeliveryUpdate {
        DeliveryUpdate {
            delivery_id: DeliveryId::parse(id).unwrap(),
            account_id: AccountId::parse("acct").unwrap(),
            subscription_id: SubscriptionId::parse("wh_1").unwrap(),
            event_id: crate::ids::EventId::parse("evt_1").unwrap(),
            event_type: crate::catalog::EventType::known("call.ended").unwrap(),
            created_at: Timestamp::from_millis(at),
            first_try: true,
            status,
            attempt: Some(Attempt {
                attempt: 0,
                at: Timestamp::from_millis(at),
                url: "https://example.com/".into(),
                request_headers: vec![],
                response_headers: vec![],
                status_code: code,
                latency_ms: 7,
                response_body: None,
                error: None,
            }),
            next_attempt_at: None,
            error: None,
            cause: code.is_none().then_some(FailureCause::Timeout),
            at: Timestamp::from_millis(at),
            listed_on_event: false,
        }
    }

    #[test]
    fn outcomes_count_in_the_slot_of_their_attempt_by_cause() {
        let updates = [
            attempt_update("d1", 1_000, DeliveryStatus::Succeeded, Some(204)),
            attempt_update("d2", 2_000, DeliveryStatus::Pending, Some(500)),
            attempt_update("d3", 3_000, DeliveryStatus::Pending, Some(500)),
            attempt_update("d4", 4_000, DeliveryStatus::Dead, None),
            attempt_update("d5", SLOT_MS + 1, DeliveryStatus::Succeeded, Some(200)),
            // A re-log of a dead delivery, without an attempt: counts nothing.
            DeliveryUpdate {
                attempt: None,
                ..attempt_update("d4", 5_000, DeliveryStatus::Dead, None)
            },
        ];
        let deltas = slot_deltas(&updates);
        assert_eq!(deltas.len(), 2);
        let first = deltas.values().next().unwrap();
        assert_eq!((first.succeeded, first.failed, first.dead), (1, 3, 1));
        assert_eq!(first.latency.count(), 4);
        let http_500 = &first.causes[&FailureCause::Http(500)];
        assert_eq!(http_500.count, 2);
        assert_eq!(http_500.last_seen, Timestamp::from_millis(3_000));
        let ids: Vec<&str> = http_500.examples.iter().map(|d| d.as_str()).collect();
        assert_eq!(ids, ["d3", "d2"]);
        assert_eq!(first.causes[&FailureCause::Timeout].count, 1);
        assert_eq!(first.success_rate(), Some(0.25));
    }

    #[test]
    fn examples_stay_the_most_recent_three_without_repeats() {
        let mut a = SlotStats::default();
        for (i, id) in ["d1", "d2", "d1", "d3", "d4"].iter().enumerate() {
            let mut one = slot_deltas(&[attempt_update(
                id,
                i as i64 * 10,
                DeliveryStatus::Pending,
                Some(503),
            )]);
            a.merge(&one.pop_first().unwrap().1);
        }
        let cause = &a.causes[&FailureCause::Http(503)];
        let ids: Vec<&str> = cause.examples.iter().map(|d| d.as_str()).collect();
        assert_eq!(ids, ["d4", "d3", "d1"]);
        assert_eq!(cause.count, 5);
    }

    #[test]
    fn cause_keys_round_trip_and_odd_keys_are_refused() {
        for cause in [
            FailureCause::Http(500),
            FailureCause::Http(404),
            FailureCause::Timeout,
            FailureCause::ConnectionRefused,
            FailureCause::Tls,
            FailureCause::Dns,
            FailureCause::BlockedAddress,
            FailureCause::Connection,
            FailureCause::OAuthToken,
        ] {
            assert_eq!(FailureCause::parse(&cause.key()), Some(cause));
        }
        assert_eq!(FailureCause::Http(500).key(), "http_500");
        for bad in [
            "http_5000",
            "http_50",
            "http_+50",
            "http_abc",
            "http",
            "nope",
            "",
        ] {
            assert_eq!(FailureCause::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_plan_rounds_its_start_to_a_bucket_and_refuses_odd_buckets() {
        let now = Timestamp::from_millis(10 * 86_400_000 + 3_600_000 + 1234);
        let plan = StatsPlan::new(Duration::from_secs(86_400), None, now).unwrap();
        assert_eq!(plan.bucket, Duration::from_secs(3600));
        assert_eq!(plan.since.as_millis(), 9 * 86_400_000 + 3_600_000);
        assert_eq!(plan.bucket_starts().count(), 25);
        let hour = Duration::from_secs(3600);
        assert_eq!(
            StatsPlan::new(hour, None, now).unwrap().bucket,
            Duration::from_secs(300)
        );
        for bad in [
            Duration::from_secs(60),
            Duration::from_secs(450),
            Duration::from_secs(2 * 86_400),
        ] {
            let err = StatsPlan::new(MAX_WINDOW, Some(bad), now).unwrap_err();
            assert_eq!(err.parameter, "bucket", "{bad:?}");
        }
        assert!(StatsPlan::new(MAX_WINDOW, Some(SLOT), now).is_err());
        assert!(StatsPlan::new(Duration::from_secs(7 * 86_400), Some(SLOT), now).is_ok());
    }

    #[test]
    fn a_report_puts_each_slot_in_its_bucket_and_per_subscription() {
        let now = Timestamp::from_millis(2 * 3_600_000);
        let plan = StatsPlan::new(Duration::from_secs(3600), Some(SLOT), now).unwrap();
        let slot = |sub: &str, start: i64, succeeded| StatsSlot {
            subscription_id: SubscriptionId::parse(sub).unwrap(),
            start: Timestamp::from_millis(start),
            stats: SlotStats {
                succeeded,
                ..SlotStats::default()
            },
        };
        let report = StatsReport::build(
            &plan,
            &[
                slot("wh_a", 3_600_000, 2),
                slot("wh_b", 3_600_000, 3),
                slot("wh_a", 2 * 3_600_000 - SLOT_MS, 5),
                // Before the window: left out.
                slot("wh_a", 3_600_000 - SLOT_MS, 100),
            ],
        );
        assert_eq!(report.series.len(), 13);
        assert_eq!(report.series[0].1.succeeded, 5);
        assert_eq!(report.series[11].1.succeeded, 5);
        assert_eq!(report.series[12].1.succeeded, 0);
        assert_eq!(report.totals.succeeded, 10);
        let sub = |s: &str| SubscriptionId::parse(s).unwrap();
        assert_eq!(report.by_subscription[&sub("wh_a")].succeeded, 7);
        assert_eq!(report.by_subscription[&sub("wh_b")].succeeded, 3);
    }
    /// A report with each cause's examples cut to the most recent one. Which older ones a
    /// sum keeps depends on the order of its merges (a sum knows when its newest example
    /// failed, not the others); the newest is the same whatever the order.
    fn comparable(mut report: StatsReport) -> StatsReport {
        let cut = |stats: &mut SlotStats| {
            for c in stats.causes.values_mut() {
                c.examples.truncate(1);
            }
        };
        cut(&mut report.totals);
        report.series.iter_mut().for_each(|(_, b)| cut(b));
        report.by_subscription.values_mut().for_each(cut);
        report
    }

    #[test]
    fn a_report_of_whole_hour_buckets_reads_the_same_from_hours_as_from_slots() {
        let now = Timestamp::from_millis(40 * 86_400_000 + 5 * 3_600_000 + 17 * 60_000);
        let sub = |i: u64| SubscriptionId::parse(format!("wh_{}", i % 3)).unwrap();
        // Slots over 31 days, some with failures of two causes, in no order.
        let mut slots = Vec::new();
        let mut seed: u64 = 7;
        for i in 0..4_000u64 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let start = now.as_millis() - (seed >> 33) as i64 % (31 * 86_400_000);
            let mut stats = SlotStats {
                succeeded: seed % 7,
                ..SlotStats::default()
            };
            stats.latency.add(seed % 900);
            if i % 5 == 0 {
                stats.failed = 1;
                stats.causes.insert(
                    if i % 2 == 0 {
                        FailureCause::Timeout
                    } else {
                        FailureCause::Http(503)
                    },
                    CauseStats {
                        count: 1,
                        last_seen: Timestamp::from_millis(start + 1),
                        examples: vec![DeliveryId::parse(format!("msg_{i}")).unwrap()],
                    },
                );
            }
            slots.push(StatsSlot {
                subscription_id: sub(i),
                start: slot_of(Timestamp::from_millis(start)),
                stats,
            });
        }
        for (window, bucket) in [
            (30 * 86_400, None),
            (86_400, None),
            (7 * 86_400, Some(3600)),
            (3 * 86_400, Some(6 * 3600)),
        ] {
            let plan = StatsPlan::new(
                Duration::from_secs(window),
                bucket.map(Duration::from_secs),
                now,
            )
            .unwrap();
            assert_eq!(plan.grain(), StatsGrain::Hour, "{window} {bucket:?}");
            let hours = roll_up(slots.clone(), StatsGrain::Hour, Timestamp::from_millis(0));
            assert!(hours.len() < slots.len() / 2);
            assert!(hours
                .iter()
                .all(|h| h.start == StatsGrain::Hour.start_of(h.start)));
            assert_eq!(
                comparable(StatsReport::build(&plan, &hours)),
                comparable(StatsReport::build(&plan, &slots)),
                "{window} {bucket:?}"
            );
        }
        for (window, bucket) in [(3600, None), (86_400, Some(900))] {
            let plan = StatsPlan::new(
                Duration::from_secs(window),
                bucket.map(Duration::from_secs),
                now,
            )
            .unwrap();
            assert_eq!(plan.grain(), StatsGrain::FiveMinutes, "{window} {bucket:?}");
        }
        assert_eq!(
            roll_up(
                slots.clone(),
                StatsGrain::FiveMinutes,
                Timestamp::from_millis(0)
            ),
            slots
        );
    }
}
