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

/// Tests a request of `cost` against a key whose TAT is `tat` (`None` for a
/// key not seen, or forgotten) at time `now`. Stores pass the TAT a stored
/// state stands for ([`booked`]), not the raw stored one.
///
/// Pure and total; for a cost above the quota's burst it reports a request
/// that never conforms (callers refuse such costs first, see
/// [`Quota::check_cost`]).
pub fn test(quota: &Quota, tat: Option<u64>, now: u64, cost: u32) -> Test {
    let base = tat.unwrap_or(0).max(now);
    let increment = quota.interval_micros().saturating_mul(u64::from(cost));
    let charged_tat = base.saturating_add(increment);
    let allowed_at = charged_tat.saturating_sub(quota.tolerance_micros());
    Test {
        conforms: allowed_at <= now,
        charged_tat,
        retry_after_micros: allowed_at.saturating_sub(now),
    }
}

/// The TAT a stored TAT stands for at `now` for a rule that never changed
/// its quota: [`booked`] with the original [`Lineage`].
pub fn effective_tat(quota: &Quota, tat: Option<u64>, now: u64) -> u64 {
    let stored = Stored {
        tat: tat.unwrap_or(0),
        revision: 0,
    };
    booked(quota, &Lineage::ORIGINAL, stored, now).tat
}

/// What a stored state stands for at `now`: see [`booked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Booked {
    /// The TAT to test the request against.
    pub tat: u64,
    /// Whether the state was found further ahead than
    /// [`Lineage::cap_micros`]: a store writes `tat` back (with the current
    /// revision) even when the check is denied.
    pub capped: bool,
}

/// The TAT a stored state stands for at `now`, under `quota` whose rule has
/// the lineage `lineage`.
///
/// - A state charged under the rule's current revision is read as it is.
/// - A state charged under the previous revision keeps its caller's usage:
///   its lead (how far it is ahead of `now`) was booked at the previous
///   emission interval, so it is rescaled to the current one — `k`
///   requests' worth stays `k` requests' worth ([`convert_lead`]). Until
///   the caller's next admission stores it under the current revision,
///   the stored state keeps draining at the previous rate: never slower
///   than the slower of the two quotas, never faster than the faster.
/// - A state from an older revision (the rule changed more than once while
///   the key was booked, and the caller was not admitted in between) is
///   read as it is.
///
/// Whatever the revision, a key is never found further ahead than
/// [`Lineage::cap_micros`]: one tolerance, or as many requests' worth as the
/// previous quota allowed if that was more. Only a clock that stepped back
/// (a Redis failover to a replica whose clock lags) pushes a key past that;
/// capping it means it waits for the normal rate from the current clock
/// instead of being locked out for the size of the jump. Stores write a
/// capped state back, with the current revision, even when the check is
/// denied — and nothing else on a denial, so that whether a check was
/// denied by the store or answered without it changes no later answer.
pub fn booked(quota: &Quota, lineage: &Lineage, stored: Stored, now: u64) -> Booked {
    if stored.tat <= now {
        return Booked {
            tat: stored.tat,
            capped: false,
        };
    }
    let lead = stored.tat.saturating_sub(now);
    if stored.revision == lineage.revision() && lead <= quota.tolerance_micros() {
        // The common case: nothing to convert, and within even the
        // smallest cap.
        return Booked {
            tat: stored.tat,
            capped: false,
        };
    }
    let lead = match lineage.previous_interval_micros() {
        Some(previous)
            if stored.revision != lineage.revision()
                && stored.revision == lineage.previous_revision() =>
        {
            convert_lead(lead, previous, quota.interval_micros())
        }
        _ => lead,
    };
    let cap = lineage.cap_micros(quota);
    Booked {
        tat: now.saturating_add(lead.min(cap)),
        capped: lead > cap,
    }
}

/// A lead booked at emission interval `from` expressed at interval `to`:
/// `⌈lead × to / from⌉`, computed in IEEE doubles in exactly this order, as
/// the Redis script (Lua numbers are doubles) computes it — so both stores
/// convert alike. Exact while `lead × to` is an integer a double holds
/// exactly; beyond that, within a rounding of the exact quotient.
pub fn convert_lead(lead: u64, from: u64, to: u64) -> u64 {
    if from == to || from == 0 {
        return lead;
    }
    #[allow(clippy::cast_precision_loss, clippy::arithmetic_side_effects)]
    let converted = (lead as f64 * to as f64 / from as f64).ceil();
    // `as` saturates for values beyond u64 (and the cap bounds it anyway).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let converted = converted as u64;
    converted
}

