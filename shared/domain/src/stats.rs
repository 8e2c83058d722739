//! Delivery statistics of a subscription over a time window.

use std::collections::BTreeMap;
use std::time::Duration;

use super::delivery::DeliveryStatus;

/// The longest window stats may cover.
pub const MAX_WINDOW: Duration = Duration::from_secs(30 * 86_400);

/// What the delivery log holds about a window: counts by status, and the latency of the
/// last attempt of each delivery that has one.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DeliveryStats {
    pub counts: BTreeMap<DeliveryStatus, u64>,
    pub latencies_ms: Vec<u64>,
}

impl DeliveryStats {
    pub fn add(&mut self, status: DeliveryStatus, latency_ms: Option<u64>) {
        *self.counts.entry(status).or_default() += 1;
        self.latencies_ms.extend(latency_ms);
    }

    /// Succeeded over all that ended (succeeded, failed, dead); `None` before any ended.
    pub fn success_rate(&self) -> Option<f64> {
        let count = |s: DeliveryStatus| self.counts.get(&s).copied().unwrap_or(0);
        let ended = count(DeliveryStatus::Succeeded)
            + count(DeliveryStatus::Failed)
            + count(DeliveryStatus::Dead);
        (ended > 0).then(|| count(DeliveryStatus::Succeeded) as f64 / ended as f64)
    }

    /// The `p`-th percentile (0–100) of the latencies, nearest-rank.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.latencies_ms.is_empty() {
            return None;
        }
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        Some(sorted[rank.clamp(1, sorted.len()) - 1])
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
    fn rates_and_percentiles() {
        let mut s = DeliveryStats::default();
        assert_eq!(s.success_rate(), None);
        assert_eq!(s.percentile(50.0), None);
        for i in 1..=100 {
            s.add(DeliveryStatus::Succeeded, Some(i));
        }
        s.add(DeliveryStatus::Dead, None);
        s.add(DeliveryStatus::Pending, None);
        assert_eq!(s.counts[&DeliveryStatus::Succeeded], 100);
        assert_eq!(s.counts[&DeliveryStatus::Pending], 1);
        assert!((s.success_rate().unwrap() - 100.0 / 101.0).abs() < 1e-9);
        assert_eq!(s.percentile(50.0), Some(50));
        assert_eq!(s.percentile(99.0), Some(99));
        assert_eq!(s.percentile(100.0), Some(100));
    }
}
