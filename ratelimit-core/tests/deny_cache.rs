//! The deny cache answers exactly what the store would: two limiters, one
//! with a cache and one without, each on its own in-memory store and both on
//! one fake clock, fed the same random operations, must decide every check
//! alike. Plus what the cache saves, and what empties it.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use ratelimit_core::Rules;
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use ratelimit_core::{
    DistributedRateLimiter, Identity, LimiterConfig, MemoryStore, Quota, Rule, Target, Verdict,
    clock::FakeClock, config::DenyCache, verdict::Source,
};

const SEC: Duration = Duration::from_secs(1);

/// Rules every limiter here starts with: two per-caller rules, a global one
/// (so selections share a key) and a shadow one.
fn rules() -> Vec<Rule> {
    let quota = |limit, window| Quota::new(limit, window).unwrap();
    vec![
        Rule::new("each", Target::Each, quota(3, SEC)).unwrap(),
        Rule::new("slow", Target::Each, quota(2, 10 * SEC)).unwrap(),
        Rule::new("global", Target::Global, quota(20, SEC)).unwrap(),
        Rule::new("watch", Target::Each, quota(1, SEC))
            .unwrap()
            .with_shadow(true),
    ]
}

const ROUTES: [&[&str]; 4] = [
    &["each"],
    &["each", "slow"],
    &["slow", "watch"],
    &["each", "watch"],
];
const RAISABLE: [&str; 3] = ["each", "slow", "global"];

fn limiter(clock: &FakeClock, cache: bool) -> DistributedRateLimiter {
    let store = Arc::new(MemoryStore::with_clock(clock.clone()));
    let mut config = LimiterConfig::new(store);
    for rule in rules() {
        config = config.rule(rule);
    }
    if cache {
        config = config.deny_cache(DenyCache::new(10_000).clock(clock.clone()));
    }
    DistributedRateLimiter::new(config)
}

/// Every check here is answered in place (in-memory store).
fn now<T>(future: impl Future<Output = T>) -> T {
    future
        .now_or_never()
        .expect("the in-memory store answers at once")
}

#[derive(Debug, Clone)]
enum Op {
    Check {
        caller: u8,
        route: usize,
        cost: u32,
    },
    Advance {
        ms: u64,
    },
    /// Raise a rule's limit. (Lowering one can leave keys more than a burst
    /// ahead, which the store caps when a check visits them; the cache's
    /// docs state how a cached denial may visit such a key later.)
    Raise {
        rule: usize,
        by: u32,
    },
    Reset {
        caller: u8,
        rule: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..4, 0..ROUTES.len(), 1u32..=2)
            .prop_map(|(caller, route, cost)| Op::Check { caller, route, cost }),
        2 => (0u64..1_500).prop_map(|ms| Op::Advance { ms }),
        1 => (0..RAISABLE.len(), 1u32..=3).prop_map(|(rule, by)| Op::Raise { rule, by }),
        1 => (0u8..4, 0..RAISABLE.len()).prop_map(|(caller, rule)| Op::Reset { caller, rule }),
    ]
}

