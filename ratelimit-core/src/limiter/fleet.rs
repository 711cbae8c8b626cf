//! [`FleetSize`]: how many instances share the fleet's limits, as last seen
//! alive — what the local fallback divides each quota by.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::Quota;

/// How many instances share the fleet's limits, as last seen alive. A
/// limiter configured with one ([`LimiterConfig::fleet_size`]) enforces,
/// under [`FailurePolicy::LocalFallback`](crate::config::FailurePolicy::LocalFallback),
/// each rule's quota divided by it while the store is unreachable, instead
/// of the whole quota on every instance — so a fleet of N stays within the
/// rule when its traffic is spread evenly.
///
/// Something keeps it up to date: `ratelimit_redis::RedisFleet` does, from
/// heartbeats every instance writes to Redis. Clones share the count.
///
/// ```
/// use ratelimit_core::config::FleetSize;
///
/// let fleet = FleetSize::new();
/// assert_eq!(fleet.get(), 1);
/// fleet.set(3);
/// assert_eq!(fleet.clone().get(), 3);
/// fleet.set(0); // nobody seen: this instance alone
/// assert_eq!(fleet.get(), 1);
/// ```
///
/// [`LimiterConfig::fleet_size`]: crate::LimiterConfig::fleet_size
#[derive(Debug, Clone, Default)]
pub struct FleetSize(Arc<AtomicU32>);

impl FleetSize {
    /// One instance, until told otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `instances` seen alive.
    pub fn set(&self, instances: u32) {
        self.0.store(instances, Ordering::Relaxed);
    }

    /// The instances last seen alive, at least 1 (this one).
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed).max(1)
    }
}

/// `quota` as one of `instances` enforces it alone: the same window, a
/// rate `instances` times slower (each instance's share of the rate), and
/// the burst divided, at least 1. With traffic spread evenly over the fleet
/// the instances admit together at most the rule, plus up to one request
/// each where the burst does not divide (a burst of 5 over 3 instances is
/// 1 each: 3 at once, then the shared rate).
pub(super) fn share(quota: &Quota, instances: u32) -> Quota {
    if instances <= 1 {
        return *quota;
    }
    let window = quota
        .window()
        .checked_mul(instances)
        .unwrap_or(Duration::MAX);
    let burst = (quota.burst() / instances).max(1);
    // A share the limits refuse (a window too long) keeps the whole quota:
    // the fallback then errs towards admitting, as it did before.
    Quota::new(quota.limit(), window)
        .and_then(|share| share.with_burst(burst))
        .unwrap_or(*quota)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_the_rate_and_the_burst_divided() {
        let quota = Quota::per_minute(30).unwrap();
        let third = share(&quota, 3);
        assert_eq!(third.burst(), 10);
        assert_eq!(third.interval_micros(), quota.interval_micros() * 3);
        assert_eq!(share(&quota, 1), quota);
        assert_eq!(share(&Quota::per_minute(5).unwrap(), 3).burst(), 1);
        let huge = Quota::new(1, Duration::from_secs(3_600 * 24 * 365)).unwrap();
        assert_eq!(share(&huge, u32::MAX), huge);
    }
}
