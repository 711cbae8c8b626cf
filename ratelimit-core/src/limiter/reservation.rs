//! Hot-key mode: units reserved from the store in batches and spent locally
//! (see [`Rule::with_batch`](crate::Rule::with_batch)).
//!
//! A reservation is an ordinary check that also asks for up to `batch − cost`
//! further units ([`CheckItem::reserve`](crate::store::CheckItem::reserve)). The
//! store charges them to the shared counter as consecutive GCRA slots; the
//! first extra unit's slot starts `first` after the store's instant, the
//! next one interval later, and so on. A unit spent at local time `u` keeps
//! the fleet within the rule as long as its slot has not started yet when it
//! is spent (GCRA's own condition: every admission's slot starts no earlier
//! than the admission). The instance does not know the store's instant, only
//! that it came after its own clock read `asked_at` just before the call, so
//! unit `i` is usable until `asked_at + first + i·T` on the local clock —
//! early, never late. A unit not spent by then is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use smallvec::SmallVec;

use crate::{Decision, Quota};

/// The most counters one rule keeps units for: a global rule needs one; a
/// per-caller rule in hot-key mode keeps pools for this many callers and
/// checks the rest one by one.
const MAX_POOLS: usize = 4096;

/// Deadlines of units taken for one check.
pub(crate) type Units = SmallVec<[u64; 2]>;

/// One rule's reserved units, per counter.
#[derive(Debug)]
pub(crate) struct Reservations {
    batch: u32,
    pools: Mutex<HashMap<Box<[u8]>, Pool>>,
}

#[derive(Debug, Default)]
struct Pool {
    /// Each held unit's deadline on the local clock, earliest first.
    units: VecDeque<u64>,
    /// Until then a check that finds no unit is denied here: the store had
    /// fewer than a batch left, and asking for less would hand out single
    /// units at the full cost of a store call each.
    wait_until: u64,
    /// The counter's TAT as the store last reported it, on the local clock
    /// (for the figures of decisions made here).
    tat: u64,
}

/// What a check may do with a counter in hot-key mode.
#[derive(Debug)]
pub(crate) enum Take {
    /// Units held here pay for the request.
    Spent {
        /// Their deadlines (to give them back if the check is denied).
        units: Units,
        /// The counter's TAT as last reported, on the local clock.
        tat: u64,
    },
    /// Ask the store, reserving this many more units.
    Ask {
        /// Units wanted beyond the request's cost.
        reserve: u32,
    },
    /// Deny here until `until`: the counter has less than a batch to give.
    Wait {
        /// When a batch should fit again (local clock).
        until: u64,
        /// The counter's TAT as last reported, on the local clock.
        tat: u64,
    },
}

impl Reservations {
    pub(crate) fn new(batch: u32) -> Self {
        Self {
            batch,
            pools: Mutex::new(HashMap::new()),
        }
    }

    fn pools(&self) -> std::sync::MutexGuard<'_, HashMap<Box<[u8]>, Pool>> {
        // A panic while holding the lock cannot leave a pool inconsistent in
        // a way that admits too much (units are only ever removed early).
        self.pools.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `cost` units for `key` at local time `now`, or says what to do
    /// instead.
    pub(crate) fn take(&self, key: &[u8], cost: u32, now: u64) -> Take {
        let cost_units = usize::try_from(cost).unwrap_or(usize::MAX);
        let mut pools = self.pools();
        let Some(pool) = pools.get_mut(key) else {
            return Take::Ask {
                reserve: self.batch.saturating_sub(cost),
            };
        };
        while pool.units.front().is_some_and(|&deadline| deadline < now) {
            pool.units.pop_front();
        }
        if pool.units.len() >= cost_units {
            return Take::Spent {
                units: pool.units.drain(..cost_units).collect(),
                tat: pool.tat,
            };
        }
        if now < pool.wait_until {
            return Take::Wait {
                until: pool.wait_until,
                tat: pool.tat,
            };
        }
        let held = u32::try_from(pool.units.len()).unwrap_or(u32::MAX);
        Take::Ask {
            reserve: self.batch.saturating_sub(cost).saturating_sub(held),
        }
    }

    /// Returns units taken for a check that was not admitted.
    pub(crate) fn give_back(&self, key: &[u8], units: &[u64]) {
        let mut pools = self.pools();
        let Some(pool) = pools.get_mut(key) else {
            return;
        };
        for &deadline in units {
            let at = pool.units.partition_point(|&d| d <= deadline);
            pool.units.insert(at, deadline);
        }
    }

    /// Learns from the store's decision on `key`, asked at local time
    /// `asked_at` with `reserve` units wanted beyond the request: keeps the
    /// units it granted, and when the counter had less than a batch to give,
    /// waits until it should have a batch again.
    pub(crate) fn stored(
        &self,
        key: &[u8],
        quota: &Quota,
        asked_at: u64,
        decision: &Decision,
        reserve: u32,
    ) {
        let interval = quota.interval_micros();
        let tolerance = quota.tolerance_micros();
        let ahead = u64::try_from(decision.reset_after().as_micros()).unwrap_or(u64::MAX);
        let granted = decision.reserved();
        // The counter ran at least half its tolerance ahead (so units were
        // on offer) but could not give all that was asked: it is saturated.
        let first = ahead.saturating_sub(interval.saturating_mul(u64::from(granted)));
        let short = if decision.allowed() {
            granted < reserve && first.saturating_mul(2) >= tolerance
        } else {
            true
        };
        let mut pools = self.pools();
        if !pools.contains_key(key) {
            if granted == 0 && !short {
                return;
            }
            if pools.len() >= MAX_POOLS {
                pools.retain(|_, pool| !pool.units.is_empty() || pool.wait_until > asked_at);
                if pools.len() >= MAX_POOLS {
                    // No room: the units are lost (the counter was charged
                    // for them, so the fleet admits fewer, never more).
                    return;
                }
            }
        }
        let pool = pools.entry(key.into()).or_default();
        pool.tat = asked_at.saturating_add(ahead);
        for i in 0..u64::from(granted) {
            let deadline = asked_at
                .saturating_add(first)
                .saturating_add(interval.saturating_mul(i));
            let at = pool.units.partition_point(|&d| d <= deadline);
            pool.units.insert(at, deadline);
        }
        pool.wait_until = if short {
            // When a whole batch fits again: the counter's TAT no more than
            // `tolerance − batch·T` ahead.
            let batch = interval.saturating_mul(u64::from(self.batch));
            pool.tat
                .saturating_sub(tolerance.saturating_sub(batch))
                .max(pool.wait_until)
        } else {
            0
        };
    }

