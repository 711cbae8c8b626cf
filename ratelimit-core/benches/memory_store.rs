//! The MemoryStore check against `governor`'s keyed limiter, same workloads,
//! same run. Both use their default real clocks.
//!
//! `cargo bench -p ratelimit-core --bench memory_store`
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::semicolon_if_nothing_returned,
    clippy::cast_possible_truncation
)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use futures::FutureExt;
use ratelimit_core::store::CheckItem;
use ratelimit_core::{MemoryStore, Quota, Store};

type Governor = governor::DefaultKeyedRateLimiter<Vec<u8>>;

/// A quota that never runs out during a benchmark: 1 request per µs with the
/// largest burst governor accepts.
fn generous() -> (Quota, governor::Quota) {
    let ours = Quota::new(1_000_000, Duration::from_secs(1))
        .unwrap()
        .with_burst(u32::MAX)
        .unwrap();
    let theirs = governor::Quota::with_period(Duration::from_micros(1))
        .unwrap()
        .allow_burst(NonZeroU32::MAX);
    (ours, theirs)
}

/// One request per hour: after the first, every check is a denial.
fn stingy() -> (Quota, governor::Quota) {
    let ours = Quota::new(1, Duration::from_secs(3_600)).unwrap();
    let theirs = governor::Quota::per_hour(NonZeroU32::MIN);
    (ours, theirs)
}

fn keys(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("user-{i:08}").into_bytes())
        .collect()
}

fn store_for(keys: usize) -> MemoryStore {
    MemoryStore::builder().max_keys(keys.max(1) * 2).build()
}

fn one_key(group: &mut BenchmarkGroup<'_, WallTime>, quotas: (Quota, governor::Quota)) {
    let (ours, theirs) = quotas;
    let key = b"user-00000001".to_vec();
    let store = store_for(1);
    let item = CheckItem::new(&key, ours);
    group.bench_function("ratelimit", |b| {
        b.iter(|| black_box(store.check_now(black_box(&[item])).unwrap().allowed))
    });
    let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
    group.bench_function("ratelimit (dyn Store)", |b| {
        b.iter(|| {
            let outcome = dyn_store.check(black_box(&[item])).now_or_never();
            black_box(outcome.unwrap().unwrap().allowed)
        })
    });
    let limiter = Governor::keyed(theirs);
    group.bench_function("governor", |b| {
        b.iter(|| black_box(limiter.check_key(black_box(&key)).is_ok()))
    });
}

fn hot_key_allowed(c: &mut Criterion) {
    let mut group = c.benchmark_group("one hot key, allowed");
    one_key(&mut group, generous());
    group.finish();
}

fn hot_key_denied(c: &mut Criterion) {
    let mut group = c.benchmark_group("one hot key, denied");
    one_key(&mut group, stingy());
    group.finish();
}

/// One request per 10 s with a burst of 100,000: each visit pushes a key's
/// TAT 10 s ahead, so every key stays live (never swept) and is admitted on
/// each of its visits, and both limiters measure lookups of existing keys.
fn long_lived() -> (Quota, governor::Quota) {
    let ours = Quota::new(1, Duration::from_secs(10))
        .unwrap()
        .with_burst(100_000)
        .unwrap();
    let theirs = governor::Quota::with_period(Duration::from_secs(10))
        .unwrap()
        .allow_burst(NonZeroU32::new(100_000).unwrap());
    (ours, theirs)
}

/// 10 per second: a key rests within 100 ms, long before the next visit, so
/// the in-memory store keeps reclaiming keys and re-inserting them (the
/// amortized sweep at work); governor keeps every key until
/// `retain_recent()` is called by hand.
fn short_lived() -> (Quota, governor::Quota) {
    (
        Quota::per_second(10).unwrap(),
        governor::Quota::per_second(NonZeroU32::new(10).unwrap()),
    )
}

fn million_keys(c: &mut Criterion) {
    const N: usize = 1_000_000;
    let keys = keys(N);
    for (name, (ours, theirs)) in [
        ("1,000,000 live keys", long_lived()),
        (
            "1,000,000 keys, each expiring between visits",
            short_lived(),
        ),
    ] {
        let mut group = c.benchmark_group(name);
        let store = store_for(N);
        // Fill first, so both start with every key present.
        for key in &keys {
            store.check_now(&[CheckItem::new(key, ours)]).unwrap();
        }
        let mut i = 0;
        group.bench_function("ratelimit", |b| {
            b.iter(|| {
                i = (i + 1) % N;
                black_box(
                    store
                        .check_now(&[CheckItem::new(&keys[i], ours)])
                        .unwrap()
                        .allowed,
                )
            })
        });
        drop(store);
        let limiter = Governor::keyed(theirs);
        for key in &keys {
            let _ = limiter.check_key(key);
        }
        let mut i = 0;
        group.bench_function("governor", |b| {
            b.iter(|| {
                i = (i + 1) % N;
                black_box(limiter.check_key(&keys[i]).is_ok())
            })
        });
        group.finish();
    }
}

/// Two threads, each doing `iters / 2` checks; reports wall time per check.
fn two_threads(c: &mut Criterion) {
    fn run(iters: u64, check: impl Fn(usize, u64) + Sync) -> Duration {
        let started = Instant::now();
        thread::scope(|s| {
            for t in 0..2 {
                let check = &check;
                s.spawn(move || {
                    for i in 0..iters / 2 {
                        check(t, i);
                    }
                });
            }
        });
        started.elapsed()
    }

    let keys = Arc::new(keys(10_000));
    for (name, shared) in [
        ("2 threads, one shared key", true),
        ("2 threads, 10,000 keys", false),
    ] {
        let mut group = c.benchmark_group(name);
        let (ours, theirs) = if shared { generous() } else { long_lived() };
        let pick = |t: usize, i: u64| -> usize {
            if shared {
                0
            } else {
                (t * 5_000 + (i as usize % 5_000)) % 10_000
            }
        };
        let store = store_for(10_000);
        group.bench_function("ratelimit", |b| {
            b.iter_custom(|iters| {
                run(iters, |t, i| {
                    let item = CheckItem::new(&keys[pick(t, i)], ours);
                    black_box(store.check_now(&[item]).unwrap().allowed);
                })
            })
        });
        let limiter = Governor::keyed(theirs);
        group.bench_function("governor", |b| {
            b.iter_custom(|iters| {
                run(iters, |t, i| {
                    black_box(limiter.check_key(&keys[pick(t, i)]).is_ok());
                })
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = hot_key_allowed, hot_key_denied, million_keys, two_threads
}
criterion_main!(benches);
