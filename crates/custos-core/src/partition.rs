//! Time buckets. Profiles are kept per (model, feature, hour); sealed event batches and their data
//! keys per (model, day). Both are plain integers so they index and compare cheaply in SQL.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

const SECONDS_PER_HOUR: i64 = 3_600;
const HOURS_PER_DAY: i64 = 24;

/// The hour an instant falls in, as whole hours since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HourBucket(pub i64);

impl HourBucket {
    /// The bucket holding `at`.
    pub fn of(at: DateTime<Utc>) -> Self {
        Self(at.timestamp().div_euclid(SECONDS_PER_HOUR))
    }

    /// The first bucket that starts at or after `at` (for exclusive range ends).
    pub fn ceil(at: DateTime<Utc>) -> Self {
        let secs = at.timestamp();
        let bucket = secs.div_euclid(SECONDS_PER_HOUR);
        if secs.rem_euclid(SECONDS_PER_HOUR) == 0 && at.timestamp_subsec_nanos() == 0 {
            Self(bucket)
        } else {
            Self(bucket + 1)
        }
    }

    /// The instant the bucket starts.
    pub fn start(self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.0.saturating_mul(SECONDS_PER_HOUR), 0)
            .single()
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    /// The day partition this hour belongs to.
    pub fn partition(self) -> Partition {
        Partition(self.0.div_euclid(HOURS_PER_DAY))
    }
}

/// A UTC day, as whole days since the Unix epoch: the unit of sealing and of data keys, so that
/// retention can later destroy one day's key to erase that day (crypto-shredding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Partition(pub i64);

impl Partition {
    /// The partition holding `at`.
    pub fn of(at: DateTime<Utc>) -> Self {
        HourBucket::of(at).partition()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        let t = Utc.with_ymd_and_hms(2026, 11, 26, 10, 30, 0).unwrap();
        let h = HourBucket::of(t);
        assert_eq!(
            h.start(),
            Utc.with_ymd_and_hms(2026, 11, 26, 10, 0, 0).unwrap()
        );
        assert_eq!(HourBucket::ceil(t), HourBucket(h.0 + 1));
        assert_eq!(HourBucket::ceil(h.start()), h);
        assert_eq!(h.partition(), Partition::of(t));
        let before_epoch = Utc.with_ymd_and_hms(1969, 12, 31, 23, 30, 0).unwrap();
        assert_eq!(HourBucket::of(before_epoch), HourBucket(-1));
        assert_eq!(Partition::of(before_epoch), Partition(-1));
    }
}
