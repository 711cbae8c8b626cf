//! Several limiter instances sharing one store (as app servers share Redis),
//! with many concurrent tasks: the fleet admits exactly what the rules allow.
//! The store's clock is fake and frozen, so the expected counts are exact.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ratelimit_core::Rules;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ratelimit_core::{
    DistributedRateLimiter, Identity, LimiterConfig, MemoryStore, RateLimiter, Store, Target,
    clock::FakeClock,
};

const HOUR: Duration = Duration::from_secs(3_600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_a_store_admit_exactly_the_limit() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::with_clock(FakeClock::at_micros(1 << 40)));
    let mut instances = Vec::new();
    for _ in 0..3 {
        let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::clone(&store)));
        limiter
            .add_rule("per-user", Target::Each, 50, HOUR)
            .await
            .unwrap();
        limiter
            .add_rule("everyone", Target::Global, 120, HOUR)
            .await
            .unwrap();
        instances.push(limiter);
    }

    let users = ["user:1", "user:2", "user:3", "service:1"];
    let per_caller: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let mut tasks = Vec::new();
    for t in 0..24 {
        let limiter = instances[t % instances.len()].clone();
        let per_caller = Arc::clone(&per_caller);
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                let which = (t + i) % users.len();
                let caller = Identity::parse(users[which]).unwrap();
                if limiter
                    .check(&caller, &Rules::applicable(), 1)
                    .await
                    .unwrap()
                    .allowed()
                {
                    per_caller[which].fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let counts: Vec<u64> = per_caller
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    // 960 attempts, 240 per caller: the global rule caps the fleet at 120,
    // and no caller exceeds its own 50.
    assert_eq!(counts.iter().sum::<u64>(), 120, "{counts:?}");
    assert!(counts.iter().all(|&c| c <= 50), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_limiters_on_one_store_share_each_keys_budget() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::with_clock(FakeClock::at_micros(1 << 40)));
    let a = RateLimiter::new(100, 60_000, Arc::clone(&store)).unwrap();
    let b = RateLimiter::new(100, 60_000, Arc::clone(&store)).unwrap();
    let admitted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..16 {
        let limiter = if t % 2 == 0 { a.clone() } else { b.clone() };
        let admitted = Arc::clone(&admitted);
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                if limiter.allow("203.0.113.7").await {
                    admitted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(admitted.load(Ordering::Relaxed), 100);
}