/// How many rule revisions a stored state tells apart: a state carries its
/// revision modulo this.
pub const REVISIONS: u16 = 1000;

/// The most a [`Lineage::cap_micros`] may be: small enough that a booked TAT
/// stays an integer a double holds exactly (as
/// [`Quota::MAX_TOLERANCE_MICROS`] keeps the tolerance).
const MAX_CAP_MICROS: u64 = 1 << 50;

/// Which quota a rule's counters were charged under: the rule's revision
/// (bumped each time its quota changes) and the quota it had at the
/// revision before.
///
/// A key's TAT says how far ahead its caller is booked, in time; how many
/// requests that is depends on the emission interval it was booked at.
/// Stores keep the revision beside each TAT, so a check under a changed
/// quota converts a lead booked under the previous quota (see
/// [`booked`]) instead of re-reading it at the new interval: a caller
/// who used 5 of 10 per minute, after the rule is lowered to 5 per minute,
/// has used 5 of 5.
///
/// ```
/// use std::time::Duration;
/// use ratelimit_core::{gcra::Lineage, Quota};
///
/// let ten = Quota::per_minute(10)?;
/// let five = Quota::per_minute(5)?;
/// let lineage = Lineage::ORIGINAL.succeeded_by(&ten, &five);
/// assert_eq!(lineage.revision(), 1);
/// assert_eq!(lineage.previous_interval_micros(), Some(6_000_000));
/// // The same quota again is no new revision.
/// assert_eq!(lineage.succeeded_by(&five, &five), lineage);
/// # Ok::<(), ratelimit_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lineage {
    revision: u16,
    /// 0 for none.
    previous_interval_micros: u64,
    previous_burst: u32,
}

impl Lineage {
    /// A rule whose quota never changed.
    pub const ORIGINAL: Self = Self {
        revision: 0,
        previous_interval_micros: 0,
        previous_burst: 0,
    };

    /// A lineage as a rule store recorded it: `revision` (below
    /// [`REVISIONS`]) and the previous quota's emission interval and burst
    /// (both 0 for none). `None` for values no lineage has.
    pub fn from_parts(
        revision: u16,
        previous_interval_micros: u64,
        previous_burst: u32,
    ) -> Option<Self> {
        let valid = revision < REVISIONS
            && (previous_interval_micros == 0) == (previous_burst == 0)
            && previous_interval_micros <= Quota::MAX_TOLERANCE_MICROS;
        valid.then_some(Self {
            revision,
            previous_interval_micros,
            previous_burst,
        })
    }

    /// The lineage after the rule's quota changes from `old` to `new`: the
    /// next revision, remembering `old`, when the emission interval or the
    /// burst changes; this one unchanged otherwise.
    #[must_use]
    pub fn succeeded_by(self, old: &Quota, new: &Quota) -> Self {
        if old.interval_micros() == new.interval_micros() && old.burst() == new.burst() {
            return self;
        }
        Self {
            revision: self.revision.saturating_add(1) % REVISIONS,
            previous_interval_micros: old.interval_micros(),
            previous_burst: old.burst(),
        }
    }

    /// The revision, below [`REVISIONS`].
    pub const fn revision(&self) -> u16 {
        self.revision
    }

    /// The revision before this one (modulo [`REVISIONS`]).
    pub fn previous_revision(&self) -> u16 {
        match self.revision.checked_sub(1) {
            Some(previous) => previous,
            None => REVISIONS.saturating_sub(1),
        }
    }

    /// The previous quota's emission interval, if the quota ever changed.
    pub fn previous_interval_micros(&self) -> Option<u64> {
        (self.previous_interval_micros > 0).then_some(self.previous_interval_micros)
    }

    /// The previous quota's burst (0 if the quota never changed).
    pub const fn previous_burst(&self) -> u32 {
        self.previous_burst
    }

    /// Whether the quota never changed.
    pub const fn is_original(&self) -> bool {
        self.revision == 0 && self.previous_interval_micros == 0
    }

    /// The furthest ahead a key is read under `quota`: the larger of the
    /// current and the previous burst, in requests of the current emission
    /// interval, never less than the tolerance nor more than the largest cap
    /// a store can hold exactly.
    pub fn cap_micros(&self, quota: &Quota) -> u64 {
        let burst = quota.burst().max(self.previous_burst);
        quota
            .interval_micros()
            .saturating_mul(u64::from(burst))
            .min(MAX_CAP_MICROS)
            .max(quota.tolerance_micros())
    }
}

