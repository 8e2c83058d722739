//! Randomness comes from outside the domain: the caller passes a source (the operating
//! system's generator in production, a counter in tests), so the domain does no I/O.

pub trait Random: Send + Sync {
    /// Fills `buf` with unpredictable bytes.
    fn fill(&self, buf: &mut [u8]);

    /// A uniform sample in [0, 1), for retry jitter.
    fn unit(&self) -> f64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Predictable bytes for tests: every fill differs from the one before.
    #[derive(Default)]
    pub struct Counter(AtomicU64);

    impl super::Random for Counter {
        fn fill(&self, buf: &mut [u8]) {
            for chunk in buf.chunks_mut(8) {
                let n = self
                    .0
                    .fetch_add(1, Ordering::Relaxed)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15);
                chunk.copy_from_slice(&n.to_le_bytes()[..chunk.len()]);
            }
        }
    }

    #[test]
    fn unit_samples_stay_below_one() {
        let c = Counter::default();
        assert!((0..1000)
            .map(|_| super::Random::unit(&c))
            .all(|u| (0.0..1.0).contains(&u)));
    }
}
