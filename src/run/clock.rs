//! Time in a run: every instant the marks, the roster, the ledger and the
//! inboxes keep is a [`WallTime`], wall-clock microseconds since the UNIX
//! epoch (1970-01-01T00:00:00Z), so that shards of a distributed run on
//! machines with synchronized clocks agree. A process reads its monotonic
//! clock and converts through its [`Clock`], whose origin is the registry's
//! start.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

/// A wall-clock instant: microseconds since the UNIX epoch. Serialized as
/// that bare number, as the shard ledgers always were.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct WallTime(u64);

impl WallTime {
    /// The instant `micros` microseconds after the UNIX epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// Microseconds since the UNIX epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// `us` microseconds later (saturating).
    pub const fn plus_us(self, us: u64) -> Self {
        Self(self.0.saturating_add(us))
    }

    /// `us` microseconds earlier (saturating at the UNIX epoch).
    pub const fn minus_us(self, us: u64) -> Self {
        Self(self.0.saturating_sub(us))
    }

    /// Microseconds from `earlier` to `self` (0 when `earlier` is later).
    pub const fn micros_since(self, earlier: WallTime) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A [`WallTime`] that may not have happened yet, shared between tasks
/// without a lock.
#[derive(Debug)]
pub struct AtomicTime(AtomicU64);

/// How an [`AtomicTime`] stores "no time": a microsecond count no clock
/// reaches (half a million years from 1970), private to this type.
const NONE: u64 = u64::MAX;

impl Default for AtomicTime {
    fn default() -> Self {
        Self::none()
    }
}

impl AtomicTime {
    /// No time yet.
    pub const fn none() -> Self {
        Self(AtomicU64::new(NONE))
    }

    /// The time, if set.
    pub fn get(&self) -> Option<WallTime> {
        Some(self.0.load(Relaxed))
            .filter(|&v| v != NONE)
            .map(WallTime)
    }

    /// Sets the time.
    pub fn set(&self, at: WallTime) {
        self.0.store(at.0, Relaxed);
    }

    /// Sets the time unless one is set already (the first call counts).
    pub fn set_once(&self, at: WallTime) {
        let _ = self.0.compare_exchange(NONE, at.0, Relaxed, Relaxed);
    }

    /// Takes the time, leaving none.
    pub fn take(&self) -> Option<WallTime> {
        Some(self.0.swap(NONE, Relaxed))
            .filter(|&v| v != NONE)
            .map(WallTime)
    }
}

/// A process's conversion from its monotonic clock to [`WallTime`]: the
/// run's start read once on both clocks, so that times within the run keep
/// the monotonic clock's spacing.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    origin_wall: WallTime,
}

impl Clock {
    /// The clock whose `origin` (monotonic) is the wall-clock instant `origin_wall`.
    pub fn new(origin: Instant, origin_wall: SystemTime) -> Self {
        let micros = origin_wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(0));
        Self {
            origin,
            origin_wall: WallTime(micros),
        }
    }

    /// `at` on the wall clock.
    pub fn wall(&self, at: Instant) -> WallTime {
        let since = at.saturating_duration_since(self.origin).as_micros();
        self.origin_wall
            .plus_us(u64::try_from(since).unwrap_or(u64::MAX / 2))
    }

    /// Now, on the wall clock.
    pub fn now(&self) -> WallTime {
        self.wall(Instant::now())
    }

    /// Seconds from the run's start to `at` (0 before it).
    pub fn seconds_into_run(&self, at: WallTime) -> f64 {
        at.micros_since(self.origin_wall) as f64 / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_clock_counts_from_the_unix_epoch() {
        let origin = Instant::now();
        let clock = Clock::new(origin, SystemTime::UNIX_EPOCH + Duration::from_secs(10));
        assert_eq!(clock.wall(origin), WallTime::from_micros(10_000_000));
        let later = clock.wall(origin + Duration::from_millis(1500));
        assert_eq!(later.as_micros(), 11_500_000);
        assert_eq!(clock.seconds_into_run(later), 1.5);
        // Before the origin: the origin.
        assert_eq!(
            clock.wall(origin - Duration::from_secs(1)).as_micros(),
            10_000_000
        );
    }

    #[test]
    fn an_atomic_time_is_optional() {
        let t = AtomicTime::none();
        assert_eq!(t.get(), None);
        t.set_once(WallTime::from_micros(5));
        t.set_once(WallTime::from_micros(6));
        assert_eq!(t.get(), Some(WallTime::from_micros(5)));
        assert_eq!(t.take(), Some(WallTime::from_micros(5)));
        assert_eq!(t.take(), None);
        t.set(WallTime::from_micros(0));
        assert_eq!(t.get(), Some(WallTime::from_micros(0)));
    }

    #[test]
    fn serializes_as_a_bare_number() {
        let t = WallTime::from_micros(1_795_669_200_000_123);
        assert_eq!(serde_json::to_string(&t).unwrap(), "1795669200000123");
        assert_eq!(
            serde_json::from_str::<WallTime>("42").unwrap().as_micros(),
            42
        );
    }
}