    /// Drops every unit held (a counter was reset).
    pub(crate) fn clear(&self) {
        self.pools().clear();
    }
}

/// The decision for a check answered from reserved units (`until` is
/// `Some` for a check denied while waiting for a batch).
pub(crate) fn local_decision(quota: &Quota, tat: u64, now: u64, until: Option<u64>) -> Decision {
    match until {
        None => Decision::from_state(quota, true, tat.max(now), now, 0),
        Some(until) => Decision::from_state(quota, false, tat, now, until.saturating_sub(now)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CheckItem, evaluate};

    const MS: u64 = 1_000;

    /// The store's decision for one reserving check at `now` on a key
    /// `ahead` ahead.
    fn store_decision(quota: &Quota, ahead: u64, now: u64, reserve: u32) -> Decision {
        let item = CheckItem {
            reserve,
            ..CheckItem::new(b"k", *quota)
        };
        let stored = crate::gcra::Stored {
            tat: now + ahead,
            revision: 0,
        };
        let outcome = evaluate(&[item], &[stored], now, true).outcome;
        outcome.decisions[0]
    }

    #[test]
    fn a_rested_counter_grants_nothing_extra() {
        let quota = Quota::per_second(100).unwrap();
        let reservations = Reservations::new(8);
        let decision = store_decision(&quota, 0, 1_000 * MS, 7);
        assert!(decision.allowed());
        assert_eq!(decision.reserved(), 0);
        reservations.stored(b"k", &quota, 1_000 * MS, &decision, 7);
        assert!(matches!(
            reservations.take(b"k", 1, 1_000 * MS),
            Take::Ask { reserve: 7 }
        ));
    }

    #[test]
    fn units_expire_at_their_slots() {
        // T = 10 ms, tolerance 1 s; the key runs 600 ms ahead: the request
        // takes the slot at 600 ms, the 7 extra units 610..670 ms.
        let quota = Quota::per_second(100).unwrap();
        let reservations = Reservations::new(8);
        let asked_at = 5_000 * MS;
        let decision = store_decision(&quota, 600 * MS, asked_at, 7);
        assert_eq!(decision.reserved(), 7);
        reservations.stored(b"k", &quota, asked_at, &decision, 7);
        // Spent in time: each unit's deadline is its slot.
        let Take::Spent { units, .. } = reservations.take(b"k", 2, asked_at + 615 * MS) else {
            panic!("units were held");
        };
        // The unit at 610 ms has passed; 620 and 630 are taken.
        assert_eq!(&units[..], &[asked_at + 620 * MS, asked_at + 630 * MS]);
        // Given back, they are found again, in order.
        reservations.give_back(b"k", &units);
        let Take::Spent { units, .. } = reservations.take(b"k", 1, asked_at + 620 * MS) else {
            panic!("units were given back");
        };
        assert_eq!(&units[..], &[asked_at + 620 * MS]);
        // After the last slot, nothing is left: ask the store.
        assert!(matches!(
            reservations.take(b"k", 1, asked_at + 671 * MS),
            Take::Ask { reserve: 7 }
        ));
    }

    #[test]
    fn a_saturated_counter_makes_the_instance_wait_for_a_batch() {
        let quota = Quota::per_second(100).unwrap();
        let reservations = Reservations::new(8);
        let asked_at = 5_000 * MS;
        // 970 ms ahead: the request fits, then only 2 of the 7 extra units.
        let decision = store_decision(&quota, 970 * MS, asked_at, 7);
        assert_eq!(decision.reserved(), 2);
        reservations.stored(b"k", &quota, asked_at, &decision, 7);
        for _ in 0..2 {
            assert!(matches!(
                reservations.take(b"k", 1, asked_at),
                Take::Spent { .. }
            ));
        }
        // The TAT is 1,000 ms ahead; 8 units fit once it is 920 ms ahead.
        match reservations.take(b"k", 1, asked_at) {
            Take::Wait { until, .. } => assert_eq!(until, asked_at + 80 * MS),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            reservations.take(b"k", 1, asked_at + 80 * MS),
            Take::Ask { reserve: 7 }
        ));
    }

    #[test]
    fn a_denial_waits_for_a_batch() {
        let quota = Quota::per_second(100).unwrap();
        let reservations = Reservations::new(4);
        let asked_at = 5_000 * MS;
        let decision = store_decision(&quota, 1_000 * MS, asked_at, 3);
        assert!(!decision.allowed());
        reservations.stored(b"k", &quota, asked_at, &decision, 3);
        match reservations.take(b"k", 1, asked_at + MS) {
            Take::Wait { until, .. } => assert_eq!(until, asked_at + 40 * MS),
            other => panic!("{other:?}"),
        }
    }
}
