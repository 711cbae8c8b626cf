//! What a check allocates on the client: the script command is built in
//! buffers sized once, and a whole check through the limiter on a real
//! Redis (our code and redis-rs together) stays within a fixed count.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_precision_loss
)]

use std::sync::Arc;
use std::time::Duration;

use ratelimit_core::store::CheckItem;
use ratelimit_core::{DistributedRateLimiter, LimiterConfig, Quota, Target};
use ratelimit_redis::RedisStore;
use ratelimit_redis::script::{self, Form};
use ratelimit_test_support::RedisServer;

// dhat counts every allocation in the process.
#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

fn allocations() -> u64 {
    dhat::HeapStats::get().total_blocks
}

/// One profiler per process, so one test measures both.
#[test]
fn client_allocations_per_check() {
    let _profiler = dhat::Profiler::builder().testing().build();
    a_script_command_is_built_in_two_allocations();
    a_check_through_the_limiter_on_redis_allocates_a_bounded_amount();
}

fn a_script_command_is_built_in_two_allocations() {
    let quota = Quota::per_second(10).unwrap();
    let keys: Vec<Vec<u8>> = (0..3)
        .map(|i| format!("rl:{{user:{i}}}:api").into_bytes())
        .collect();
    let items: Vec<CheckItem<'_>> = keys.iter().map(|k| CheckItem::new(k, quota)).collect();
    let _ = script::gcra_script();
    for n in [1, 3] {
        for (charge, now) in [(true, None), (false, None), (true, Some(1_000_000_000))] {
            let before = allocations();
            let command = script::check_command(&items[..n], charge, now, Form::Sha);
            let made = allocations() - before;
            drop(command);
            assert_eq!(made, 2, "{n} items: {made} allocations");
        }
    }
}

fn a_check_through_the_limiter_on_redis_allocates_a_bounded_amount() {
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let limiter = runtime.block_on(async {
        let store = RedisStore::connect(&server.url()).await.unwrap();
        let limiter = DistributedRateLimiter::new(
            LimiterConfig::new(Arc::new(store)).timeout(Duration::from_secs(1)),
        );
        limiter
            .add_rule("api", Target::Each, 1_000_000, Duration::from_secs(3_600))
            .await
            .unwrap();
        limiter
    });
    let checks = 2_000;
    let per_check = runtime.block_on(async {
        // Warm up: the script is loaded, buffers have grown.
        for _ in 0..100 {
            assert!(limiter.is_allowed("user:7", "api").await);
        }
        let before = allocations();
        for _ in 0..checks {
            assert!(limiter.is_allowed("user:7", "api").await);
        }
        (allocations() - before) as f64 / f64::from(checks)
    });
    eprintln!("{per_check:.1} allocations per check (limiter, store, redis-rs, runtime)");
    // 11 measured (2026-11-24): keys buffer, boxed store future, the
    // async-trait box, the command's two buffers, and redis-rs's packing,
    // channel and reply.
    assert!(per_check <= 12.0, "{per_check} allocations per check");
}