/// Runs `ops` on both limiters; returns how many checks the cache answered.
fn run_both(ops: &[Op]) -> Result<usize, TestCaseError> {
    let clock = FakeClock::at_micros(1_000_000_000);
    let plain = limiter(&clock, false);
    let cached = limiter(&clock, true);
    let mut hits = 0;
    for op in ops {
        match *op {
            Op::Check {
                caller,
                route,
                cost,
            } => {
                let id = caller.to_string();
                let caller = Identity::user(&id);
                let expected = now(plain.check(&caller, &Rules::route(ROUTES[route]), cost));
                let got = now(cached.check(&caller, &Rules::route(ROUTES[route]), cost));
                match (expected, got) {
                    (Ok(expected), Ok(got)) => {
                        prop_assert_eq!(expected.allowed(), got.allowed(), "{:?}", op);
                        if got.source() == Source::DenyCache {
                            hits += 1;
                            same_denial(&expected, &got)?;
                        } else {
                            prop_assert_eq!(expected.decisions(), got.decisions());
                        }
                    }
                    (expected, got) => {
                        prop_assert_eq!(expected.err(), got.err(), "{:?}", op);
                    }
                }
            }
            Op::Advance { ms } => clock.advance(Duration::from_millis(ms)),
            Op::Raise { rule, by } => {
                for limiter in [&plain, &cached] {
                    let quota = *limiter.rules().get(RAISABLE[rule]).unwrap().quota();
                    now(limiter.update_rule(RAISABLE[rule], quota.limit() + by, quota.window()))
                        .unwrap();
                }
            }
            Op::Reset { caller, rule } => {
                let id = caller.to_string();
                for limiter in [&plain, &cached] {
                    now(limiter.reset(&Identity::user(&id), &Rules::one(RAISABLE[rule]))).unwrap();
                }
            }
        }
    }
    Ok(hits)
}

/// A cached denial lists the rules the store lists, denies by rules the
/// store also says deny, and never tells the caller to wait longer than the
/// store would.
fn same_denial(expected: &Verdict, got: &Verdict) -> Result<(), TestCaseError> {
    let ids = |v: &Verdict| -> Vec<String> {
        v.decisions()
            .iter()
            .filter(|d| !d.shadow)
            .map(|d| d.rule.to_string())
            .collect()
    };
    prop_assert_eq!(ids(got), ids(expected));
    prop_assert!(got.decisions().iter().any(|d| !d.decision.allowed()));
    for decision in got.decisions().iter().filter(|d| !d.decision.allowed()) {
        let store_says = expected
            .decisions()
            .iter()
            .find(|d| d.rule == decision.rule)
            .expect("the cached rule was checked by the store too");
        prop_assert!(!store_says.decision.allowed());
        prop_assert!(decision.decision.retry_after() <= store_says.decision.retry_after());
        prop_assert!(decision.decision.retry_after() > Duration::ZERO);
        prop_assert_eq!(decision.decision.limit(), store_says.decision.limit());
    }
    prop_assert!(got.retry_after() <= expected.retry_after());
    Ok(())
}

#[test]
fn decisions_are_identical_with_and_without_the_cache() {
    let mut runner = TestRunner::new(Config::with_cases(256));
    let hits = Cell::new(0);
    let cases = Cell::new(0);
    runner
        .run(&proptest::collection::vec(op(), 1..120), |ops| {
            hits.set(hits.get() + run_both(&ops)?);
            cases.set(cases.get() + 1);
            Ok(())
        })
        .unwrap();
    let (hits, cases) = (hits.get(), cases.get());
    // The comparison means something only if the cache answered often.
    assert!(
        hits > cases,
        "the cache answered {hits} checks in {cases} cases"
    );
}

#[test]
fn a_flood_on_a_denied_key_reaches_the_store_once() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let limiter = limiter(&clock, true);
    let caller = Identity::user("flood");
    let sources: Vec<Source> = (0..1_000)
        .map(|_| now(limiter.check(&caller, &Rules::route(["each"]), 1)).unwrap())
        .filter(|v| !v.allowed())
        .map(|v| v.source())
        .collect();
    assert_eq!(sources.len(), 997);
    assert_eq!(sources[0], Source::Store);
    assert!(sources[1..].iter().all(|s| *s == Source::DenyCache));

    // The cached denial's figures match the store's: the key is full, the
    // next request fits after one interval (1/3 s, rounded up to µs).
    let verdict = now(limiter.check(&caller, &Rules::route(["each"]), 1)).unwrap();
    let decision = verdict.binding().unwrap();
    assert_eq!(decision.rule.as_str(), "each");
    assert_eq!(decision.decision.remaining(), 0);
    assert_eq!(verdict.retry_after(), Duration::from_micros(333_334));

    clock.advance(Duration::from_micros(333_333));
    assert_eq!(
        now(limiter.check(&caller, &Rules::route(["each"]), 1))
            .unwrap()
            .source(),
        Source::DenyCache
    );
    clock.advance(Duration::from_micros(1));
    assert!(
        now(limiter.check(&caller, &Rules::route(["each"]), 1))
            .unwrap()
            .allowed()
    );
}

