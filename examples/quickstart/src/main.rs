//! The quick-start demo: rules for every caller, one VIP and everyone
//! together, checked on the in-memory store, changed while traffic flows.
//!
//! Run with `cargo run -p example-quickstart`. Time is simulated with a
//! `FakeClock`, so the run is instant and prints the same figures every time.
#![allow(clippy::print_stdout)]

use ratelimit_core::Rules;
use std::sync::Arc;
use std::time::Duration;

use ratelimit_core::{
    DistributedRateLimiter, Error, Identity, LimiterConfig, MemoryStore, RateLimiter, Target,
    clock::FakeClock, verdict::Source,
};

const CALLERS: [&str; 4] = ["user:alice", "user:bob", "user:42", "service:billing"];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let clock = FakeClock::at_micros(1_700_000_000_000_000);
    let store = MemoryStore::with_clock(clock.clone());
    let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(store)));

    let second = Duration::from_secs(1);
    limiter.add_rule("default", Target::Each, 5, second).await?;
    limiter
        .add_rule("global", Target::Global, 30, second)
        .await?;
    limiter
        .add_rule("vip", "user:42".parse()?, 20, second)
        .await?;

    println!("Rules: default = 5/s for each caller, vip = 20/s for user:42 (replaces default),");
    println!("       global = 30/s for everyone together.\n");

    println!("Phase 1: each caller sends 25 requests in one second (one every 40 ms).");
    traffic(&limiter, &clock).await?;

    limiter.update_rule("default", 10, second).await?;
    println!("\nPhase 2: `default` raised to 10/s at run time; same traffic.");
    traffic(&limiter, &clock).await?;
    println!("  (`global` now binds: 30/s shared, and service:billing asks last in each round.)");

    limiter.remove_rule("vip").await?;
    println!("\nPhase 3: `vip` removed; user:42 falls back to `default`.");
    traffic(&limiter, &clock).await?;

    println!("\nThe simple API: RateLimiter::new(3, 1_000, store).allow(key)");
    let simple = RateLimiter::new(3, 1_000, Arc::new(MemoryStore::with_clock(clock.clone())))?;
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(simple.allow("10.0.0.7").await);
    }
    println!("  five requests from 10.0.0.7: {answers:?}");
    Ok(())
}

/// One simulated second: every caller sends 25 evenly spaced requests.
async fn traffic(limiter: &DistributedRateLimiter, clock: &FakeClock) -> Result<(), Error> {
    let mut admitted = [0u32; CALLERS.len()];
    for _ in 0..25 {
        for (count, id) in admitted.iter_mut().zip(CALLERS) {
            let verdict = limiter
                .check(&Identity::parse(id)?, &Rules::applicable(), 1)
                .await?;
            debug_assert_eq!(verdict.source(), Source::Store);
            if verdict.allowed() {
                *count += 1;
            }
        }
        clock.advance(Duration::from_millis(40));
    }
    for (count, id) in admitted.iter().zip(CALLERS) {
        println!("  {id:<16} admitted {count:>2} of 25");
    }
    Ok(())
}
