//! The fleet's life cycle on real Redis: an instance started while Redis is
//! down, a Redis that restarts empty under traffic, and seed rules against
//! a Redis that already holds rules. Counters run on a fake clock; the
//! tests poll, with a bound, only for real processes (a restarted server,
//! a reconnection, an announcement).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ratelimit_core::{
    DistributedRateLimiter, Identity, Quota, Rule, Rules, Target, clock::FakeClock,
    health::RuleSync, verdict::Source,
};
use ratelimit_redis::RedisFleet;
use ratelimit_test_support::{RedisServer, wait_until};

const MINUTE: Duration = Duration::from_secs(60);

fn seeds() -> Vec<Rule> {
    vec![
        Rule::new("default", Target::Each, Quota::per_second(10).unwrap()).unwrap(),
        Rule::new("login", Target::Each, Quota::per_minute(5).unwrap()).unwrap(),
        Rule::new("global", Target::Global, Quota::per_second(1_000).unwrap()).unwrap(),
    ]
}

async fn instance(
    server: &RedisServer,
    clock: &FakeClock,
    seeds: Vec<Rule>,
) -> DistributedRateLimiter {
    RedisFleet::new(&server.url())
        .timeout(Duration::from_millis(200))
        .poll_every(Duration::from_secs(30))
        .clock(clock.clone())
        .rules(seeds)
        .start()
        .await
        .unwrap()
}

async fn admitted(
    instances: &[&DistributedRateLimiter],
    caller: &str,
    rule: &str,
    n: usize,
) -> usize {
    let mut count = 0;
    for i in 0..n {
        count += usize::from(
            instances[i % instances.len()]
                .is_allowed(caller, rule)
                .await,
        );
    }
    count
}

/// Waits until checks reach Redis again (the circuit breaker closed), using
/// a caller no assertion counts.
async fn until_checks_reach_redis(limiter: &DistributedRateLimiter) {
    let choice = Rules::route(["default"]);
    wait_until(Duration::from_secs(5), "checks reach Redis", || async {
        limiter
            .check(&Identity::user("probe"), &choice, 1)
            .await
            .is_ok_and(|verdict| verdict.source() == Source::Store)
    })
    .await;
}

