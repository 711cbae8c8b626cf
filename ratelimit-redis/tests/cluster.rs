//! RedisStore on a real Redis Cluster (3 primaries): checks route by key,
//! checks spanning slots never over-admit, scripts come back after a flush,
//! and a killed primary's replica takes over.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use ratelimit_core::Rules;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ratelimit_core::{DistributedRateLimiter, Identity, LimiterConfig, Target, verdict::Source};
use ratelimit_redis::RedisStore;
use ratelimit_test_support::{RedisCluster, wait_until};

const HOUR: Duration = Duration::from_secs(3_600);

async fn limiter(cluster: &RedisCluster) -> DistributedRateLimiter {
    let store = RedisStore::cluster_builder(&cluster.urls())
        .timeout(Duration::from_millis(1_000))
        .connection_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let limiter = DistributedRateLimiter::new(
        LimiterConfig::new(Arc::new(store)).timeout(Duration::from_millis(1_000)),
    );
    limiter
        .add_rule("everyone", Target::Global, 50, HOUR)
        .await
        .unwrap();
    limiter
        .add_rule("each", Target::Each, 5, HOUR)
        .await
        .unwrap();
    limiter
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_admits_exactly_what_the_rules_allow() {
    let cluster = RedisCluster::start(3, 0);
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(limiter(&cluster).await);
    }
    let per_user: Arc<Vec<AtomicU64>> = Arc::new((0..20).map(|_| AtomicU64::new(0)).collect());
    let mut tasks = Vec::new();
    for t in 0..40 {
        let limiter = instances[t % 3].clone();
        let per_user = Arc::clone(&per_user);
        tasks.push(tokio::spawn(async move {
            for i in 0..5 {
                let user = (t + i) % 20;
                let id = user.to_string();
                let verdict = limiter
                    .check(&Identity::user(&id), &Rules::applicable(), 1)
                    .await
                    .unwrap();
                assert_eq!(verdict.source(), Source::Store);
                if verdict.allowed() {
                    per_user[user].fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let counts: Vec<u64> = per_user.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    assert_eq!(counts.iter().sum::<u64>(), 50, "{counts:?}");
    assert!(counts.iter().all(|&c| c <= 5), "{counts:?}");
}

#[tokio::test]
async fn a_check_denied_in_another_slot_charges_nothing() {
    let cluster = RedisCluster::start(3, 0);
    let limiter = limiter(&cluster).await;
    limiter.update_rule("everyone", 3, HOUR).await.unwrap();
    for _ in 0..3 {
        assert!(
            limiter
                .check(&Identity::user("a"), &Rules::applicable(), 1)
                .await
                .unwrap()
                .allowed()
        );
    }
    // The global rule (its own slot) denies user b; b's own counter, in b's
    // slot, was charged first and must have been given back.
    let denied = limiter
        .check(&Identity::user("b"), &Rules::applicable(), 1)
        .await
        .unwrap();
    assert!(!denied.allowed());
    assert_eq!(denied.binding().unwrap().rule.as_str(), "everyone");
    let each = denied
        .decisions()
        .iter()
        .find(|d| d.rule.as_str() == "each")
        .unwrap();
    assert!(each.decision.allowed());
    assert_eq!(each.decision.remaining(), 5);
    let peek = limiter
        .peek(&Identity::user("b"), &Rules::one("each"))
        .await
        .unwrap();
    assert_eq!(peek.decisions()[0].decision.remaining(), 5);
    // User a's counter shows exactly its three admitted requests.
    let peek = limiter
        .peek(&Identity::user("a"), &Rules::one("each"))
        .await
        .unwrap();
    assert_eq!(peek.decisions()[0].decision.remaining(), 2);
}

#[tokio::test]
async fn scripts_come_back_after_every_node_is_flushed() {
    let cluster = RedisCluster::start(3, 0);
    let limiter = limiter(&cluster).await;
    assert!(
        limiter
            .check(&Identity::user("1"), &Rules::applicable(), 1)
            .await
            .unwrap()
            .allowed()
    );
    for node in cluster.nodes() {
        assert_eq!(node.cli(&["SCRIPT", "FLUSH"]), "OK");
    }
    let verdict = limiter
        .check(&Identity::user("1"), &Rules::applicable(), 1)
        .await
        .unwrap();
    assert_eq!(verdict.source(), Source::Store);
    let each = verdict
        .decisions()
        .iter()
        .find(|d| d.rule.as_str() == "each")
        .unwrap();
    assert_eq!(each.decision.remaining(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_takes_over_from_a_killed_primary() {
    let mut cluster = RedisCluster::start(3, 1);
    let limiter = limiter(&cluster).await;
    for user in 0..10 {
        let id = user.to_string();
        assert!(
            limiter
                .check(&Identity::user(&id), &Rules::applicable(), 1)
                .await
                .unwrap()
                .allowed()
        );
    }

    cluster.node(0).kill();
    let killed_at = Instant::now();
    // Checks go on; while slots are being moved some are answered by the
    // failure policy, and none takes much longer than the timeout.
    let recovered_after = loop {
        let started = Instant::now();
        let mut all_stored = true;
        for user in 0..10 {
            let id = user.to_string();
            let verdict = limiter
                .check(&Identity::user(&id), &Rules::applicable(), 1)
                .await
                .unwrap();
            all_stored &= verdict.source() == Source::Store;
        }
        assert!(started.elapsed() < Duration::from_secs(15));
        if all_stored {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "no failover within 30 s:\n{}",
            cluster.describe(|i| i != 0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("every check answered by the cluster again {recovered_after:?} after the kill");
    cluster.wait_until_ok(|i| i != 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_shared_across_a_cluster() {
    use ratelimit_core::config::KeyPrefix;
    use ratelimit_redis::RedisRules;

    let cluster = RedisCluster::start(3, 0);
    let mut instances = Vec::new();
    for _ in 0..2 {
        let rules = Arc::new(
            RedisRules::connect_cluster(&cluster.urls(), &KeyPrefix::default())
                .await
                .unwrap(),
        );
        let store = RedisStore::cluster_builder(&cluster.urls())
            .build()
            .await
            .unwrap();
        let config = LimiterConfig::new(Arc::new(store)).rule_store(rules.clone());
        let limiter = DistributedRateLimiter::start(config).await.unwrap();
        instances.push(limiter);
    }
    let (a, b) = (&instances[0], &instances[1]);
    a.add_rule("shared", Target::Global, 2, HOUR).await.unwrap();
    let took = wait_until(Duration::from_secs(5), "propagation", || async {
        b.rules().get("shared").cloned().is_some()
    })
    .await;
    eprintln!("propagated across the cluster in {took:?}");
    assert!(a.is_allowed("user:1", "shared").await);
    assert!(b.is_allowed("user:2", "shared").await);
    assert!(!a.is_allowed("user:3", "shared").await);
    b.remove_rule("shared").await.unwrap();
    wait_until(Duration::from_secs(5), "removal", || async {
        a.rules().get("shared").cloned().is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_come_back_while_a_node_is_down() {
    let mut cluster = RedisCluster::start(3, 0);
    let store = RedisStore::cluster_builder(&cluster.urls())
        .timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    // No breaker: callers on the dead node must not close the road for the rest.
    let limiter = DistributedRateLimiter::new(
        LimiterConfig::new(Arc::new(store))
            .timeout(Duration::from_millis(300))
            .without_circuit_breaker(),
    );
    limiter
        .add_rule("each", Target::Each, 100, HOUR)
        .await
        .unwrap();
    for user in 0..12 {
        let id = user.to_string();
        assert!(limiter.is_allowed(&format!("user:{id}"), "each").await);
    }

    cluster.node(0).kill();
    for node in &cluster.nodes()[1..] {
        assert_eq!(node.cli(&["SCRIPT", "FLUSH"]), "OK");
    }
    // Callers whose slot is on a live node are served by the store (their
    // node gets the script again by EVAL, with no SCRIPT LOAD to every
    // node); callers on the dead node get the failure policy.
    let mut served = 0;
    for user in 0..12 {
        let id = user.to_string();
        let verdict = limiter
            .check(&Identity::user(&id), &Rules::one("each"), 1)
            .await
            .unwrap();
        if verdict.source() == Source::Store {
            assert_eq!(verdict.decisions()[0].decision.remaining(), 98);
            served += 1;
        } else {
            assert_eq!(verdict.source(), Source::FailOpen);
        }
    }
    assert!(served >= 4, "only {served} of 12 callers served");
}
