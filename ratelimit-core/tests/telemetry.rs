//! The metrics a known sequence of checks leaves behind, read back from a
//! recorder: per-rule outcome counters, store errors by kind, the breaker's
//! transitions, rule changes and the gauges.
//!
//! One test function: the recorder is process-global, and its snapshots
//! drain what they read, so the phases run in order and each asserts on
//! what it added.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ratelimit_core::Rules;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use ratelimit_core::telemetry::{
    CHECK_DURATION, CHECKS, CIRCUIT_STATE, CIRCUIT_TRANSITIONS, MEMORY_KEYS, RULE_CHANGES, RULES,
    RULES_VERSION, STORE_DURATION, STORE_ERRORS,
};
use ratelimit_core::{
    DistributedRateLimiter, Identity, LimiterConfig, MemoryStore, Quota, Rule, Target,
    clock::FakeClock, config::CircuitBreakerConfig, config::FailurePolicy,
};
use ratelimit_test_support::stores::{FailingStore, HangingStore};

/// Every metric in a snapshot, as `name{label=value,...}` → value (counters
/// and gauges as numbers, histograms as their sample count).
fn read(snapshotter: &Snapshotter) -> BTreeMap<String, f64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            #[allow(clippy::cast_precision_loss)]
            let value = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(samples) => samples.len() as f64,
            };
            (name, value)
        })
        .filter(|(_, value)| *value != 0.0)
        .collect()
}

fn checks(rule: &str, outcome: &str) -> String {
    format!("{CHECKS}{{outcome={outcome},rule={rule}}}")
}

fn rule(id: &str, target: Target, limit: u32) -> Rule {
    Rule::new(id, target, Quota::per_second(limit).unwrap()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_known_sequence_of_checks_leaves_known_metrics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    // Phase 1: the in-memory store. Three rules apply to user 1; `api`
    // admits 2, the shadow rule 1, `everyone` plenty.
    let clock = FakeClock::new();
    let store = MemoryStore::builder()
        .clock(clock.clone())
        .metrics_label("phase1")
        .build();
    let limiter = DistributedRateLimiter::new(
        LimiterConfig::new(Arc::new(store))
            .rule(rule("api", Target::Each, 2))
            .rule(rule("watch", Target::Each, 1).with_shadow(true))
            .rule(rule("everyone", Target::Global, 100)),
    );
    let mut allowed = Vec::new();
    for _ in 0..3 {
        allowed.push(
            limiter
                .check(&Identity::user("1"), &Rules::applicable(), 1)
                .await
                .unwrap()
                .allowed(),
        );
    }
    assert_eq!(allowed, [true, true, false]);
    // A peek is not a check; another caller's in-place check is.
    limiter
        .peek(&Identity::user("1"), &Rules::one("api"))
        .await
        .unwrap();
    let verdict = limiter
        .try_check(&Identity::user("2"), &Rules::one("api"), 1)
        .unwrap()
        .unwrap();
    assert!(verdict.allowed());

    let metrics = read(&snapshotter);
    let expected: BTreeMap<String, f64> = [
        (checks("api", "allowed"), 3.0),
        (checks("api", "denied"), 1.0),
        (checks("watch", "allowed"), 1.0),
        (checks("watch", "shadow_denied"), 2.0),
        (checks("everyone", "allowed"), 3.0),
        // The limiter was built with 3 rules at version 3.
        (format!("{RULE_CHANGES}{{change=insert}}"), 1.0),
        (format!("{RULES}{{}}"), 3.0),
        (format!("{RULES_VERSION}{{}}"), 3.0),
        // Keys: user 1 × 3 rules' counters... `everyone` is one key for all.
        (format!("{MEMORY_KEYS}{{store=phase1}}"), 4.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(metrics, expected);

    // Phase 2: rule changes.
    limiter
        .update_rule("api", 5, Duration::from_secs(1))
        .await
        .unwrap();
    limiter.remove_rule("watch").await.unwrap();
    let metrics = read(&snapshotter);
    assert_eq!(metrics[&format!("{RULE_CHANGES}{{change=update}}")], 1.0);
    assert_eq!(metrics[&format!("{RULE_CHANGES}{{change=remove}}")], 1.0);
    assert_eq!(metrics[&format!("{RULES}{{}}")], 2.0);
    assert_eq!(metrics[&format!("{RULES_VERSION}{{}}")], 5.0);

    // Phase 3: a store that refuses every call. Fail open on `open`, fail
    // closed on `closed`; the breaker opens after 2 failures, so the third
    // check is answered without asking the store.
    let failing = DistributedRateLimiter::new(
        LimiterConfig::new(Arc::new(FailingStore))
            .circuit_breaker(CircuitBreakerConfig::new(2, Duration::from_secs(60)))
            .rule(rule("open", Target::Each, 10))
            .rule(rule("closed", Target::Each, 10).with_failure_policy(FailurePolicy::FailClosed)),
    );
    read(&snapshotter); // what building it reported
    for _ in 0..2 {
        assert!(
            failing
                .check(&Identity::user("1"), &Rules::one("open"), 1)
                .await
                .unwrap()
                .allowed()
        );
    }
    assert!(
        !failing
            .check(&Identity::user("1"), &Rules::one("closed"), 1)
            .await
            .unwrap()
            .allowed()
    );
    let metrics = read(&snapshotter);
    assert_eq!(metrics[&checks("open", "failed_open")], 2.0);
    assert_eq!(metrics[&checks("closed", "failed_closed")], 1.0);
    assert_eq!(metrics[&format!("{STORE_ERRORS}{{kind=store}}")], 2.0);
    assert_eq!(
        metrics[&format!("{STORE_ERRORS}{{kind=circuit_open}}")],
        1.0
    );
    assert_eq!(
        metrics[&format!("{CIRCUIT_TRANSITIONS}{{state=open}}")],
        1.0
    );
    assert_eq!(metrics[&format!("{CIRCUIT_STATE}{{}}")], 1.0);
    // Two awaited store calls were timed (the skipped one was not).
    assert_eq!(metrics[&format!("{STORE_DURATION}{{}}")], 2.0);
    assert_eq!(metrics[&format!("{CHECK_DURATION}{{}}")], 2.0);
    // No caller ever becomes a label.
    assert!(metrics.keys().all(|k| !k.contains("user")), "{metrics:?}");

    // Phase 4: a store that hangs times out, and the local fallback answers.
    let hanging = DistributedRateLimiter::new(
        LimiterConfig::new(Arc::new(HangingStore))
            .timeout(Duration::from_millis(20))
            .without_circuit_breaker()
            .failure_policy(FailurePolicy::LocalFallback)
            .rule(rule("local", Target::Each, 1)),
    );
    read(&snapshotter);
    assert!(
        hanging
            .check(&Identity::user("1"), &Rules::one("local"), 1)
            .await
            .unwrap()
            .allowed()
    );
    assert!(
        !hanging
            .check(&Identity::user("1"), &Rules::one("local"), 1)
            .await
            .unwrap()
            .allowed()
    );
    let metrics = read(&snapshotter);
    assert_eq!(metrics[&checks("local", "fallback")], 2.0);
    assert_eq!(metrics[&format!("{STORE_ERRORS}{{kind=timeout}}")], 2.0);
    assert_eq!(metrics[&format!("{MEMORY_KEYS}{{store=fallback}}")], 1.0);
}
