//! Rules shared through Redis: a change on one instance reaches the others,
//! survives instance restarts, concurrent changes converge, and an instance
//! that missed announcements catches up.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::sync::Arc;
use std::time::Duration;

use ratelimit_core::rule_store::RuleWrite;
use ratelimit_core::{
    DistributedRateLimiter, Error, LimiterConfig, Rule, RuleStore, Target, config::KeyPrefix,
};
use ratelimit_redis::{RedisRules, RedisStore};
use ratelimit_test_support::{RedisServer, wait_until};

const SEC: Duration = Duration::from_secs(1);

struct Instance {
    limiter: DistributedRateLimiter,
    rules: Arc<RedisRules>,
}

async fn instance(server: &RedisServer, seeds: &[Rule]) -> Instance {
    let rules = RedisRules::connect(&server.url(), &KeyPrefix::default())
        .await
        .unwrap()
        .poll_every(Duration::from_secs(30));
    let rules = Arc::new(rules);
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let mut config = LimiterConfig::new(Arc::new(store))
        .timeout(Duration::from_millis(500))
        .rule_store(rules.clone() as Arc<dyn RuleStore>);
    for rule in seeds {
        config = config.rule(rule.clone());
    }
    let limiter = DistributedRateLimiter::start(config).await.unwrap();
    Instance { limiter, rules }
}

/// Waits (bounded) until every instance satisfies `ok`; returns how long.
async fn until_all(
    instances: &[&Instance],
    ok: impl Fn(&DistributedRateLimiter) -> bool,
) -> Duration {
    wait_until(Duration::from_secs(5), "propagation", || async {
        instances.iter().all(|i| ok(&i.limiter))
    })
    .await
}

