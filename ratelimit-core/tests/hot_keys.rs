//! Hot-key mode (`Rule::with_batch`): instances reserve units in batches and
//! spend them locally. What must hold: the fleet never admits more than the
//! rule allows (checked against a GCRA oracle over every admission, for
//! random fleets, rates, batches and arrival patterns); under saturation
//! most checks never reach the store; below saturation nothing changes.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use ratelimit_core::store::{CheckItem, Outcome};
use ratelimit_core::{
    DistributedRateLimiter, Error, Identity, LimiterConfig, MemoryStore, Quota, Rule, Rules, Store,
    Target, clock::Clock, clock::FakeClock, gcra, verdict::Source,
};

/// The shared store, counting the checks that reach it.
#[derive(Debug)]
struct Counting {
    inner: MemoryStore,
    checks: AtomicU64,
}

impl Counting {
    fn new(clock: &FakeClock) -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryStore::with_clock(clock.clone()),
            checks: AtomicU64::new(0),
        })
    }

    fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Store for Counting {
    async fn check(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        self.checks.fetch_add(1, Ordering::Relaxed);
        self.inner.check_now(items)
    }

    async fn peek(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        self.inner.peek_now(items)
    }

    async fn reset(&self, keys: &[&[u8]]) -> Result<(), Error> {
        self.inner.reset_now(keys);
        Ok(())
    }

    fn try_check_now(&self, items: &[CheckItem<'_>]) -> Option<Result<Outcome, Error>> {
        self.checks.fetch_add(1, Ordering::Relaxed);
        Some(self.inner.check_now(items))
    }
}

fn instance(store: &Arc<Counting>, clock: &FakeClock, rules: &[Rule]) -> DistributedRateLimiter {
    let mut config = LimiterConfig::new(store.clone()).clock(clock.clone());
    for rule in rules {
        config = config.rule(rule.clone());
    }
    DistributedRateLimiter::new(config)
}

/// One request of `cost` by `user` on one instance, answered in place.
fn check(
    limiter: &DistributedRateLimiter,
    user: &str,
    rules: &[&str],
    cost: u32,
) -> ratelimit_core::Verdict {
    limiter
        .try_check(
            &Identity::user(user),
            &Rules::named(rules.iter().copied()),
            cost,
        )
        .expect("the in-memory store answers in place")
        .expect("a valid check")
}

#[derive(Debug, Clone)]
struct Arrival {
    advance_us: u64,
    instance: usize,
    user: u8,
    with_user_rule: bool,
    cost: u32,
    awaited: bool,
}

fn arrival() -> impl Strategy<Value = Arrival> {
    (
        prop_oneof![
            6 => Just(0u64),
            6 => 0u64..2_000,
            2 => 0u64..50_000,
            1 => 0u64..3_000_000,
        ],
        0usize..3,
        0u8..4,
        prop::bool::weighted(0.3),
        prop_oneof![4 => Just(1u32), 1 => 1u32..=3],
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(advance_us, instance, user, with_user_rule, cost, awaited)| Arrival {
                advance_us,
                instance,
                user,
                with_user_rule,
                cost,
                awaited,
            },
        )
}

fn global_quota() -> impl Strategy<Value = Quota> {
    (5u32..=60, 50u64..=2_000, proptest::option::of(4u32..=80)).prop_filter_map(
        "valid quota",
        |(limit, window_ms, burst)| {
            let quota = Quota::new(limit, Duration::from_millis(window_ms)).ok()?;
            match burst {
                Some(burst) => quota.with_burst(burst).ok(),
                None => Some(quota),
            }
        },
    )
}

/// Replays every admission of the global rule, in time order, through GCRA
/// itself: each one must conform. That is "the fleet never admitted more
/// than the rule allows", in the rule's own terms.
#[test]
fn the_fleet_never_admits_more_than_the_rule_allows() {
    let mut runner = TestRunner::new(Config {
        cases: 256,
        ..Config::default()
    });
    let strategy = (
        global_quota(),
        2u32..=16,
        1usize..=3,
        proptest::collection::vec(arrival(), 1..400),
    );
    let batched_admissions = Cell::new(0u64);
    let all_admissions = Cell::new(0u64);
    let result = runner.run(&strategy, |(quota, batch, instances, arrivals)| {
        let clock = FakeClock::at_micros(1_000_000_000);
        let store = Counting::new(&clock);
        let rules = [
            Rule::new("global", Target::Global, quota)
                .unwrap()
                .with_batch(batch),
            Rule::new("user", Target::Each, Quota::per_second(5).unwrap()).unwrap(),
        ];
        let fleet: Vec<_> = (0..instances)
            .map(|_| instance(&store, &clock, &rules))
            .collect();
        let mut tat = None;
        for (step, arrival) in arrivals.iter().enumerate() {
            clock.advance(Duration::from_micros(arrival.advance_us));
            let limiter = &fleet[arrival.instance % instances];
            let user = arrival.user.to_string();
            let names: &[&str] = if arrival.with_user_rule {
                &["user", "global"]
            } else {
                &["global"]
            };
            let cost = arrival.cost.min(quota.burst());
            let verdict = if arrival.awaited {
                limiter
                    .check(
                        &Identity::user(&user),
                        &Rules::named(names.iter().copied()),
                        cost,
                    )
                    .now_or_never()
                    .expect("the in-memory store answers at once")
                    .expect("a valid check")
            } else {
                check(limiter, &user, names, cost)
            };
            if verdict.allowed() {
                let now = clock.now_micros();
                let test = gcra::test(&quota, tat, now, cost);
                prop_assert!(
                    test.conforms,
                    "step {step}: admission at {now} (cost {cost}, source {:?}) exceeds the rule",
                    verdict.source()
                );
                tat = Some(test.charged_tat);
                all_admissions.set(all_admissions.get() + 1);
                if verdict.source() == Source::Batch {
                    batched_admissions.set(batched_admissions.get() + 1);
                }
            }
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    // The sequences must reach hot-key mode's local path often (about one
    // admission in seven does), or the
    // property says nothing about it.
    let (batched, all) = (batched_admissions.get(), all_admissions.get());
    assert!(
        batched * 10 >= all,
        "{batched} of {all} admissions from reserved units"
    );
}

/// A flood on one global rule: 10 times its rate, on one instance.
fn flood(batch: u32) -> (u64, u64, u64) {
    let clock = FakeClock::at_micros(1_000_000_000);
    let store = Counting::new(&clock);
    let rule = Rule::new("global", Target::Global, Quota::per_second(1_000).unwrap())
        .unwrap()
        .with_batch(batch);
    let limiter = instance(&store, &clock, &[rule]);
    let mut admitted = 0;
    let checks = 20_000;
    for _ in 0..checks {
        clock.advance(Duration::from_micros(100));
        if check(&limiter, "1", &["global"], 1).allowed() {
            admitted += 1;
        }
    }
    (checks, admitted, store.checks())
}

#[test]
fn under_saturation_batches_spare_the_store_and_admit_nearly_as_much() {
    // 2 s of 10,000 checks/s on a rule of 1,000/s with a burst of 1,000:
    // GCRA admits the burst plus 2 s of rate.
    let (checks, plain_admitted, plain_calls) = flood(0);
    assert_eq!(plain_calls, checks);
    assert_eq!(plain_admitted, 2_999);
    let (_, admitted, calls) = flood(50);
    eprintln!(
        "{checks} checks: one call per check admits {plain_admitted}; batches of 50 admit {admitted} with {calls} store calls"
    );
    assert!(admitted <= plain_admitted);
    // The shortfall stays within a batch or two.
    assert!(admitted + 100 >= plain_admitted, "admitted {admitted}");
    // The first 500 checks go one by one (the counter less than half used),
    // then about one call per 50 admitted units and one per wait.
    assert!(calls < 700, "{calls} store calls for {checks} checks");
}

#[test]
fn below_half_the_burst_every_check_goes_to_the_store() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let store = Counting::new(&clock);
    let rule = Rule::new("global", Target::Global, Quota::per_second(100).unwrap())
        .unwrap()
        .with_batch(10);
    let limiter = instance(&store, &clock, &[rule]);
    // 50 per second: the counter never runs more than a few intervals ahead.
    for i in 0..500 {
        clock.advance(Duration::from_millis(20));
        let verdict = check(&limiter, "1", &["global"], 1);
        assert!(verdict.allowed(), "check {i}");
        assert_eq!(verdict.source(), Source::Store);
        assert_eq!(verdict.decisions()[0].decision.reserved(), 0);
    }
    assert_eq!(store.checks(), 500);
}

#[test]
fn units_from_before_a_reset_or_a_rule_change_are_not_spent() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let store = Counting::new(&clock);
    let rule = Rule::new("global", Target::Global, Quota::per_second(10).unwrap())
        .unwrap()
        .with_batch(4);
    let limiter = instance(&store, &clock, &[rule]);
    let spend_until_batch = |limiter: &DistributedRateLimiter| {
        for _ in 0..10 {
            if check(limiter, "1", &["global"], 1).source() == Source::Batch {
                return true;
            }
        }
        false
    };
    assert!(spend_until_batch(&limiter), "units were reserved");

    // A reset: the counter is fresh, and the units reserved from the old
    // one are gone, so the next check asks the store.
    limiter
        .reset(&Identity::user("1"), &Rules::one("global"))
        .now_or_never()
        .unwrap()
        .unwrap();
    let calls = store.checks();
    assert_eq!(check(&limiter, "1", &["global"], 1).source(), Source::Store);
    assert_eq!(store.checks(), calls + 1);

    // Spend the burst again until units are held, then change the rule.
    assert!(spend_until_batch(&limiter));
    limiter
        .update_rule("global", 20, Duration::from_secs(1))
        .now_or_never()
        .unwrap()
        .unwrap();
    assert_ne!(check(&limiter, "1", &["global"], 1).source(), Source::Batch);
}

#[test]
fn a_denial_by_another_rule_gives_the_units_back() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let store = Counting::new(&clock);
    let rules = [
        Rule::new("global", Target::Global, Quota::per_second(20).unwrap())
            .unwrap()
            .with_batch(8),
        Rule::new("user", Target::Each, Quota::per_second(1).unwrap()).unwrap(),
    ];
    let limiter = instance(&store, &clock, &rules);
    // T = 50 ms, tolerance 1 s. Ten users' checks bring the counter to half
    // its tolerance; the tenth reserves 7 more units, the eleventh spends
    // one: 6 are held.
    for user in 0..10 {
        let verdict = check(&limiter, &user.to_string(), &["global"], 1);
        assert_eq!(verdict.source(), Source::Store);
    }
    assert_eq!(
        check(&limiter, "10", &["global"], 1).source(),
        Source::Batch
    );
    // User "x" spends its own quota, then is denied by it five times: each
    // check takes a global unit and must give it back.
    assert!(check(&limiter, "x", &["user"], 1).allowed());
    for _ in 0..5 {
        let verdict = check(&limiter, "x", &["user", "global"], 1);
        assert!(!verdict.allowed());
        assert_eq!(verdict.source(), Source::Store);
    }
    let mut held = 0;
    while check(&limiter, "spender", &["global"], 1).source() == Source::Batch {
        held += 1;
    }
    assert_eq!(held, 6);
}
