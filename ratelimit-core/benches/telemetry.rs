//! What the metrics cost on the hot path: the same in-place check (3 rules,
//! in-memory store) with no recorder installed, then with a Prometheus
//! recorder (`metrics-exporter-prometheus`, as the demos use) — measured
//! in one run, in that order (a recorder cannot be uninstalled).
//!
//! `cargo bench -p ratelimit-core --bench telemetry`
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::semicolon_if_nothing_returned
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use metrics_exporter_prometheus::PrometheusBuilder;
use ratelimit_core::{
    DistributedRateLimiter, Identity, LimiterConfig, MemoryStore, Quota, Rule, Rules, Target,
};

fn limiter() -> DistributedRateLimiter {
    let quota = || Quota::new(1_000_000_000, Duration::from_secs(3_600)).unwrap();
    DistributedRateLimiter::new(
        LimiterConfig::new(Arc::new(MemoryStore::new()))
            .rule(Rule::new("default", Target::Each, quota()).unwrap())
            .rule(Rule::new("login", Target::Each, quota()).unwrap())
            .rule(Rule::new("global", Target::Global, quota()).unwrap()),
    )
}

fn check(limiter: &DistributedRateLimiter, rules: &Rules) -> bool {
    limiter
        .try_check(&Identity::user("42"), rules, 1)
        .unwrap()
        .unwrap()
        .allowed()
}

fn telemetry(c: &mut Criterion) {
    let mut group = c.benchmark_group("in-place check, 3 rules");
    let rules = Rules::route(["default", "login"]);
    let without = limiter();
    group.bench_function("no recorder", |b| {
        b.iter(|| black_box(check(&without, &rules)))
    });

    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    let with = limiter();
    group.bench_function("prometheus recorder", |b| {
        b.iter(|| black_box(check(&with, &rules)))
    });
    group.finish();
    // The counters moved (the measurement is of real work).
    assert!(handle.render().contains("ratelimit_checks_total"));
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = telemetry
}
criterion_main!(benches);
