//! The Generic Cell Rate Algorithm, as pure integer functions.
//!
//! A key's whole state is one number, its *theoretical arrival time* (TAT):
//! the instant at which the key would be fully rested. A request of cost `c`
//! conforms when, after charging it (`TAT' = max(TAT, now) + c·T`), the key is
//! no further ahead of the clock than the quota's tolerance `τ = burst·T`:
//!
//! ```text
//! conforms  ⇔  max(TAT, now) + c·T − τ ≤ now
//! ```
//!
//! A key whose TAT is not in the future is indistinguishable from a key never
//! seen, so a store may forget it. A TAT only ever moves forward.
//!
//! Every time value is an integer count of microseconds. The functions here
//! use saturating arithmetic, so they are total: no input makes them panic or
//! wrap. Stores (the in-memory one here, the Lua script in `ratelimit-redis`)
//! call [`test()`] and [`Decision::from_state`](crate::Decision::from_state) and nothing else, so they cannot
//! disagree about the algorithm.
//!
//! ```
//! use std::time::Duration;
//! use ratelimit_core::{gcra, Quota};
//!
//! let quota = Quota::per_second(2)?; // T = 500 ms, burst 2
//! let now = 1_000_000;
//! let first = gcra::test(&quota, None, now, 1);
//! assert!(first.conforms);
//! let second = gcra::test(&quota, Some(first.charged_tat), now, 1);
//! assert!(second.conforms);
//! let third = gcra::test(&quota, Some(second.charged_tat), now, 1);
//! assert!(!third.conforms);
//! assert_eq!(third.retry_after_micros, 500_000);
//! # Ok::<(), ratelimit_core::Error>(())
//! ```
#![deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

use crate::Quota;

/// The result of testing one request against one key's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Test {
    /// Whether the request fits the quota now.
    pub conforms: bool,
    /// The TAT the key would have after being charged for this request.
    /// A store writes it only when the request is admitted.
    pub charged_tat: u64,
    /// When not conforming: microseconds until a request of the same cost
    /// would conform, if nothing else charges the key. Zero when conforming.
    pub retry_after_micros: u64,
}

/// Tests a request of `cost` against a key whose stored TAT is `tat` (`None`
/// for a key not seen, or forgotten) at time `now`.
///
/// Pure and total; for a cost above the quota's burst it reports a request
/// that never conforms (callers refuse such costs first, see
/// [`Quota::check_cost`]).
pub fn test(quota: &Quota, tat: Option<u64>, now: u64, cost: u32) -> Test {
    let base = effective_tat(quota, tat, now).max(now);
    let increment = quota.interval_micros().saturating_mul(u64::from(cost));
    let charged_tat = base.saturating_add(increment);
    let allowed_at = charged_tat.saturating_sub(quota.tolerance_micros());
    Test {
        conforms: allowed_at <= now,
        charged_tat,
        retry_after_micros: allowed_at.saturating_sub(now),
    }
}

/// The TAT a stored TAT stands for at `now`: the stored one (0 for an absent
/// key), but never more than one full tolerance ahead of the clock.
///
/// A conforming check never leaves a key further ahead than its tolerance,
/// so a key is only found further ahead when its rule's quota was lowered or
/// the store's clock stepped backwards (a Redis failover to a replica whose
/// clock lags). Capping it means such a key counts as fully used — it waits
/// for the normal rate, from the current clock — instead of being locked out
/// for the size of the jump. Stores write the capped TAT back (even when the
/// check is denied), so the key then recovers at the normal rate.
pub fn effective_tat(quota: &Quota, tat: Option<u64>, now: u64) -> u64 {
    tat.unwrap_or(0)
        .min(now.saturating_add(quota.tolerance_micros()))
}

/// How many units beyond a conforming request a reservation may take: as many
/// of `want` as still conform after the request (whose charged TAT is
/// `charged_tat`), but none unless the key then runs at least half its
/// tolerance ahead of `now`.
///
/// Why the half: a unit reserved at `now` may only be spent until its slot
/// (the time the key's TAT passed through it) comes round, or the key would
/// have rested while the unit was held and could admit it twice. Units
/// taken from a key that runs half a tolerance ahead can each be held at
/// least that long; units taken from a rested key would have to be spent
/// within an interval or two, and would mostly be wasted. So a key below its
/// rate is checked unit by unit, and a saturated one hands out batches.
///
/// ```
/// use ratelimit_core::{gcra, Quota};
///
/// let quota = Quota::per_second(100)?; // T = 10 ms, tolerance 1 s
/// // A rested key: the request leaves it 10 ms ahead, far from half: nothing extra.
/// assert_eq!(gcra::extra_units(&quota, 10_000, 0, 8), 0);
/// // A key 700 ms ahead after the request: 30 units still fit, 8 wanted.
/// assert_eq!(gcra::extra_units(&quota, 700_000, 0, 8), 8);
/// // 970 ms ahead: only 3 fit.
/// assert_eq!(gcra::extra_units(&quota, 970_000, 0, 8), 3);
/// # Ok::<(), ratelimit_core::Error>(())
/// ```
pub fn extra_units(quota: &Quota, charged_tat: u64, now: u64, want: u32) -> u32 {
    let ahead = charged_tat.saturating_sub(now);
    let tolerance = quota.tolerance_micros();
    if want == 0 || ahead.saturating_mul(2) < tolerance {
        return 0;
    }
    let fit = tolerance
        .saturating_sub(ahead)
        .checked_div(quota.interval_micros())
        .unwrap_or(0);
    u32::try_from(fit).unwrap_or(u32::MAX).min(want)
}