/// A counter's state as a store keeps it: its TAT (0 for an absent key)
/// and the [`Lineage::revision`] it was last charged under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stored {
    /// The theoretical arrival time, µs.
    pub tat: u64,
    /// The rule revision the TAT was charged under.
    pub revision: u16,
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
        let denied = test(&q, Some(effective_tat(&q, far, now)), now, 1);
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

    #[test]
    fn a_changed_quota_keeps_each_callers_usage() {
        // 10 per minute (T = 6 s), lowered to 5 (T = 12 s): 5 used stay 5 used.
        let ten = quota(10, 60_000);
        let five = quota(5, 60_000);
        let now = 1_000_000_000;
        let lineage = Lineage::ORIGINAL.succeeded_by(&ten, &five);
        let used_five = Stored {
            tat: now + 5 * 6_000_000,
            revision: 0,
        };
        let booked = booked(&five, &lineage, used_five, now).tat;
        assert_eq!(booked, now + 5 * 12_000_000);
        assert!(!test(&five, Some(booked), now, 1).conforms);
        // Raised back: 5 used of 10, so exactly 5 more.
        let back = lineage.succeeded_by(&five, &ten);
        let mut tat = super::booked(
            &ten,
            &back,
            Stored {
                tat: booked,
                revision: lineage.revision(),
            },
            now,
        )
        .tat;
        for _ in 0..5 {
            let t = test(&ten, Some(tat), now, 1);
            assert!(t.conforms);
            tat = t.charged_tat;
        }
        assert!(!test(&ten, Some(tat), now, 1).conforms);
    }

    #[test]
    fn a_lowered_quota_may_book_more_than_its_tolerance() {
        // 10 used of 10 per minute, lowered to 5: 10 of 5 used, so the caller
        // waits until 4 are left used (6 intervals of 12 s), then one more.
        let ten = quota(10, 60_000);
        let five = quota(5, 60_000);
        let now = 1_000_000_000;
        let lineage = Lineage::ORIGINAL.succeeded_by(&ten, &five);
        let full = Stored {
            tat: now + 60_000_000,
            revision: 0,
        };
        let read = booked(&five, &lineage, full, now);
        assert!(!read.capped, "a converted lead is within the cap");
        let booked = read.tat;
        assert_eq!(booked, now + 120_000_000);
        let denied = test(&five, Some(booked), now, 1);
        assert_eq!(denied.retry_after_micros, 72_000_000);
        assert!(test(&five, Some(booked), now + 72_000_000, 1).conforms);
    }

    #[test]
    fn older_revisions_are_read_at_the_current_interval() {
        let a = quota(10, 60_000);
        let b = quota(5, 60_000);
        let c = quota(20, 60_000);
        let now = 1_000_000_000;
        let lineage = Lineage::ORIGINAL.succeeded_by(&a, &b).succeeded_by(&b, &c);
        assert_eq!(lineage.revision(), 2);
        let old = Stored {
            tat: now + 30_000_000,
            revision: 0,
        };
        assert_eq!(booked(&c, &lineage, old, now).tat, now + 30_000_000);
        // A rested key is left as it is, whatever its revision.
        let rested = Stored {
            tat: now - 5,
            revision: 7,
        };
        assert_eq!(booked(&c, &lineage, rested, now).tat, now - 5);
    }

    #[test]
    fn revisions_wrap_and_lineages_validate() {
        let a = quota(10, 1_000);
        let b = quota(20, 1_000);
        let last = Lineage::from_parts(REVISIONS - 1, 1, 1).unwrap();
        let next = last.succeeded_by(&a, &b);
        assert_eq!(next.revision(), 0);
        assert_eq!(next.previous_revision(), REVISIONS - 1);
        assert!(Lineage::from_parts(REVISIONS, 0, 0).is_none());
        assert!(Lineage::from_parts(1, 5, 0).is_none());
        assert_eq!(Lineage::from_parts(0, 0, 0), Some(Lineage::ORIGINAL));
    }

    #[test]
    fn conversion_rounds_up() {
        assert_eq!(convert_lead(10, 3, 2), 7);
        assert_eq!(convert_lead(9, 3, 2), 6);
        assert_eq!(convert_lead(5, 7, 7), 5);
        assert_eq!(convert_lead(u64::MAX, 1, u64::MAX), u64::MAX);
    }
}
