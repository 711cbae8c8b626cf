//! [`Quota`]: how many requests a key may make, validated once.

use std::time::Duration;

use crate::Error;

/// See [`Quota::MAX_TOLERANCE_MICROS`].
const MAX_TOLERANCE_MICROS: u64 = Quota::MAX_TOLERANCE_MICROS;

/// A rate: `limit` requests per `window`, with a `burst` a fresh key may spend
/// at once.
///
/// Construction validates everything, so a `Quota` can never describe an
/// impossible or overflowing rule:
///
/// - `limit` ≥ 1 and `burst` ≥ 1;
/// - [`Quota::MIN_WINDOW`] ≤ `window` ≤ [`Quota::MAX_WINDOW`] (sub-microsecond
///   parts of the window are dropped);
/// - at most one request per microsecond (`limit` ≤ window in µs);
/// - `burst × emission interval` ≤ [`Quota::MAX_TOLERANCE_MICROS`].
///
/// Internally the quota becomes GCRA's emission interval `T = ⌈window / limit⌉`
/// (rounded **up**, so integer rounding can only admit slightly fewer requests
/// than configured, never more) and tolerance `τ = T × burst`.
///
/// ```
/// use std::time::Duration;
/// use ratelimit_core::Quota;
///
/// let quota = Quota::new(10, Duration::from_secs(1))?.with_burst(20)?;
/// assert_eq!(quota.limit(), 10);
/// assert_eq!(quota.burst(), 20);
/// assert_eq!(quota.emission_interval(), Duration::from_millis(100));
///
/// assert!(Quota::new(0, Duration::from_secs(1)).is_err());
/// # Ok::<(), ratelimit_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    limit: u32,
    window_micros: u64,
    burst: u32,
    explicit_burst: bool,
    interval_micros: u64,
    tolerance_micros: u64,
}

impl Quota {
    /// The largest burst tolerance (`emission interval × burst`) a quota may
    /// have. It keeps every sum the algorithm forms, with a clock in the
    /// range stores accept, within the integers a double holds exactly, so
    /// the Redis script (Lua computes with doubles) and Rust agree bit for
    /// bit.
    pub const MAX_TOLERANCE_MICROS: u64 = 1 << 48;

