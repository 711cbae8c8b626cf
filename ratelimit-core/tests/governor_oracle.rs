//! The `governor` crate as an oracle: the same quotas and the same sequence
//! of fake times must give the same allow/deny answers, key by key.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::FakeRelativeClock;
use proptest::prelude::*;
use ratelimit_core::store::CheckItem;
use ratelimit_core::{MemoryStore, Quota, clock::FakeClock};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn same_answers_as_governor(
        limit in 1u32..=500,
        window_ms in 1u64..=60_000,
        burst in proptest::option::of(1u32..=600),
        steps in proptest::collection::vec((0u64..300_000, 0usize..4, 1u32..=3), 1..300),
    ) {
        let Ok(quota) = Quota::new(limit, Duration::from_millis(window_ms)) else {
            return Ok(());
        };
        let quota = match burst {
            Some(burst) => quota.with_burst(burst).unwrap(),
            None => quota,
        };
        let burst = NonZeroU32::new(quota.burst()).unwrap();
        let oracle_quota = governor::Quota::with_period(quota.emission_interval())
            .unwrap()
            .allow_burst(burst);
        let oracle_clock = FakeRelativeClock::default();
        let oracle = governor::RateLimiter::dashmap_with_clock(oracle_quota, oracle_clock.clone());

        let clock = FakeClock::new();
        let store = MemoryStore::with_clock(clock.clone());
        let keys: [&[u8]; 4] = [b"a", b"b", b"c", b"d"];

        for (i, (step, key, cost)) in steps.into_iter().enumerate() {
            clock.advance(Duration::from_micros(step));
            oracle_clock.advance(Duration::from_micros(step));
            let cost = cost.min(quota.burst());
            let ours = store
                .check_now(&[CheckItem { cost, ..CheckItem::new(keys[key], quota) }])
                .unwrap()
                .allowed;
            let theirs = oracle
                .check_key_n(&key, NonZeroU32::new(cost).unwrap())
                .unwrap()
                .is_ok();
            prop_assert_eq!(ours, theirs, "step {}: key {} cost {}", i, key, cost);
        }
    }
}
