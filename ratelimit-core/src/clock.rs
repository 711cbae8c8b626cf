//! Where the in-memory store gets its time: [`Clock`], [`SystemClock`] and,
//! for tests, [`FakeClock`].
//!
//! ```
//! use std::time::Duration;
//! use ratelimit_core::{clock::Clock, clock::FakeClock};
//!
//! let clock = FakeClock::new();
//! let shared = clock.clone();
//! clock.advance(Duration::from_millis(5));
//! assert_eq!(shared.now_micros(), 5_000);
//! ```

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of time in whole microseconds.
///
/// Readings must never go backwards. The absolute origin does not matter to
/// the algorithm; [`SystemClock`] counts from the Unix epoch.
pub trait Clock: Send + Sync + Debug + 'static {
    /// The current time in microseconds.
    fn now_micros(&self) -> u64;
}

/// The machine's clock: Unix time read once at creation, advanced by a
/// monotonic clock, so it never steps backwards when NTP adjusts the wall
/// clock.
///
/// The monotonic part is [`quanta`]'s (the CPU's time-stamp counter where it
/// is reliable, the OS clock otherwise): reading it costs a few nanoseconds
/// where `Instant::now()` costs tens in a VM, and it is read on every check.
#[derive(Debug, Clone)]
pub struct SystemClock {
    origin_micros: u64,
    origin_raw: u64,
    clock: quanta::Clock,
}

impl SystemClock {
    /// A clock anchored to the current Unix time.
    pub fn new() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let clock = quanta::Clock::new();
        Self {
            origin_micros: saturating_micros(since_epoch),
            origin_raw: clock.raw(),
            clock,
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now_micros(&self) -> u64 {
        // Raw counter delta scaled to nanoseconds: no Duration on the hot path.
        let nanos = self.clock.delta_as_nanos(self.origin_raw, self.clock.raw());
        self.origin_micros.saturating_add(nanos / 1_000)
    }
}

/// A clock that moves only when told to. Clones share one time, so a test can
/// hand one clone to a store and advance another.
#[derive(Debug, Clone, Default)]
pub struct FakeClock {
    now: Arc<AtomicU64>,
}

impl FakeClock {
    /// A fake clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fake clock at `micros`.
    pub fn at_micros(micros: u64) -> Self {
        Self {
            now: Arc::new(AtomicU64::new(micros)),
        }
    }

    /// Moves time forward by `by` (saturating at `u64::MAX` microseconds).
    pub fn advance(&self, by: Duration) {
        let by = saturating_micros(by);
        // fetch_update never fails with a closure returning Some.
        let _ = self
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                Some(now.saturating_add(by))
            });
    }

    /// Sets the time to `micros`; a value earlier than the current time is
    /// ignored, since clocks never go backwards.
    pub fn set_micros(&self, micros: u64) {
        self.now.fetch_max(micros, Ordering::AcqRel);
    }
}

impl Clock for FakeClock {
    fn now_micros(&self) -> u64 {
        self.now.load(Ordering::Acquire)
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_micros(&self) -> u64 {
        (**self).now_micros()
    }
}

fn saturating_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_never_goes_backwards() {
        let clock = FakeClock::at_micros(100);
        clock.set_micros(50);
        assert_eq!(clock.now_micros(), 100);
        clock.advance(Duration::MAX);
        assert_eq!(clock.now_micros(), u64::MAX);
    }

    #[test]
    fn system_clock_is_monotonic_and_near_unix_time() {
        let clock = SystemClock::new();
        let a = clock.now_micros();
        let b = clock.now_micros();
        assert!(b >= a);
        // After 2020-01-01.
        assert!(a > 1_577_836_800_000_000);
    }
}