fn limit_of(limiter: &DistributedRateLimiter, id: &str) -> Option<u32> {
    limiter.rules().get(id).map(|rule| rule.quota().limit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_instance_reaches_every_instance_within_a_second() {
    let server = RedisServer::start();
    let (a, b, c) = (
        instance(&server, &[]).await,
        instance(&server, &[]).await,
        instance(&server, &[]).await,
    );
    let all = [&a, &b, &c];

    a.limiter
        .add_rule("api", Target::Each, 10, SEC)
        .await
        .unwrap();
    let added = until_all(&all, |l| limit_of(l, "api") == Some(10)).await;

    b.limiter.update_rule("api", 20, SEC).await.unwrap();
    let updated = until_all(&all, |l| limit_of(l, "api") == Some(20)).await;

    c.limiter.remove_rule("api").await.unwrap();
    let removed = until_all(&all, |l| l.rules().get("api").cloned().is_none()).await;

    eprintln!("propagation: add {added:?}, update {updated:?}, remove {removed:?}");
    for took in [added, updated, removed] {
        assert!(took < SEC, "{took:?}");
    }
    let versions: Vec<u64> = all.iter().map(|i| i.limiter.rules().version()).collect();
    assert_eq!(versions, [3, 3, 3]);

    // The rule's checks really follow the shared rule on every instance.
    a.limiter
        .add_rule("tight", Target::Global, 2, Duration::from_secs(60))
        .await
        .unwrap();
    until_all(&all, |l| l.rules().get("tight").cloned().is_some()).await;
    assert!(b.limiter.is_allowed("user:1", "tight").await);
    assert!(c.limiter.is_allowed("user:2", "tight").await);
    assert!(!a.limiter.is_allowed("user:3", "tight").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_survive_instance_restarts_and_seeds_do_not_overwrite() {
    let server = RedisServer::start();
    let seed = Rule::new(
        "default",
        Target::Each,
        ratelimit_core::Quota::per_second(10).unwrap(),
    )
    .unwrap();
    let first = instance(&server, std::slice::from_ref(&seed)).await;
    assert_eq!(limit_of(&first.limiter, "default"), Some(10));
    first.limiter.update_rule("default", 99, SEC).await.unwrap();
    first
        .limiter
        .add_rule("extra", Target::Global, 5, SEC)
        .await
        .unwrap();
    drop(first);

    // A new instance, with the same seed: it loads what the fleet changed.
    let second = instance(&server, &[seed]).await;
    assert_eq!(limit_of(&second.limiter, "default"), Some(99));
    assert_eq!(limit_of(&second.limiter, "extra"), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_converge_to_one_state() {
    let server = RedisServer::start();
    let (a, b, c) = (
        instance(&server, &[]).await,
        instance(&server, &[]).await,
        instance(&server, &[]).await,
    );
    a.limiter
        .add_rule("shared", Target::Each, 1, SEC)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (n, limiter) in [a.limiter.clone(), b.limiter.clone()]
        .into_iter()
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            for i in 0..30u32 {
                let limit = 1_000 * (n as u32 + 1) + i;
                limiter.update_rule("shared", limit, SEC).await.unwrap();
                let burst = Rule::new(
                    "other",
                    Target::Global,
                    ratelimit_core::Quota::per_second(limit).unwrap(),
                )
                .unwrap();
                limiter.insert_rule(burst).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let all = [&a, &b, &c];
    let rules = RedisRules::connect(&server.url(), &KeyPrefix::default())
        .await
        .unwrap();
    let stored = ratelimit_core::RuleStore::load(&rules).await.unwrap();
    until_all(&all, |l| l.rules().version() == stored.version).await;
    for instance in all {
        let mut ours: Vec<String> = instance
            .limiter
            .rules()
            .iter()
            .map(Rule::to_record)
            .collect();
        let mut theirs: Vec<String> = stored.rules.iter().map(Rule::to_record).collect();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs);
    }
    // 1 add + 2 × 30 updates + 2 × 30 puts.
    assert_eq!(stored.version, 121);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_modifications_lose_no_update() {
    // Two instances each raise a limit by one, 25 times, at the same time,
    // each by a compare-and-set on the rule it read (what the admin API's
    // PATCH does), so every increment that reports success is in the final
    // limit: none is overwritten by the other instance's read-modify-write.
    let server = RedisServer::start();
    let (a, b) = (instance(&server, &[]).await, instance(&server, &[]).await);
    a.limiter
        .add_rule("counter", Target::Each, 1, SEC)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for rules in [a.rules.clone(), b.rules.clone()] {
        tasks.push(tokio::spawn(async move {
            let mut applied = 0_u32;
            for attempt in 0..25 * 8 {
                if applied == 25 || attempt / 8 >= 25 {
                    break;
                }
                let snapshot = rules.load().await.unwrap();
                let expected = snapshot
                    .rules
                    .into_iter()
                    .find(|rule| rule.id().as_str() == "counter")
                    .unwrap();
                let quota = expected
                    .quota()
                    .with_rate(expected.quota().limit() + 1, SEC)
                    .unwrap();
                let new = expected.clone().with_quota(quota);
                match rules.write(RuleWrite::Replace { expected, new }).await {
                    Ok(_) => applied += 1,
                    Err(Error::RuleConflict(_)) => {}
                    Err(other) => panic!("{other}"),
                }
            }
            applied
        }));
    }
    let mut applied = 0;
    for task in tasks {
        applied += task.await.unwrap();
    }
    assert!(applied >= 25, "most increments apply: {applied}");
    let expected = 1 + applied;
    let took = until_all(&[&a, &b], |l| limit_of(l, "counter") == Some(expected)).await;
    eprintln!("{applied} of 50 increments applied; all in force after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_missed_announcements_catches_up() {
    let server = RedisServer::start();
    let (a, b) = (instance(&server, &[]).await, instance(&server, &[]).await);
    a.limiter.add_rule("r", Target::Each, 1, SEC).await.unwrap();
    until_all(&[&b], |l| l.rules().get("r").cloned().is_some()).await;

    // Drop every subscriber connection, then change the rules at once: the
    // announcement may go to nobody; the watcher's reconnect must catch up.
    server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    a.limiter.update_rule("r", 7, SEC).await.unwrap();
    let took = until_all(&[&b], |l| limit_of(l, "r") == Some(7)).await;
    eprintln!("caught up {took:?} after the disconnect");
}

#[tokio::test]
async fn shared_rule_errors_are_typed() {
    let server = RedisServer::start();
    let a = instance(&server, &[]).await;
    a.limiter.add_rule("r", Target::Each, 1, SEC).await.unwrap();
    assert_eq!(
        a.limiter
            .add_rule("r", Target::Each, 1, SEC)
            .await
            .unwrap_err(),
        Error::RuleExists("r".into())
    );
    assert_eq!(
        a.limiter.update_rule("nope", 1, SEC).await.unwrap_err(),
        Error::UnknownRule("nope".into())
    );
    assert_eq!(
        a.limiter.remove_rule("nope").await.unwrap_err(),
        Error::UnknownRule("nope".into())
    );
    // A garbage record in Redis is reported, not applied.
    server.cli(&["HSET", "rl:{rules}:set", "bad", "not a record"]);
    server.cli(&["INCR", "rl:{rules}:version"]);
    assert!(matches!(
        a.limiter.refresh_rules().await.unwrap_err(),
        Error::InvalidRecord { .. }
    ));
    assert_eq!(
        limit_of(&a.limiter, "r"),
        Some(1),
        "the rules in force stay"
    );
}
