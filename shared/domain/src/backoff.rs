//! The delays between tries of one call to a dependency (a throttled batch write, an
//! announcement that failed): written once, used by every loop that tries again.

use std::time::Duration;

/// Exponential delays: `first`, then each one `factor` times the last, never above `cap`,
/// `retries` of them in all. When the iterator ends, the caller gives up.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    factor: u32,
    cap: Duration,
    left: u32,
}

impl Backoff {
    pub const fn new(first: Duration, factor: u32, cap: Duration, retries: u32) -> Self {
        Backoff {
            next: first,
            factor,
            cap,
            left: retries,
        }
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let delay = self.next.min(self.cap);
        self.next = delay.saturating_mul(self.factor).min(self.cap);
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_its_factor_up_to_the_cap_then_ends() {
        let ms = |v: u64| Duration::from_millis(v);
        let delays: Vec<_> = Backoff::new(ms(20), 2, ms(100), 5).collect();
        assert_eq!(delays, vec![ms(20), ms(40), ms(80), ms(100), ms(100)]);
        assert_eq!(Backoff::new(ms(1), 2, ms(1), 0).count(), 0);
        // No overflow however long it runs.
        let last = Backoff::new(Duration::MAX, 10, Duration::MAX, 3).last();
        assert_eq!(last, Some(Duration::MAX));
    }
}
