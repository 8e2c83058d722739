use std::time::{SystemTime, UNIX_EPOCH};

use domain::random::Random;
use domain::time::Timestamp;

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;

    /// Milliseconds since the Unix epoch, for the adapters' own arithmetic.
    fn now_ms(&self) -> i64 {
        self.now().as_millis()
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        )
    }
}

/// The operating system's generator: the domain's randomness in production.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("the operating system's random generator is unavailable");
    }
}
