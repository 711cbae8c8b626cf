//! The GCRA function against an independently written reference: the
//! continuous-state leaky bucket (the dual definition of GCRA in ITU-T I.371),
//! over random quotas, costs and time steps.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::time::Duration;

use proptest::prelude::*;
use ratelimit_core::{Quota, gcra, store::Decision};

/// A leaky bucket of capacity `burst × T` microseconds that drains one
/// microsecond per microsecond; a request of cost `c` pours `c × T` into it
/// and conforms if the bucket does not overflow. u128 so it cannot overflow.
#[derive(Debug, Clone, Copy)]
struct LeakyBucket {
    level: u128,
    last: u128,
}

struct ModelDecision {
    allowed: bool,
    remaining: u128,
    retry_after: u128,
    reset_after: u128,
}

impl LeakyBucket {
    fn new() -> Self {
        Self { level: 0, last: 0 }
    }

    fn offer(&mut self, interval: u128, burst: u128, now: u128, cost: u128) -> ModelDecision {
        let drained = self.level.saturating_sub(now.saturating_sub(self.last));
        let capacity = interval * burst;
        let after = drained + cost * interval;
        let allowed = after <= capacity;
        let level = if allowed { after } else { drained };
        if allowed {
            self.level = after;
            self.last = now;
        }
        ModelDecision {
            allowed,
            remaining: (capacity - level) / interval,
            retry_after: if allowed { 0 } else { after - capacity },
            reset_after: level,
        }
    }
}

fn quota_strategy() -> impl Strategy<Value = Quota> {
    (
        1u32..=1_000,
        1u64..=120_000,
        proptest::option::of(1u32..=2_000),
    )
        .prop_filter_map("valid quota", |(limit, window_ms, burst)| {
            let quota = Quota::new(limit, Duration::from_millis(window_ms)).ok()?;
            match burst {
                Some(burst) => quota.with_burst(burst).ok(),
                None => Some(quota),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn gcra_matches_the_leaky_bucket(
        quota in quota_strategy(),
        start in 0u64..(1u64 << 51),
        steps in proptest::collection::vec((0u64..2_000_000, 1u32..=8), 1..200),
    ) {
        let interval = u128::from(quota.interval_micros());
        let burst = u128::from(quota.burst());
        let mut model = LeakyBucket::new();
        model.last = u128::from(start);
        let mut tat: Option<u64> = None;
        let mut now = start;
        for (step, cost) in steps {
            now += step;
            let cost = cost.min(quota.burst());
            let expected = model.offer(interval, burst, u128::from(now), u128::from(cost));

            let test = gcra::test(&quota, tat, now, cost);
            let state = if test.conforms { test.charged_tat } else { tat.unwrap_or(0) };
            let decision = Decision::from_state(&quota, test.conforms, state, now, test.retry_after_micros);
            if test.conforms {
                tat = Some(test.charged_tat);
            }

            prop_assert_eq!(decision.allowed(), expected.allowed);
            prop_assert_eq!(u128::from(decision.remaining()), expected.remaining);
            prop_assert_eq!(decision.retry_after().as_micros(), expected.retry_after);
            prop_assert_eq!(decision.reset_after().as_micros(), expected.reset_after);
        }
    }

    /// Waiting exactly `retry_after` makes a denied request conform, and not
    /// a microsecond less.
    #[test]
    fn retry_after_is_exact(
        quota in quota_strategy(),
        now in 1_000_000u64..(1u64 << 51),
        filled in 0u32..=4_000,
        cost in 1u32..=8,
    ) {
        let cost = cost.min(quota.burst());
        let tat = now + u64::from(filled) * quota.interval_micros();
        // A store tests the TAT as it reads it (one beyond its tolerance
        // capped) and holds that after the denial.
        let held = Some(gcra::effective_tat(&quota, Some(tat), now));
        let test = gcra::test(&quota, held, now, cost);
        if !test.conforms {
            let at = now + test.retry_after_micros;
            prop_assert!(gcra::test(&quota, held, at, cost).conforms);
            prop_assert!(!gcra::test(&quota, held, at - 1, cost).conforms);
        }
    }

    /// Over any run, admissions never exceed burst + elapsed / T (the rate
    /// the quota promises), counting costs.
    #[test]
    fn never_admits_more_than_the_quota(
        quota in quota_strategy(),
        steps in proptest::collection::vec((0u64..50_000, 1u32..=4), 1..400),
    ) {
        let start = 1_000_000_000u64;
        let mut now = start;
        let mut tat = None;
        let mut admitted = 0u64;
        for (step, cost) in steps {
            now += step;
            let cost = cost.min(quota.burst());
            let test = gcra::test(&quota, tat, now, cost);
            if test.conforms {
                tat = Some(test.charged_tat);
                admitted += u64::from(cost);
            }
            let bound = u64::from(quota.burst()) + (now - start) / quota.interval_micros();
            prop_assert!(admitted <= bound, "admitted {} > bound {}", admitted, bound);
        }
    }
}

fn any_quota() -> impl Strategy<Value = Quota> {
    (
        1u32..=u32::MAX,
        1_000u64..=Quota::MAX_WINDOW.as_micros() as u64,
        proptest::option::of(1u32..=u32::MAX),
    )
        .prop_filter_map("valid quota", |(limit, window_us, burst)| {
            let quota = Quota::new(limit, Duration::from_micros(window_us)).ok()?;
            match burst {
                Some(burst) => quota.with_burst(burst).ok(),
                None => Some(quota),
            }
        })
}

proptest! {
    /// Total over every input, not just sensible ones: any quota the
    /// constructors accept, any stored TAT, any clock reading, any cost. In
    /// a debug build an overflow would panic here.
    #[test]
    fn total_over_all_inputs(
        quota in any_quota(),
        tat in proptest::option::of(any::<u64>()),
        now in any::<u64>(),
        cost in any::<u32>(),
    ) {
        let test = gcra::test(&quota, tat, now, cost);
        let state = if test.conforms { test.charged_tat } else { tat.unwrap_or(0) };
        let decision = Decision::from_state(&quota, test.conforms, state, now, test.retry_after_micros);
        prop_assert!(decision.remaining() <= u64::from(quota.burst()));
        prop_assert_eq!(test.conforms, test.retry_after_micros == 0);
        if test.conforms {
            prop_assert!(test.charged_tat >= now);
        }
    }
}
