//! Hot-key mode against real Redis: instances reserving batches from one
//! global counter never admit more than the rule allows between them, spare
//! Redis most of the calls under a flood, and on a cluster a check denied
//! by another slot gives back the units its reservation took.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use ratelimit_core::Rules;
use std::sync::Arc;
use std::time::Duration;

use ratelimit_core::{
    DistributedRateLimiter, Identity, LimiterConfig, Quota, Rule, Target, clock::Clock,
    clock::FakeClock, gcra, verdict::Source,
};
use ratelimit_redis::RedisStore;
use ratelimit_test_support::{RedisCluster, RedisServer};

const HOUR: Duration = Duration::from_secs(3_600);

fn limiter(store: RedisStore, clock: &FakeClock, rules: &[Rule]) -> DistributedRateLimiter {
    let mut config = LimiterConfig::new(Arc::new(store))
        .timeout(Duration::from_secs(1))
        .clock(clock.clone());
    for rule in rules {
        config = config.rule(rule.clone());
    }
    DistributedRateLimiter::new(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_hot_counter_within_its_rule() {
    let server = RedisServer::start();
    // Redis and both instances read this clock; it only moves forward, and
    // faster than real time, so Redis's own expiry never forgets a TAT the
    // fake clock still holds.
    let clock = FakeClock::at_micros(1_000_000_000_000);
    let quota = Quota::per_second(100).unwrap();
    let batch = 10;
    let rule = Rule::new("global", Target::Global, quota)
        .unwrap()
        .with_batch(batch);
    let mut fleet = Vec::new();
    for _ in 0..2 {
        let store = RedisStore::builder(&server.url())
            .clock(clock.clone())
            .build()
            .await
            .unwrap();
        fleet.push(limiter(store, &clock, std::slice::from_ref(&rule)));
    }
    let calls_before = server.script_calls();

    // 6,000 checks over about 6 s of fake time: ten times the rule's rate,
    // in uneven steps (a fixed pseudo-random sequence).
    let (mut admitted, mut local, mut tat, mut possible_tat, mut possible) = (0, 0, None, None, 0);
    let mut seed = 0x2545_f491_u64;
    for i in 0..6_000 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        clock.advance(Duration::from_micros((seed >> 33) % 2_000));
        let now = clock.now_micros();
        // What one check per request would have admitted.
        let plain = gcra::test(&quota, possible_tat, now, 1);
        if plain.conforms {
            possible += 1;
            possible_tat = Some(plain.charged_tat);
        }
        let verdict = fleet[i % 2]
            .check(
                &Identity::user(&(i % 7).to_string()),
                &Rules::one("global"),
                1,
            )
            .await
            .unwrap();
        assert_ne!(
            verdict.source(),
            Source::FailOpen,
            "{:?}",
            verdict.store_error()
        );
        if verdict.allowed() {
            let test = gcra::test(&quota, tat, now, 1);
            assert!(
                test.conforms,
                "check {i}: admission at {now} exceeds the rule"
            );
            tat = Some(test.charged_tat);
            admitted += 1;
            if verdict.source() == Source::Batch {
                local += 1;
            }
        }
    }
    let calls = server.script_calls() - calls_before;
    eprintln!(
        "admitted {admitted} of {possible} possible, {local} from reserved units, {calls} script calls for 6000 checks"
    );
    assert!(admitted <= possible);
    assert!(
        admitted + 4 * u64::from(batch) >= possible,
        "admitted {admitted} of {possible}"
    );
    assert!(local * 2 > admitted, "{local} of {admitted} spent locally");
    assert!(calls < 600, "{calls} script calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_denial_in_another_slot_gives_back_the_reserved_units() {
    let cluster = RedisCluster::start(3, 0);
    let clock = FakeClock::at_micros(1_000_000_000_000);
    let store = RedisStore::cluster_builder(&cluster.urls())
        .timeout(Duration::from_secs(1))
        .connection_timeout(Duration::from_secs(2))
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let rules = [
        Rule::new("global", Target::Global, Quota::per_second(10).unwrap())
            .unwrap()
            .with_batch(4),
        Rule::new("user", Target::Each, Quota::new(1, HOUR).unwrap()).unwrap(),
    ];
    let limiter = limiter(store, &clock, &rules);
    // Four users take 4 of the global burst of 10 (no time passes).
    for user in 0..4 {
        let verdict = limiter
            .check(&Identity::user(&user.to_string()), &Rules::one("global"), 1)
            .await
            .unwrap();
        assert!(verdict.allowed());
        assert_eq!(verdict.decisions()[0].decision.reserved(), 0);
    }
    // User x spends its own quota.
    let x = Identity::user("x");
    assert!(
        limiter
            .check(&x, &Rules::one("user"), 1)
            .await
            .unwrap()
            .allowed()
    );
    // Its next check spans two slots. The global slot is charged first, and
    // now reaches half its tolerance, so it reserves 3 more units; then x's
    // own slot denies, and everything the global slot took comes back.
    let verdict = limiter
        .check(&x, &Rules::named(["user", "global"]), 1)
        .await
        .unwrap();
    assert!(!verdict.allowed());
    let global = limiter
        .peek(&Identity::user("y"), &Rules::one("global"))
        .await
        .unwrap();
    assert_eq!(global.decisions()[0].decision.remaining(), 6);
    // And nothing is held locally: the next check goes to Redis and
    // reserves there.
    let verdict = limiter
        .check(&Identity::user("y"), &Rules::one("global"), 1)
        .await
        .unwrap();
    assert_eq!(verdict.source(), Source::Store);
    assert_eq!(verdict.decisions()[0].decision.reserved(), 3);
}
