//! While Redis is down, a fleet whose rules fall back to local limiting
//! keeps the rule: each instance enforces its share of the quota, divided by
//! the instances seen alive through Redis before it went down.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ratelimit_core::config::FailurePolicy;
use ratelimit_core::{DistributedRateLimiter, Identity, Quota, Rule, Rules, Target};
use ratelimit_redis::RedisFleet;
use ratelimit_test_support::{RedisServer, wait_until};

/// 30 a minute per caller.
fn rule() -> Rule {
    Rule::new("api", Target::Each, Quota::per_minute(30).unwrap())
        .unwrap()
        .with_failure_policy(FailurePolicy::LocalFallback)
}

async fn fleet(server: &RedisServer, share: bool) -> Vec<DistributedRateLimiter> {
    let mut fleet = Vec::new();
    for _ in 0..3 {
        let limiter = RedisFleet::new(&server.url())
            .timeout(Duration::from_millis(200))
            .rule(rule())
            .fleet_share(share)
            .start()
            .await
            .unwrap();
        fleet.push(limiter);
    }
    fleet
}

/// Checks of one caller spread evenly over `fleet`; how many are admitted.
async fn spread(fleet: &[DistributedRateLimiter], user: &str, checks: usize) -> usize {
    let api = Rules::one("api");
    let who = Identity::user(user);
    let mut admitted = 0;
    for i in 0..checks {
        let verdict = fleet[i % fleet.len()].check(&who, &api, 1).await.unwrap();
        admitted += usize::from(verdict.allowed());
    }
    admitted
}

async fn outage_admits(share: bool) -> usize {
    let mut server = RedisServer::start();
    let fleet = fleet(&server, share).await;
    if share {
        // Every instance has seen the whole fleet (heartbeats each second).
        let took = wait_until(
            Duration::from_secs(10),
            "three instances seen alive",
            || async {
                let mut all = true;
                for limiter in &fleet {
                    all &= limiter.health().await.instances == Some(3);
                }
                all
            },
        )
        .await;
        eprintln!("every instance counted three after {took:?}");
    }
    // Redis up: the rule holds across the fleet.
    assert_eq!(spread(&fleet, "before", 90).await, 30);
    server.kill();
    spread(&fleet, "during", 90).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_keeps_the_fleet_within_the_rule() {
    let admitted = outage_admits(true).await;
    eprintln!("fleet share: {admitted} of 90 admitted during the outage (rule: 30)");
    // Each instance's share is 10 (a burst of 30 over 3), plus what the
    // rate refills while the checks run (one every 6 s per instance).
    assert!((30..=33).contains(&admitted), "{admitted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_share_each_instance_enforces_the_whole_rule() {
    let admitted = outage_admits(false).await;
    eprintln!("whole quota per instance: {admitted} of 90 admitted during the outage (rule: 30)");
    assert!(admitted >= 88, "{admitted}");
}