/// The TAT after charging `extra` more units on top of `charged_tat`.
pub fn with_extra_units(quota: &Quota, charged_tat: u64, extra: u32) -> u64 {
    charged_tat.saturating_add(quota.interval_micros().saturating_mul(u64::from(extra)))
}

/// How many requests of cost 1 a key with TAT `tat` could make at `now`.
pub fn remaining(quota: &Quota, tat: u64, now: u64) -> u64 {
    remaining_from_ahead(
        quota.interval_micros(),
        quota.tolerance_micros(),
        tat.saturating_sub(now),
    )
}

/// [`remaining`] from the quota's parts and how far the TAT is ahead of now.
pub(crate) fn remaining_from_ahead(interval: u64, tolerance: u64, ahead: u64) -> u64 {
    let free = tolerance.saturating_sub(ahead);
    if free < interval {
        // Spares the division on the denial path, where nothing is free.
        return 0;
    }
    // interval ≥ 1 by construction of Quota (and free ≥ interval here).
    free.checked_div(interval).unwrap_or(0)
}

/// Microseconds until a key with TAT `tat` is fully rested (back to `burst`).
pub fn reset_after_micros(tat: u64, now: u64) -> u64 {
    tat.saturating_sub(now)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::arithmetic_side_effects)]
    use super::*;
    use std::time::Duration;

    fn quota(limit: u32, ms: u64) -> Quota {
        Quota::new(limit, Duration::from_millis(ms)).unwrap()
    }

    #[test]
    fn a_fresh_key_spends_its_burst_then_waits_one_interval() {
        let q = quota(10, 1_000);
        let now = 5_000_000;
        let mut tat = None;
        for i in 0..10 {
            let t = test(&q, tat, now, 1);
            assert!(t.conforms, "request {i}");
            assert_eq!(remaining(&q, t.charged_tat, now), 9 - i);
            tat = Some(t.charged_tat);
        }
        let denied = test(&q, tat, now, 1);
        assert!(!denied.conforms);
        assert_eq!(denied.retry_after_micros, 100_000);
        assert_eq!(reset_after_micros(tat.unwrap(), now), 1_000_000);
        let later = test(&q, tat, now + 100_000, 1);
        assert!(later.conforms);
    }

    #[test]
    fn a_past_tat_is_a_fresh_key() {
        let q = quota(5, 1_000);
        assert_eq!(
            test(&q, Some(10), 1_000_000, 1),
            test(&q, None, 1_000_000, 1)
        );
        assert_eq!(remaining(&q, 10, 1_000_000), 5);
    }

    #[test]
    fn a_key_is_never_more_than_one_tolerance_ahead() {
        // 2 per second: T = 500 ms, tolerance 1 s. The stored TAT is an hour
        // ahead, as after the clock stepped back an hour.
        let q = quota(2, 1_000);
        let now = 10_000_000_000;
        let far = Some(now + 3_600_000_000);
        assert_eq!(effective_tat(&q, far, now), now + 1_000_000);
        let denied = test(&q, far, now, 1);
        assert!(!denied.conforms);
        assert_eq!(denied.retry_after_micros, 500_000);
        // Stores write the capped TAT back, so the key recovers at the rate.
        let capped = Some(effective_tat(&q, far, now));
        assert!(test(&q, capped, now + 500_000, 1).conforms);
    }

    #[test]
    fn extremes_do_not_overflow() {
        let q = Quota::new(1, Quota::MAX_WINDOW)
            .unwrap()
            .with_burst(8)
            .unwrap();
        for now in [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
            for tat in [None, Some(0), Some(now), Some(u64::MAX)] {
                for cost in [1, 8, u32::MAX] {
                    let t = test(&q, tat, now, cost);
                    let _ = remaining(&q, t.charged_tat, now);
                    let _ = reset_after_micros(t.charged_tat, now);
                }
            }
        }
        // A cost above the burst never conforms, however rested the key.
        assert!(!test(&q, None, 1_000, 9).conforms);
    }
}