    /// The shortest window a quota may have.
    pub const MIN_WINDOW: Duration = Duration::from_millis(1);
    /// The longest window a quota may have: 366 days.
    pub const MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 60 * 60);

    /// `limit` requests per `window`, with a burst of `limit`: a fresh key can
    /// spend its whole limit at once.
    pub fn new(limit: u32, window: Duration) -> Result<Self, Error> {
        if limit == 0 {
            return Err(Error::ZeroLimit);
        }
        if window < Self::MIN_WINDOW || window > Self::MAX_WINDOW {
            return Err(Error::WindowOutOfRange {
                window,
                min: Self::MIN_WINDOW,
                max: Self::MAX_WINDOW,
            });
        }
        // In range, so this fits a u64 (366 days is about 3.2e13 µs).
        let window_micros = u64::try_from(window.as_micros()).unwrap_or(u64::MAX);
        if u64::from(limit) > window_micros {
            return Err(Error::RateTooHigh { limit, window });
        }
        let interval_micros = window_micros.div_ceil(u64::from(limit));
        Self::with_parts(limit, window_micros, limit, false, interval_micros)
    }

    /// `limit` requests per second.
    pub fn per_second(limit: u32) -> Result<Self, Error> {
        Self::new(limit, Duration::from_secs(1))
    }

    /// `limit` requests per minute.
    pub fn per_minute(limit: u32) -> Result<Self, Error> {
        Self::new(limit, Duration::from_secs(60))
    }

    /// `limit` requests per `window_ms` milliseconds.
    pub fn per_millis(limit: u32, window_ms: u64) -> Result<Self, Error> {
        Self::new(limit, Duration::from_millis(window_ms))
    }

    /// The same rate with another burst: how many requests a fresh (or fully
    /// rested) key may make at once.
    pub fn with_burst(self, burst: u32) -> Result<Self, Error> {
        Self::with_parts(
            self.limit,
            self.window_micros,
            burst,
            true,
            self.interval_micros,
        )
    }

    /// A new rate (limit and window) keeping this quota's burst if it was set
    /// explicitly, or following the new limit if it was the default.
    pub fn with_rate(self, limit: u32, window: Duration) -> Result<Self, Error> {
        let fresh = Self::new(limit, window)?;
        if self.explicit_burst {
            fresh.with_burst(self.burst)
        } else {
            Ok(fresh)
        }
    }

    fn with_parts(
        limit: u32,
        window_micros: u64,
        burst: u32,
        explicit_burst: bool,
        interval_micros: u64,
    ) -> Result<Self, Error> {
        if burst == 0 {
            return Err(Error::ZeroBurst);
        }
        let tolerance_micros = interval_micros
            .checked_mul(u64::from(burst))
            .filter(|tau| *tau <= MAX_TOLERANCE_MICROS)
            .ok_or(Error::BurstTooLarge {
                burst,
                max_tolerance: Duration::from_micros(MAX_TOLERANCE_MICROS),
            })?;
        Ok(Self {
            limit,
            window_micros,
            burst,
            explicit_burst,
            interval_micros,
            tolerance_micros,
        })
    }

    /// Refuses a cost this quota can never admit (zero, or more than the burst).
    pub fn check_cost(&self, cost: u32) -> Result<(), Error> {
        if cost == 0 {
            Err(Error::ZeroCost)
        } else if cost > self.burst {
            Err(Error::CostExceedsBurst {
                cost,
                burst: self.burst,
            })
        } else {
            Ok(())
        }
    }

    /// Requests per window.
    pub const fn limit(&self) -> u32 {
        self.limit
    }

    /// The window, in whole microseconds.
    pub const fn window(&self) -> Duration {
        Duration::from_micros(self.window_micros)
    }

    /// The window in microseconds.
    pub const fn window_micros(&self) -> u64 {
        self.window_micros
    }

    /// How many requests a fresh key may make at once.
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    /// Whether the burst was set explicitly (rather than defaulting to the limit).
    pub const fn has_explicit_burst(&self) -> bool {
        self.explicit_burst
    }

    /// GCRA's emission interval `T`: the time one request "costs".
    pub const fn emission_interval(&self) -> Duration {
        Duration::from_micros(self.interval_micros)
    }

    /// `T` in microseconds (at least 1).
    pub const fn interval_micros(&self) -> u64 {
        self.interval_micros
    }

    /// GCRA's tolerance `τ = T × burst`, in microseconds.
    pub const fn tolerance_micros(&self) -> u64 {
        self.tolerance_micros
    }

    /// Rebuilds a quota from its public parts (as stored by a shared rule
    /// store), validating them again.
    pub fn from_parts(limit: u32, window: Duration, burst: Option<u32>) -> Result<Self, Error> {
        let quota = Self::new(limit, window)?;
        match burst {
            Some(burst) => quota.with_burst(burst),
            None => Ok(quota),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_the_interval_up() {
        let q = Quota::new(3, Duration::from_secs(1)).unwrap();
        assert_eq!(q.interval_micros(), 333_334);
        assert_eq!(q.tolerance_micros(), 1_000_002);
    }

    #[test]
    fn rejects_every_invalid_part() {
        let sec = Duration::from_secs(1);
        assert_eq!(Quota::new(0, sec), Err(Error::ZeroLimit));
        assert!(matches!(
            Quota::new(1, Duration::from_micros(999)),
            Err(Error::WindowOutOfRange { .. })
        ));
        assert!(matches!(
            Quota::new(1, Quota::MAX_WINDOW + Duration::from_micros(1)),
            Err(Error::WindowOutOfRange { .. })
        ));
        assert!(matches!(
            Quota::new(1_001, Duration::from_millis(1)),
            Err(Error::RateTooHigh { .. })
        ));
        assert_eq!(
            Quota::new(1, sec).unwrap().with_burst(0),
            Err(Error::ZeroBurst)
        );
        assert!(matches!(
            Quota::new(1, Quota::MAX_WINDOW)
                .unwrap()
                .with_burst(u32::MAX),
            Err(Error::BurstTooLarge { .. })
        ));
        let q = Quota::new(5, sec).unwrap();
        assert_eq!(q.check_cost(0), Err(Error::ZeroCost));
        assert_eq!(
            q.check_cost(6),
            Err(Error::CostExceedsBurst { cost: 6, burst: 5 })
        );
        assert_eq!(q.check_cost(5), Ok(()));
    }

    #[test]
    fn accepts_the_extremes() {
        let q = Quota::new(1_000, Quota::MIN_WINDOW).unwrap();
        assert_eq!(q.interval_micros(), 1);
        let q = Quota::new(u32::MAX, Quota::MAX_WINDOW).unwrap();
        assert!(q.tolerance_micros() <= MAX_TOLERANCE_MICROS);
        let q = Quota::new(1, Quota::MAX_WINDOW)
            .unwrap()
            .with_burst(8)
            .unwrap();
        assert_eq!(q.burst(), 8);
    }

    #[test]
    fn with_rate_keeps_only_an_explicit_burst() {
        let sec = Duration::from_secs(1);
        let default = Quota::new(10, sec).unwrap();
        assert_eq!(default.with_rate(20, sec).unwrap().burst(), 20);
        let explicit = default.with_burst(3).unwrap();
        assert_eq!(explicit.with_rate(20, sec).unwrap().burst(), 3);
    }
}