fn limits_in_redis(server: &RedisServer) -> String {
    server.cli(&["HGETALL", "rl:{rules}:set"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_while_redis_is_down_picks_it_up_without_a_restart() {
    let mut server = RedisServer::start();
    server.kill();
    let clock = FakeClock::at_micros(1_700_000_000_000_000);
    let limiter = instance(&server, &clock, seeds()).await;

    // Served by the failure policy (fail open), the seeds in force.
    assert_eq!(limiter.health().await.rules, RuleSync::Pending);
    assert_eq!(default_limit(&limiter), Some(10));
    let verdict = limiter
        .check(&Identity::user("a"), &Rules::one("default"), 1)
        .await
        .unwrap();
    assert!(verdict.allowed());
    assert_eq!(verdict.source(), Source::FailOpen);
    let error = limiter.health().await.store.unwrap_err().to_string();
    assert!(
        error.contains(&format!("127.0.0.1:{}", server.port())) || error.contains("within"),
        "{error}"
    );

    server.restart();
    let took = wait_until(
        Duration::from_secs(5),
        "the fleet's rules loaded",
        || async { limiter.health().await.rules == RuleSync::Synced },
    )
    .await;
    eprintln!("rules loaded {took:?} after Redis answered");
    until_checks_reach_redis(&limiter).await;
    // The seeds filled the empty Redis, and checks are exact again.
    assert!(limits_in_redis(&server).contains("1 5 60000000 - - 0 - *"));
    assert_eq!(admitted(&[&limiter], "user:b", "login", 9).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_under_traffic_gets_the_fleets_rules_back() {
    let mut server = RedisServer::start();
    let clock = FakeClock::at_micros(1_700_000_000_000_000);
    let a = instance(&server, &clock, seeds()).await;
    let b = instance(&server, &clock, seeds()).await;
    // The fleet agrees on a change the seeds do not have.
    a.update_rule("login", 3, MINUTE).await.unwrap();
    wait_until(Duration::from_secs(5), "the change on b", || async {
        b.rules().get("login").cloned().unwrap().quota().limit() == 3
    })
    .await;

    // Route checks on both instances, all through the restart.
    let stop = Arc::new(AtomicBool::new(false));
    let (errors, checks) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut traffic = Vec::new();
    for limiter in [a.clone(), b.clone()] {
        let (stop, errors, checks) = (stop.clone(), errors.clone(), checks.clone());
        traffic.push(tokio::spawn(async move {
            let choice = Rules::route(["default", "login"]);
            for i in 0..100_000_u32 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let caller = format!("{}", i % 50);
                if limiter
                    .check(&Identity::user(&caller), &choice, 1)
                    .await
                    .is_err()
                {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                checks.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        }));
    }
    let made = || checks.load(Ordering::Relaxed);
    wait_until(Duration::from_secs(5), "traffic", || async { made() >= 50 }).await;
    server.restart();
    let answering = Instant::now();
    let at_restart = made();
    let back = wait_until(
        Duration::from_secs(5),
        "the agreed rules back in Redis",
        || async { limits_in_redis(&server).contains("3 60000000") },
    )
    .await;
    // Traffic goes on against the restored rules before it stops.
    let restored_at = made();
    wait_until(Duration::from_secs(5), "traffic after", || async {
        made() >= restored_at + 50
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in traffic {
        task.await.unwrap();
    }
    eprintln!(
        "agreed rules back {back:?} after Redis answered ({:?} in all); {} checks, {} errors",
        answering.elapsed(),
        checks.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    );
    assert!(back < Duration::from_secs(1), "{back:?}");
    assert_eq!(errors.load(Ordering::Relaxed), 0, "a route check failed");
    assert!(restored_at > at_restart, "checks ran through the restart");

    // An instance started now sees the fleet's rules, not its seeds.
    let c = instance(&server, &clock, seeds()).await;
    assert_eq!(c.rules().get("login").cloned().unwrap().quota().limit(), 3);
    assert_eq!(c.health().await.rules, RuleSync::Synced);
    // And limits are exact again, across the fleet.
    for limiter in [&a, &b, &c] {
        until_checks_reach_redis(limiter).await;
    }
    assert_eq!(admitted(&[&a, &b, &c], "user:fresh", "login", 9).await, 3);
}

/// Seeds against a Redis that already holds rules, whatever the versions:
/// the Redis's rules win, and nothing is added to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_rules_never_shadow_or_add_to_the_fleets_rules() {
    let clock = FakeClock::at_micros(1_700_000_000_000_000);
    // The seed set has 3 rules (version 3 locally): versions below, at and
    // above it, with and without an epoch.
    for (version, epoch) in [
        (1, None),
        (2, Some(7)),
        (3, None),
        (3, Some(9)),
        (4, None),
        (40, Some(1)),
    ] {
        let server = RedisServer::start();
        server.cli(&[
            "HSET",
            "rl:{rules}:set",
            "default",
            "1 99 1000000 - - 0 - *",
        ]);
        server.cli(&["SET", "rl:{rules}:version", &version.to_string()]);
        if let Some(epoch) = epoch {
            server.cli(&["SET", "rl:{rules}:epoch", &epoch.to_string()]);
        }
        let limiter = instance(&server, &clock, seeds()).await;
        let case = format!("version {version}, epoch {epoch:?}");
        assert_eq!(limiter.health().await.rules, RuleSync::Synced, "{case}");
        assert_eq!(limiter.rules().len(), 1, "{case}");
        assert_eq!(default_limit(&limiter), Some(99), "{case}");
        assert_eq!(limiter.rules().version(), version, "{case}");
        let stored = limits_in_redis(&server);
        assert!(!stored.contains("login"), "{case}: {stored}");
    }
}

/// The limit of the rule `default` in force on `limiter`.
fn default_limit(limiter: &DistributedRateLimiter) -> Option<u32> {
    limiter
        .rules()
        .get("default")
        .map(|rule| rule.quota().limit())
}
