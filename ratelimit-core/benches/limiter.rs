//! The front doors on the in-memory store: the whole check path (rule
//! lookup, key building, the store call through `dyn Store`, the verdict).
//!
//! `cargo bench -p ratelimit-core --bench limiter`
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::semicolon_if_nothing_returned
)]

use std::hint::black_box;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::FutureExt;
use ratelimit_core::identity::Facet;
use ratelimit_core::{
    DistributedRateLimiter, Identity, LimiterConfig, MemoryStore, RateLimiter, Rules, Target,
};

fn front_doors(c: &mut Criterion) {
    // The in-memory store answers on the first poll, so no timer is armed and
    // `now_or_never` drives the whole check without a runtime.
    let hour = Duration::from_secs(3_600);
    let mut group = c.benchmark_group("front doors, in-memory, allowed");

    let simple = RateLimiter::new(1_000_000_000, 3_600_000, Arc::new(MemoryStore::new())).unwrap();
    group.bench_function("RateLimiter::allow", |b| {
        b.iter(|| black_box(simple.allow(black_box("10.0.0.1")).now_or_never().unwrap()))
    });

    let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())));
    let setup = async {
        limiter
            .add_rule("default", Target::Each, 1_000_000_000, hour)
            .await
            .unwrap();
        limiter
            .add_rule("global", Target::Global, 1_000_000_000, hour)
            .await
            .unwrap();
        limiter
            .add_rule("login", Target::Each, 1_000_000_000, hour)
            .await
            .unwrap();
        limiter
            .add_rule("per-ip", Target::Every(Facet::Ip), 1_000_000_000, hour)
            .await
            .unwrap();
    };
    setup.now_or_never().unwrap();
    let caller = Identity::user("42");
    let one = Rules::one("default");
    let three = Rules::named(["default", "global", "login"]);
    group.bench_function("check, 1 rule", |b| {
        b.iter(|| {
            let v = limiter.check(&caller, &one, 1);
            black_box(v.now_or_never().unwrap().unwrap().allowed())
        })
    });
    group.bench_function("check, 3 rules", |b| {
        b.iter(|| {
            let v = limiter.check(&caller, &three, 1);
            black_box(v.now_or_never().unwrap().unwrap().allowed())
        })
    });
    group.bench_function("try_check, 1 rule", |b| {
        b.iter(|| {
            let v = limiter.try_check(&caller, &one, 1);
            black_box(v.unwrap().unwrap().allowed())
        })
    });
    group.bench_function("try_check, 3 rules", |b| {
        b.iter(|| {
            let v = limiter.try_check(&caller, &three, 1);
            black_box(v.unwrap().unwrap().allowed())
        })
    });
    // What the HTTP adapters run: a route's rules (here `default`, with
    // `global`), from the plan the selection keeps.
    let route = Rules::route(["default"]);
    group.bench_function("try_check, route (2 rules)", |b| {
        b.iter(|| {
            let v = limiter.try_check(&caller, &route, 1);
            black_box(v.unwrap().unwrap().allowed())
        })
    });
    // A route that also counts the client address: two facets of one
    // identity in one check.
    let login = Rules::route(["per-ip", "default"]);
    let with_ip = Identity::user("42").with_ip("203.0.113.9".parse().unwrap());
    group.bench_function("try_check, route with an address rule (3 rules)", |b| {
        b.iter(|| {
            let v = limiter.try_check(&with_ip, &login, 1);
            black_box(v.unwrap().unwrap().allowed())
        })
    });
    group.finish();
}

/// Two threads, each a different caller, both checked against one rule:
/// what the threads share is the rule set, so this shows whatever a check
/// writes to shared memory (a reference count bumped per check makes both
/// cores fight over its cache line). Reports wall time per check.
fn two_threads(c: &mut Criterion) {
    let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())));
    limiter
        .add_rule(
            "default",
            Target::Each,
            1_000_000_000,
            Duration::from_secs(3_600),
        )
        .now_or_never()
        .unwrap()
        .unwrap();
    let mut group = c.benchmark_group("front doors, in-memory, allowed, 2 threads");
    let one = Rules::one("default");
    group.bench_function("try_check, 1 rule, a caller per thread", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            thread::scope(|s| {
                for user in ["1", "2"] {
                    let (limiter, one) = (&limiter, &one);
                    s.spawn(move || {
                        let caller = Identity::user(user);
                        for _ in 0..iters / 2 {
                            let v = limiter.try_check(&caller, one, 1);
                            black_box(v.unwrap().unwrap().allowed());
                        }
                    });
                }
            });
            started.elapsed()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = front_doors, two_threads
}
criterion_main!(benches);
