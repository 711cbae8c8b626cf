//! The deny cache in front of a real Redis: instances sharing one Redis
//! still admit exactly the limit between them, a flood on a denied key
//! stops reaching Redis, and a reset through one instance empties the
//! others' caches through the rules announcement.
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
    DistributedRateLimiter, Identity, LimiterConfig, Quota, Rule, Target, config::DenyCache,
    config::KeyPrefix, verdict::Source,
};
use ratelimit_redis::{RedisRules, RedisStore};
use ratelimit_test_support::{RedisServer, wait_until};

struct Instance {
    limiter: DistributedRateLimiter,
}

/// An instance with shared rules and a deny cache; the rule `api` allows
/// `limit` requests per hour per caller (nothing rests during a test).
async fn instance(server: &RedisServer, limit: u32) -> Instance {
    let rules = RedisRules::connect(&server.url(), &KeyPrefix::default())
        .await
        .unwrap()
        .poll_every(Duration::from_secs(30));
    let rules = Arc::new(rules);
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let quota = Quota::new(limit, Duration::from_secs(3_600)).unwrap();
    let config = LimiterConfig::new(Arc::new(store))
        .timeout(Duration::from_millis(500))
        .rule_store(rules.clone())
        .rule(Rule::new("api", Target::Each, quota).unwrap())
        .deny_cache(DenyCache::new(10_000));
    let limiter = DistributedRateLimiter::start(config).await.unwrap();
    Instance { limiter }
}

/// Whether `limiter` admits one request of `caller` under `api`.
async fn admits(limiter: &DistributedRateLimiter, caller: &Identity<'_>) -> bool {
    limiter
        .check(caller, &Rules::one("api"), 1)
        .await
        .unwrap()
        .allowed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cached_instances_admit_exactly_the_limit() {
    let server = RedisServer::start();
    let (a, b) = (instance(&server, 5).await, instance(&server, 5).await);
    let mut tasks = Vec::new();
    for t in 0..64 {
        let limiter = if t % 2 == 0 {
            a.limiter.clone()
        } else {
            b.limiter.clone()
        };
        tasks.push(tokio::spawn(async move {
            let (mut allowed, mut cached) = (0, 0);
            for i in 0..50 {
                let id = ((t + i) % 10).to_string();
                let verdict = limiter
                    .check(&Identity::user(&id), &Rules::one("api"), 1)
                    .await
                    .unwrap();
                allowed += usize::from(verdict.allowed());
                cached += usize::from(verdict.source() == Source::DenyCache);
            }
            (allowed, cached)
        }));
    }
    let (mut allowed, mut cached) = (0, 0);
    for task in tasks {
        let (a, c) = task.await.unwrap();
        allowed += a;
        cached += c;
    }
    assert_eq!(allowed, 10 * 5, "10 callers × 5 each, whichever instance");
    // 3,200 checks, 50 admitted: nearly all the denials come from the caches.
    assert!(cached > 2_500, "{cached} of 3,150 denials cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_on_a_denied_key_stops_reaching_redis() {
    let server = RedisServer::start();
    let a = instance(&server, 1).await;
    let caller = Identity::user("flood");
    assert!(admits(&a.limiter, &caller).await);
    let before = server.script_calls();
    for _ in 0..1_000 {
        assert!(!admits(&a.limiter, &caller).await);
    }
    let calls = server.script_calls() - before;
    assert_eq!(calls, 1, "only the first denial asks Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_through_one_instance_empties_every_cache() {
    let server = RedisServer::start();
    let (a, b) = (instance(&server, 1).await, instance(&server, 1).await);
    let caller = Identity::user("7");
    assert!(admits(&a.limiter, &caller).await);
    for instance in [&a, &b] {
        let first = instance
            .limiter
            .check(&caller, &Rules::one("api"), 1)
            .await
            .unwrap();
        assert_eq!((first.allowed(), first.source()), (false, Source::Store));
        let second = instance
            .limiter
            .check(&caller, &Rules::one("api"), 1)
            .await
            .unwrap();
        assert_eq!(second.source(), Source::DenyCache);
    }

    b.limiter.reset(&caller, &Rules::one("api")).await.unwrap();
    // The resetting instance knows at once; the other after the
    // announcement (a new rules version) reaches it.
    assert!(admits(&b.limiter, &caller).await);
    let took = wait_until(Duration::from_secs(2), "the reset announcement", || async {
        a.limiter
            .check(&caller, &Rules::one("api"), 1)
            .await
            .unwrap()
            .source()
            != Source::DenyCache
    })
    .await;
    println!("cached denial dropped on the other instance after {took:?}");
    // B took the one request the reset freed, so Redis itself denies A now.
    let verdict = a
        .limiter
        .check(&caller, &Rules::one("api"), 1)
        .await
        .unwrap();
    assert!(!verdict.allowed());
}
