//! Points in time. Stored, queued and compared as milliseconds since the Unix epoch (what
//! DynamoDB's TTL arithmetic, SQLite's indexes and the retry schedule work in); shown to
//! people as RFC 3339.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

use ::time::format_description::well_known::Rfc3339;
use ::time::OffsetDateTime;
use serde::{Deserialize, Serialize};

/// A point in time, to the millisecond.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const EPOCH: Timestamp = Timestamp(0);

    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (the `webhook-timestamp` header, DynamoDB's TTL).
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// `ms` milliseconds later (earlier when negative), saturating at the ends of `i64`.
    pub const fn plus_millis(self, ms: i64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }

    /// The time from `earlier` to this one; zero when `earlier` is not earlier.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }

    /// RFC 3339 in UTC; the epoch for a time RFC 3339 cannot write.
    pub fn to_rfc3339(self) -> String {
        OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            .format(&Rfc3339)
            .expect("a UTC time formats as RFC 3339")
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        self.plus_millis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        self.plus_millis(-i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_and_never_goes_backwards_in_since() {
        let t = Timestamp::from_millis(1_000);
        assert_eq!(t + Duration::from_secs(1), Timestamp::from_millis(2_000));
        assert_eq!(
            t - Duration::from_millis(1_500),
            Timestamp::from_millis(-500)
        );
        assert_eq!(
            Timestamp::from_millis(i64::MAX) + Duration::MAX,
            Timestamp::from_millis(i64::MAX)
        );
        assert_eq!(t.since(Timestamp::from_millis(2_000)), Duration::ZERO);
        assert_eq!(
            Timestamp::from_millis(2_500).since(t),
            Duration::from_millis(1_500)
        );
        assert_eq!(Timestamp::from_millis(-1).as_secs(), -1);
    }

    #[test]
    fn shows_as_rfc3339_and_stores_as_milliseconds() {
        let t = Timestamp::from_millis(1_700_000_000_123);
        assert_eq!(t.to_rfc3339(), "2023-11-14T22:13:20.123Z");
        assert_eq!(serde_json::to_string(&t).unwrap(), "1700000000123");
    }
}