#[test]
fn a_smaller_cost_is_asked_of_the_store() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let limiter = limiter(&clock, true);
    let caller = Identity::user("1");
    // "slow": 2 per 10 s. Spend 1, then a cost of 2 is denied and cached.
    assert!(
        now(limiter.check(&caller, &Rules::named(["slow"]), 1))
            .unwrap()
            .allowed()
    );
    let denied = now(limiter.check(&caller, &Rules::named(["slow"]), 2)).unwrap();
    assert_eq!((denied.allowed(), denied.source()), (false, Source::Store));
    assert_eq!(
        now(limiter.check(&caller, &Rules::named(["slow"]), 2))
            .unwrap()
            .source(),
        Source::DenyCache
    );
    // A cost of 1 still fits: the cache must not answer it.
    let one = now(limiter.check(&caller, &Rules::named(["slow"]), 1)).unwrap();
    assert!(one.allowed());
}

#[test]
fn rule_changes_and_resets_empty_the_cache() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let limiter = limiter(&clock, true);
    let caller = Identity::user("1");
    let check = || now(limiter.check(&caller, &Rules::named(["each"]), 1)).unwrap();
    let fill = || {
        while check().allowed() {}
        assert_eq!(check().source(), Source::DenyCache);
    };

    fill();
    now(limiter.reset(&caller, &Rules::one("each"))).unwrap();
    assert!(check().allowed(), "a reset counter admits at once");

    fill();
    now(limiter.update_rule("each", 10, SEC)).unwrap();
    // The key is still full under the new quota (its TAT is unchanged), but
    // the store decides again.
    assert_eq!(check().source(), Source::Store);

    // Another caller's denial does not leak.
    fill();
    assert!(
        now(limiter.check(&Identity::user("2"), &Rules::named(["each"]), 1))
            .unwrap()
            .allowed()
    );
}

#[test]
fn shadow_denials_are_not_cached() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let limiter = limiter(&clock, true);
    let caller = Identity::user("1");
    for _ in 0..5 {
        let verdict = now(limiter.check(&caller, &Rules::named(["watch"]), 1)).unwrap();
        assert!(verdict.allowed());
        assert_eq!(verdict.source(), Source::Store);
    }
}

#[test]
fn a_full_cache_leaves_denials_to_the_store() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let store = Arc::new(MemoryStore::with_clock(clock.clone()));
    let limiter = DistributedRateLimiter::new(
        LimiterConfig::new(store)
            .rule(Rule::new("one", Target::Each, Quota::new(1, SEC).unwrap()).unwrap())
            .deny_cache(DenyCache::new(2).clock(clock.clone())),
    );
    let source = |id: &str| {
        now(limiter.check(&Identity::user(id), &Rules::one("one"), 1))
            .unwrap()
            .source()
    };
    for id in ["a", "b", "c"] {
        assert_eq!(source(id), Source::Store); // admitted
        assert_eq!(source(id), Source::Store); // denied, remembered if room
    }
    assert_eq!(source("a"), Source::DenyCache);
    assert_eq!(source("b"), Source::DenyCache);
    assert_eq!(source("c"), Source::Store, "no room for a third key");
    // Once the first two expire they are swept to make room (a full sweep
    // runs at most once a second).
    clock.advance(2 * SEC);
    for id in ["d", "e"] {
        assert_eq!(source(id), Source::Store);
        assert_eq!(source(id), Source::Store);
        assert_eq!(source(id), Source::DenyCache);
    }
}
