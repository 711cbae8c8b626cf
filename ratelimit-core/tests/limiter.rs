//! The front doors: rules changed at run time, rule selection and priority,
//! validation, shadow rules, and every failure policy against stores that
//! fail, hang or answer garbage. Fake clock and paused Tokio time only.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use ratelimit_core::Rules;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ratelimit_core::store::{CheckItem, Outcome};
use ratelimit_core::{
    DistributedRateLimiter, Error, Identity, LimiterConfig, MemoryStore, Quota, RateLimiter, Rule,
    Store, Target, clock::FakeClock, config::FailurePolicy, verdict::Source,
};

const SEC: Duration = Duration::from_secs(1);

fn limiter() -> (DistributedRateLimiter, FakeClock) {
    let clock = FakeClock::at_micros(1_000_000_000);
    let store = MemoryStore::with_clock(clock.clone());
    (
        DistributedRateLimiter::new(LimiterConfig::new(Arc::new(store))),
        clock,
    )
}

async fn admitted(limiter: &DistributedRateLimiter, caller: &str, rule: &str, n: usize) -> usize {
    let mut count = 0;
    for _ in 0..n {
        if limiter.is_allowed(caller, rule).await {
            count += 1;
        }
    }
    count
}

#[tokio::test]
async fn rules_change_at_run_time() {
    let (limiter, clock) = limiter();
    limiter.add_rule("api", Target::Each, 3, SEC).await.unwrap();
    assert_eq!(admitted(&limiter, "user:1", "api", 10).await, 3);

    limiter.update_rule("api", 6, SEC).await.unwrap();
    // A rested caller gets the new limit (3/s rounds T up to 333,334 µs, so
    // a full second later the key is still 2 µs from rested).
    clock.advance(2 * SEC);
    assert_eq!(admitted(&limiter, "user:1", "api", 10).await, 6);

    let removed = limiter.remove_rule("api").await.unwrap();
    assert_eq!(removed.quota().limit(), 6);
    assert!(!limiter.is_allowed("user:1", "api").await);
    // A check naming the removed rule is answered by the failure policy
    // (fail open), with the reason; a peek says it plainly.
    let verdict = limiter
        .check(&Identity::user("1"), &Rules::one("api"), 1)
        .await
        .unwrap();
    assert_eq!(verdict.source(), Source::FailOpen);
    assert_eq!(
        verdict.store_error(),
        Some(&Error::UnknownRule("api".into()))
    );
    assert_eq!(
        limiter
            .peek(&Identity::user("1"), &Rules::one("api"))
            .await
            .unwrap_err(),
        Error::UnknownRule("api".into())
    );
    assert_eq!(limiter.rules().version(), 3);
}

#[tokio::test]
async fn rule_management_errors() {
    let (limiter, _clock) = limiter();
    limiter.add_rule("a", Target::Each, 1, SEC).await.unwrap();
    assert_eq!(
        limiter
            .add_rule("a", Target::Global, 1, SEC)
            .await
            .unwrap_err(),
        Error::RuleExists("a".into())
    );
    assert_eq!(
        limiter
            .add_rule("", Target::Each, 1, SEC)
            .await
            .unwrap_err(),
        Error::EmptyRuleId
    );
    assert_eq!(
        limiter
            .add_rule("b", Target::Each, 0, SEC)
            .await
            .unwrap_err(),
        Error::ZeroLimit
    );
    for window in [
        Duration::ZERO,
        Duration::from_micros(999),
        Duration::from_secs(367 * 86_400),
    ] {
        assert!(matches!(
            limiter
                .add_rule("b", Target::Each, 1, window)
                .await
                .unwrap_err(),
            Error::WindowOutOfRange { .. }
        ));
    }
    assert!(matches!(
        limiter
            .add_rule("b", Target::User(String::new()), 1, SEC)
            .await
            .unwrap_err(),
        Error::InvalidTarget { .. }
    ));
    assert_eq!(
        limiter.update_rule("nope", 1, SEC).await.unwrap_err(),
        Error::UnknownRule("nope".into())
    );
    assert_eq!(
        limiter.update_rule("a", 0, SEC).await.unwrap_err(),
        Error::ZeroLimit
    );
    assert_eq!(
        limiter.remove_rule("nope").await.unwrap_err(),
        Error::UnknownRule("nope".into())
    );
    // Failed changes changed nothing.
    assert_eq!(limiter.rules().version(), 1);
    assert_eq!(
        limiter.rules().get("a").cloned().unwrap().quota().limit(),
        1
    );
}

#[tokio::test]
async fn update_keeps_everything_but_the_rate() {
    let (limiter, _clock) = limiter();
    let rule = Rule::new(
        "r",
        Target::Global,
        Quota::per_second(10).unwrap().with_burst(3).unwrap(),
    )
    .unwrap()
    .with_priority(7)
    .with_shadow(true)
    .with_failure_policy(FailurePolicy::FailClosed);
    limiter.insert_rule(rule).await.unwrap();
    limiter
        .update_rule("r", 20, Duration::from_secs(2))
        .await
        .unwrap();
    let updated = limiter.rules().get("r").cloned().unwrap();
    assert_eq!(updated.quota().limit(), 20);
    assert_eq!(updated.quota().window(), Duration::from_secs(2));
    assert_eq!(updated.quota().burst(), 3);
    assert_eq!(updated.priority(), 7);
    assert!(updated.is_shadow());
    assert_eq!(updated.failure_policy(), Some(FailurePolicy::FailClosed));
    assert_eq!(updated.target(), &Target::Global);
}

#[tokio::test]
async fn callers_and_targets() {
    let (limiter, _clock) = limiter();
    limiter
        .add_rule("each", Target::Each, 1, SEC)
        .await
        .unwrap();
    limiter
        .add_rule("all", Target::Global, 2, SEC)
        .await
        .unwrap();
    limiter
        .add_rule("vip", "user:42".parse().unwrap(), 1, SEC)
        .await
        .unwrap();

    // `*` counts each caller separately; user 42 and service 42 differ.
    assert!(limiter.is_allowed("user:42", "each").await);
    assert!(limiter.is_allowed("service:42", "each").await);
    assert!(!limiter.is_allowed("user:42", "each").await);

    // `global` is one counter for everyone.
    assert!(limiter.is_allowed("user:1", "all").await);
    assert!(limiter.is_allowed("user:2", "all").await);
    assert!(!limiter.is_allowed("user:3", "all").await);

    // A user rule applies to that user only.
    assert!(limiter.is_allowed("user:42", "vip").await);
    assert!(!limiter.is_allowed("user:7", "vip").await);
    assert_eq!(
        limiter
            .check(&Identity::user("7"), &Rules::one("vip"), 1)
            .await
            .unwrap_err(),
        Error::RuleNotApplicable {
            rule: "vip".into(),
            caller: "user:7".into()
        }
    );
    assert_eq!(
        limiter
            .check(&Identity::service("42"), &Rules::one("vip"), 1)
            .await
            .unwrap_err(),
        Error::RuleNotApplicable {
            rule: "vip".into(),
            caller: "service:42".into()
        }
    );

    // Unparsable callers are refused, not panicked on.
    for bad in ["", "42", "user:", "robot:1", "ip:x"] {
        assert!(!limiter.is_allowed(bad, "each").await, "{bad:?}");
    }
}

#[tokio::test]
async fn check_all_applies_priorities_and_is_atomic() {
    let (limiter, clock) = limiter();
    limiter
        .add_rule("default", Target::Each, 2, SEC)
        .await
        .unwrap();
    limiter
        .add_rule("global", Target::Global, 5, SEC)
        .await
        .unwrap();
    limiter
        .add_rule("vip", "user:42".parse().unwrap(), 10, SEC)
        .await
        .unwrap();

    let ids = |v: &ratelimit_core::Verdict| {
        v.decisions()
            .iter()
            .map(|d| d.rule.to_string())
            .collect::<Vec<_>>()
    };
    let v = limiter
        .check(&Identity::user("1"), &Rules::applicable(), 1)
        .await
        .unwrap();
    assert_eq!(ids(&v), ["global", "default"]);
    let v = limiter
        .check(&Identity::user("42"), &Rules::applicable(), 1)
        .await
        .unwrap();
    assert_eq!(ids(&v), ["global", "vip"]);

    // Together they have used 2 of global's 5; user 42 gets 3 more (vip
    // would allow 9), then the global rule stops them.
    for _ in 0..3 {
        assert!(
            limiter
                .check(&Identity::user("42"), &Rules::applicable(), 1)
                .await
                .unwrap()
                .allowed()
        );
    }
    let denied = limiter
        .check(&Identity::user("42"), &Rules::applicable(), 1)
        .await
        .unwrap();
    assert!(!denied.allowed());
    assert_eq!(denied.binding().unwrap().rule.as_str(), "global");
    assert_eq!(denied.retry_after(), Duration::from_millis(200));
    // The denied check charged nothing: vip has 6 of 10 left, not 5.
    let vip = limiter
        .peek(&Identity::user("42"), &Rules::one("vip"))
        .await
        .unwrap();
    assert_eq!(vip.decisions()[0].decision.remaining(), 6);
    clock.advance(Duration::from_millis(200));
    assert!(
        limiter
            .check(&Identity::user("42"), &Rules::applicable(), 1)
            .await
            .unwrap()
            .allowed()
    );

    // Stacking: a user rule with the wildcard's priority applies with it.
    limiter
        .insert_rule(
            Rule::new(
                "extra",
                "user:9".parse().unwrap(),
                Quota::per_second(1).unwrap(),
            )
            .unwrap()
            .with_priority(0),
        )
        .await
        .unwrap();
    let v = limiter
        .check(&Identity::user("9"), &Rules::applicable(), 1)
        .await
        .unwrap();
    assert_eq!(ids(&v), ["global", "default", "extra"]);

    // No rule at all: admitted, nothing charged.
    let (empty, _) = self::limiter();
    let v = empty
        .check(&Identity::user("1"), &Rules::applicable(), 1)
        .await
        .unwrap();
    assert!(v.allowed() && v.decisions().is_empty() && v.binding().is_none());
}

#[tokio::test]
async fn named_rules_and_costs() {
    let (limiter, _clock) = limiter();
    limiter
        .add_rule("default", Target::Each, 10, SEC)
        .await
        .unwrap();
    limiter
        .add_rule("login", Target::Each, 2, Duration::from_secs(60))
        .await
        .unwrap();
    let caller = Identity::ip("203.0.113.9".parse().unwrap());
    for _ in 0..2 {
        assert!(
            limiter
                .check(&caller, &Rules::named(["default", "login"]), 1)
                .await
                .unwrap()
                .allowed()
        );
    }
    let denied = limiter
        .check(&caller, &Rules::named(["default", "login"]), 1)
        .await
        .unwrap();
    assert!(!denied.allowed());
    assert_eq!(denied.binding().unwrap().rule.as_str(), "login");
    assert_eq!(denied.retry_after(), Duration::from_secs(30));
    // `default` was charged twice, not three times.
    let left = limiter.peek(&caller, &Rules::one("default")).await.unwrap();
    assert_eq!(left.decisions()[0].decision.remaining(), 8);

    assert!(
        limiter
            .check(&caller, &Rules::one("default"), 8)
            .await
            .unwrap()
            .allowed()
    );
    assert_eq!(
        limiter
            .check(&caller, &Rules::one("default"), 11)
            .await
            .unwrap_err(),
        Error::CostExceedsBurst {
            cost: 11,
            burst: 10
        }
    );
    assert_eq!(
        limiter
            .check(&caller, &Rules::one("default"), 0)
            .await
            .unwrap_err(),
        Error::ZeroCost
    );
    assert_eq!(
        limiter
            .check(&caller, &Rules::named(["default", "nope"]), 1)
            .await
            .unwrap()
            .store_error(),
        Some(&Error::UnknownRule("nope".into()))
    );
}

#[tokio::test]
async fn shadow_rules_count_but_never_block() {
    let (limiter, _clock) = limiter();
    limiter
        .add_rule("real", Target::Each, 100, SEC)
        .await
        .unwrap();
    limiter
        .insert_rule(
            Rule::new("trial", Target::Each, Quota::per_second(2).unwrap())
                .unwrap()
                .with_shadow(true),
        )
        .await
        .unwrap();
    let mut shadow_denials = 0;
    for _ in 0..5 {
        let v = limiter
            .check(&Identity::user("1"), &Rules::applicable(), 1)
            .await
            .unwrap();
        assert!(v.allowed());
        shadow_denials += v.shadow_denials().count();
        assert_eq!(v.binding().unwrap().rule.as_str(), "real");
    }
    assert_eq!(shadow_denials, 3);
    assert_eq!(
        limiter
            .peek(&Identity::user("1"), &Rules::one("real"))
            .await
            .unwrap()
            .decisions()[0]
            .decision
            .remaining(),
        95
    );
}

#[tokio::test]
async fn reset_clears_one_callers_counter() {
    let (limiter, _clock) = limiter();
    limiter
        .add_rule("r", Target::Each, 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(limiter.is_allowed("user:1", "r").await);
    assert!(limiter.is_allowed("user:2", "r").await);
    assert!(!limiter.is_allowed("user:1", "r").await);
    limiter
        .reset(&Identity::user("1"), &Rules::one("r"))
        .await
        .unwrap();
    assert!(limiter.is_allowed("user:1", "r").await);
    assert!(!limiter.is_allowed("user:2", "r").await);
}

// ----- stores that misbehave -----

use ratelimit_test_support::stores::{FailingStore, GarbageStore, HangingStore};

async fn limiter_on(
    store: Arc<dyn Store>,
    policy: FailurePolicy,
    clock: &FakeClock,
) -> DistributedRateLimiter {
    let config = LimiterConfig::new(store)
        .failure_policy(policy)
        .timeout(Duration::from_millis(30))
        .fallback_store(MemoryStore::with_clock(clock.clone()))
        .fail_closed_retry_after(Duration::from_secs(2));
    let limiter = DistributedRateLimiter::new(config);
    limiter.add_rule("r", Target::Each, 2, SEC).await.unwrap();
    limiter
}

#[tokio::test(start_paused = true)]
async fn every_failure_policy_on_every_bad_store() {
    let clock = FakeClock::new();
    let stores: [(&str, Arc<dyn Store>); 3] = [
        ("failing", Arc::new(FailingStore)),
        ("hanging", Arc::new(HangingStore)),
        ("garbage", Arc::new(GarbageStore)),
    ];
    for (name, store) in stores {
        let open = limiter_on(Arc::clone(&store), FailurePolicy::FailOpen, &clock).await;
        let started = tokio::time::Instant::now();
        let v = open
            .check(&Identity::user("1"), &Rules::one("r"), 1)
            .await
            .unwrap();
        assert!(v.allowed(), "{name}");
        assert_eq!(v.source(), Source::FailOpen, "{name}");
        assert!(v.store_error().unwrap().is_store_failure(), "{name}");
        // Never longer than the timeout (virtual time: paused clock).
        assert!(started.elapsed() <= Duration::from_millis(30), "{name}");

        let closed = limiter_on(Arc::clone(&store), FailurePolicy::FailClosed, &clock).await;
        let v = closed
            .check(&Identity::user("1"), &Rules::one("r"), 1)
            .await
            .unwrap();
        assert!(!v.allowed(), "{name}");
        assert_eq!(v.source(), Source::FailClosed);
        assert_eq!(v.retry_after(), Duration::from_secs(2));

        let fallback = limiter_on(Arc::clone(&store), FailurePolicy::LocalFallback, &clock).await;
        let mut answers = Vec::new();
        for _ in 0..3 {
            let v = fallback
                .check(&Identity::user("1"), &Rules::one("r"), 1)
                .await
                .unwrap();
            assert_eq!(v.source(), Source::Fallback, "{name}");
            answers.push(v.allowed());
        }
        assert_eq!(
            answers,
            [true, true, false],
            "{name}: the local limiter enforces the quota"
        );
        clock.advance(SEC);
    }
}

#[tokio::test(start_paused = true)]
async fn the_timeout_bounds_a_hanging_store() {
    let clock = FakeClock::new();
    let limiter = limiter_on(Arc::new(HangingStore), FailurePolicy::FailOpen, &clock).await;
    let started = tokio::time::Instant::now();
    assert!(limiter.is_allowed("user:1", "r").await);
    assert_eq!(started.elapsed(), Duration::from_millis(30));
    // peek and reset report the failure rather than guessing.
    assert_eq!(
        limiter
            .peek(&Identity::user("1"), &Rules::one("r"))
            .await
            .unwrap_err(),
        Error::Timeout(Duration::from_millis(30))
    );
    assert_eq!(
        limiter
            .reset(&Identity::user("1"), &Rules::one("r"))
            .await
            .unwrap_err(),
        Error::Timeout(Duration::from_millis(30))
    );
}

#[tokio::test]
async fn the_strictest_policy_of_the_rules_wins() {
    let clock = FakeClock::new();
    let limiter = limiter_on(Arc::new(FailingStore), FailurePolicy::FailOpen, &clock).await;
    limiter
        .insert_rule(
            Rule::new("strict", Target::Global, Quota::per_second(1).unwrap())
                .unwrap()
                .with_failure_policy(FailurePolicy::FailClosed),
        )
        .await
        .unwrap();
    limiter
        .insert_rule(
            Rule::new(
                "local",
                "user:5".parse().unwrap(),
                Quota::per_second(1).unwrap(),
            )
            .unwrap()
            .with_priority(0)
            .with_failure_policy(FailurePolicy::LocalFallback),
        )
        .await
        .unwrap();
    // r (fail open) alone: admitted.
    assert_eq!(
        limiter
            .check(&Identity::user("1"), &Rules::one("r"), 1)
            .await
            .unwrap()
            .source(),
        Source::FailOpen
    );
    // r + strict: strict's fail-closed wins.
    let v = limiter
        .check(&Identity::user("1"), &Rules::named(["r", "strict"]), 1)
        .await
        .unwrap();
    assert_eq!((v.allowed(), v.source()), (false, Source::FailClosed));
    // r + local: the local fallback decides, for `local` only.
    let v = limiter
        .check(&Identity::user("5"), &Rules::named(["r", "local"]), 1)
        .await
        .unwrap();
    assert_eq!((v.allowed(), v.source()), (true, Source::Fallback));
    // Every rule is listed; `r`, which the fallback does not count, rested.
    assert_eq!(v.decisions().len(), 2);
    assert_eq!(v.decisions()[0].rule.as_str(), "r");
    let rested = v.decisions()[0].decision;
    assert_eq!(rested.remaining(), u64::from(rested.limit()));
    assert_eq!(v.decisions()[1].rule.as_str(), "local");
    let v = limiter
        .check(&Identity::user("5"), &Rules::named(["r", "local"]), 1)
        .await
        .unwrap();
    assert!(!v.allowed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_changes_race_with_checks_safely() {
    let (limiter, _clock) = limiter();
    limiter
        .add_rule("base", Target::Each, 1_000_000, SEC)
        .await
        .unwrap();
    let writer = {
        let limiter = limiter.clone();
        tokio::spawn(async move {
            for i in 0..200u32 {
                limiter
                    .insert_rule(
                        Rule::new("flip", Target::Global, Quota::per_second(i + 1).unwrap())
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                if i % 2 == 0 {
                    limiter.remove_rule("flip").await.unwrap();
                }
            }
        })
    };
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                for _ in 0..500 {
                    let v = limiter
                        .check(&Identity::user(&format!("{r}")), &Rules::applicable(), 1)
                        .await
                        .unwrap();
                    // Every verdict saw one consistent rule set: base, maybe flip.
                    let n = v.decisions().len();
                    assert!(n == 1 || n == 2, "{n}");
                    assert!(v.decisions().iter().any(|d| d.rule.as_str() == "base"));
                }
            })
        })
        .collect();
    writer.await.unwrap();
    for r in readers {
        r.await.unwrap();
    }
    assert!(
        limiter.rules().get("flip").cloned().is_some(),
        "the last change (i = 199) put it back"
    );
    assert_eq!(limiter.rules().version(), 1 + 200 + 100);
}

#[tokio::test]
async fn the_simple_rate_limiter() {
    let clock = FakeClock::new();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::with_clock(clock.clone()));
    let limiter = RateLimiter::new(2, 500, Arc::clone(&store)).unwrap();
    assert_eq!(
        limiter.quota().emission_interval(),
        Duration::from_millis(250)
    );
    assert!(limiter.allow("a").await);
    assert!(limiter.allow("a").await);
    assert!(!limiter.allow("a").await);
    assert!(limiter.allow("b").await);
    assert!(limiter.allow(b"\xff\x00binary").await);
    clock.advance(Duration::from_millis(250));
    assert!(limiter.allow("a").await);
    assert!(!limiter.allow("a").await);

    assert_eq!(
        RateLimiter::new(0, 1_000, Arc::clone(&store)).unwrap_err(),
        Error::ZeroLimit
    );
    assert!(matches!(
        RateLimiter::new(1, 0, Arc::clone(&store)).unwrap_err(),
        Error::WindowOutOfRange { .. }
    ));
    assert!(matches!(
        RateLimiter::new(u32::MAX, 1, store).unwrap_err(),
        Error::RateTooHigh { .. }
    ));
}

/// A MemoryStore that can be switched to failing, counting the calls it gets.
#[derive(Debug)]
struct FlakyStore {
    inner: MemoryStore,
    healthy: std::sync::atomic::AtomicBool,
    calls: std::sync::atomic::AtomicUsize,
}

impl FlakyStore {
    fn new(clock: &FakeClock) -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryStore::with_clock(clock.clone()),
            healthy: true.into(),
            calls: 0.into(),
        })
    }
    fn set_healthy(&self, healthy: bool) {
        self.healthy
            .store(healthy, std::sync::atomic::Ordering::SeqCst);
    }
    fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn answer(&self) -> Result<(), Error> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.healthy.load(std::sync::atomic::Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Error::Store("connection refused".into()))
        }
    }
}

#[async_trait]
impl Store for FlakyStore {
    async fn check(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        self.answer()?;
        self.inner.check_now(items)
    }
    async fn peek(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        self.answer()?;
        self.inner.peek_now(items)
    }
    async fn reset(&self, keys: &[&[u8]]) -> Result<(), Error> {
        self.answer()?;
        self.inner.reset_now(keys);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn the_circuit_opens_after_repeated_failures_and_a_probe_closes_it() {
    use ratelimit_core::{config::CircuitBreakerConfig, health::CircuitState};
    let clock = FakeClock::new();
    let store = FlakyStore::new(&clock);
    let limiter = DistributedRateLimiter::new(
        LimiterConfig::new(store.clone())
            .circuit_breaker(CircuitBreakerConfig::new(3, Duration::from_millis(500))),
    );
    limiter.add_rule("r", Target::Each, 100, SEC).await.unwrap();
    assert!(
        limiter
            .check(&Identity::user("1"), &Rules::one("r"), 1)
            .await
            .unwrap()
            .source()
            == Source::Store
    );

    store.set_healthy(false);
    for _ in 0..3 {
        let v = limiter
            .check(&Identity::user("1"), &Rules::one("r"), 1)
            .await
            .unwrap();
        assert_eq!(v.source(), Source::FailOpen);
    }
    // Each health report asks the store once more (past the breaker).
    assert_eq!(limiter.health().await.circuit, CircuitState::Open);
    assert_eq!(store.calls(), 5);
    // Open: the store is not asked; the policy answers at once.
    for _ in 0..10 {
        let v = limiter
            .check(&Identity::user("1"), &Rules::one("r"), 1)
            .await
            .unwrap();
        assert_eq!(v.source(), Source::FailOpen);
        assert_eq!(v.store_error(), Some(&Error::CircuitOpen));
    }
    assert_eq!(store.calls(), 5);

    // After `open_for`, one probe; the store is still down: open again.
    tokio::time::advance(Duration::from_millis(500)).await;
    limiter
        .check(&Identity::user("1"), &Rules::one("r"), 1)
        .await
        .unwrap();
    assert_eq!(store.calls(), 6);
    limiter
        .check(&Identity::user("1"), &Rules::one("r"), 1)
        .await
        .unwrap();
    assert_eq!(store.calls(), 6);
    assert_eq!(limiter.health().await.circuit, CircuitState::Open);

    // The store is back: the next probe closes the circuit.
    store.set_healthy(true);
    tokio::time::advance(Duration::from_millis(499)).await;
    limiter
        .check(&Identity::user("1"), &Rules::one("r"), 1)
        .await
        .unwrap();
    assert_eq!(store.calls(), 7, "not yet");
    tokio::time::advance(Duration::from_millis(1)).await;
    let v = limiter
        .check(&Identity::user("1"), &Rules::one("r"), 1)
        .await
        .unwrap();
    assert_eq!(v.source(), Source::Store);
    assert_eq!(store.calls(), 8);
    assert_eq!(limiter.health().await.circuit, CircuitState::Closed);
    // Only the two admitted-by-store checks were charged.
    assert_eq!(v.decisions()[0].decision.remaining(), 98);
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_stops_paying_the_timeout() {
    let clock = FakeClock::new();
    let limiter = DistributedRateLimiter::new(
        LimiterConfig::new(Arc::new(HangingStore)).timeout(Duration::from_millis(30)),
    );
    limiter.add_rule("r", Target::Each, 1, SEC).await.unwrap();
    drop(clock);
    let started = tokio::time::Instant::now();
    for _ in 0..5 {
        assert!(limiter.is_allowed("user:1", "r").await);
    }
    assert_eq!(started.elapsed(), Duration::from_millis(150));
    let started = tokio::time::Instant::now();
    for _ in 0..100 {
        assert!(limiter.is_allowed("user:1", "r").await);
    }
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn without_a_breaker_every_check_asks_the_store() {
    let clock = FakeClock::new();
    let store = FlakyStore::new(&clock);
    store.set_healthy(false);
    let limiter =
        DistributedRateLimiter::new(LimiterConfig::new(store.clone()).without_circuit_breaker());
    limiter.add_rule("r", Target::Each, 1, SEC).await.unwrap();
    for _ in 0..20 {
        limiter
            .check(&Identity::user("1"), &Rules::one("r"), 1)
            .await
            .unwrap();
    }
    assert_eq!(store.calls(), 20);
}

#[tokio::test]
async fn header_values_follow_the_draft() {
    use ratelimit_core::http as headers;
    let (limiter, clock) = limiter();
    limiter
        .add_rule("default", Target::Each, 2, Duration::from_millis(500))
        .await
        .unwrap();
    limiter
        .add_rule("global", Target::Global, 100, Duration::from_secs(60))
        .await
        .unwrap();
    limiter
        .insert_rule(
            Rule::new("trial", Target::Each, Quota::per_second(1).unwrap())
                .unwrap()
                .with_shadow(true),
        )
        .await
        .unwrap();
    let caller = Identity::user("1");

    let v = limiter
        .check(&caller, &Rules::applicable(), 1)
        .await
        .unwrap();
    let h = headers::values(&v, true);
    assert_eq!(
        h.rate_limit_policy.as_deref(),
        Some("\"global\";q=100;w=60, \"default\";q=2;w=1")
    );
    assert_eq!(
        h.rate_limit.as_deref(),
        Some("\"global\";r=99;t=1, \"default\";r=1;t=1")
    );
    assert_eq!(h.retry_after, None);
    let legacy = h.legacy.as_ref().unwrap();
    assert_eq!(
        (
            legacy.limit.as_str(),
            legacy.remaining.as_str(),
            legacy.reset.as_str()
        ),
        ("2", "1", "1")
    );

    limiter
        .check(&caller, &Rules::applicable(), 1)
        .await
        .unwrap();
    let denied = limiter
        .check(&caller, &Rules::applicable(), 1)
        .await
        .unwrap();
    assert!(!denied.allowed());
    let h = headers::values(&denied, false);
    assert_eq!(
        h.rate_limit.as_deref(),
        Some("\"global\";r=98;t=2, \"default\";r=0;t=1")
    );
    assert_eq!(h.retry_after.as_deref(), Some("1"));
    assert_eq!(h.legacy, None);
    let names: Vec<&str> = h.pairs().map(|(name, _)| name).collect();
    assert_eq!(names, ["ratelimit-policy", "ratelimit", "retry-after"]);

    // Fail closed: the rules listed as the store's answer would list them,
    // each rested (the limiter knows nothing of their state), and the
    // policy's Retry-After.
    clock.advance(Duration::from_secs(1));
    let store_down = DistributedRateLimiter::new(
        LimiterConfig::new(Arc::new(FailingStore))
            .failure_policy(FailurePolicy::FailClosed)
            .fail_closed_retry_after(Duration::from_millis(1_500)),
    );
    store_down
        .add_rule("r", Target::Each, 1, SEC)
        .await
        .unwrap();
    let v = store_down
        .check(&caller, &Rules::one("r"), 1)
        .await
        .unwrap();
    let h = headers::values(&v, true);
    assert_eq!(
        h.pairs().collect::<Vec<_>>(),
        [
            ("ratelimit-policy", "\"r\";q=1;w=1"),
            ("ratelimit", "\"r\";r=1;t=0"),
            ("retry-after", "2"),
        ]
    );
}

#[tokio::test]
async fn checks_in_place_answer_exactly_as_awaited_checks() {
    // Two limiters on twin stores and one clock: one checked in place, one
    // awaited, through the same sequence of selections, costs and times.
    let clock = FakeClock::at_micros(1_000_000_000);
    let make = || {
        let store = MemoryStore::with_clock(clock.clone());
        DistributedRateLimiter::new(LimiterConfig::new(Arc::new(store)))
    };
    let (in_place, awaited) = (make(), make());
    for limiter in [&in_place, &awaited] {
        limiter
            .add_rule("each", Target::Each, 3, SEC)
            .await
            .unwrap();
        limiter
            .add_rule("all", Target::Global, 5, SEC)
            .await
            .unwrap();
        let vip = Rule::new(
            "vip",
            "user:9".parse().unwrap(),
            Quota::per_second(4).unwrap(),
        );
        limiter.insert_rule(vip.unwrap()).await.unwrap();
    }
    let selections = [
        Rules::one("each"),
        Rules::named(["each", "all"]),
        Rules::applicable(),
        Rules::route(["each"]),
        Rules::one("missing"),
    ];
    let callers = [
        Identity::user("1"),
        Identity::user("9"),
        Identity::service("s"),
    ];
    let mut admitted = 0;
    for step in 0_u64..120 {
        let selection = &selections[(step % 5) as usize];
        let caller = &callers[(step % 3) as usize];
        let cost = 1 + (step % 2) as u32;
        let now = in_place
            .try_check(caller, selection, cost)
            .expect("the in-memory store answers in place");
        let later = awaited.check(caller, selection, cost).await;
        match (now, later) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.allowed(), b.allowed(), "step {step}");
                assert_eq!(a.decisions(), b.decisions(), "step {step}");
                assert_eq!(a.retry_after(), b.retry_after(), "step {step}");
                admitted += usize::from(a.allowed());
            }
            (a, b) => assert_eq!(a.err(), b.err(), "step {step}"),
        }
        clock.advance(Duration::from_millis(37));
    }
    // Both admitted some and denied some: the sequence exercised both.
    assert!(admitted > 10 && admitted < 96, "{admitted}");
}

#[tokio::test(start_paused = true)]
async fn stores_that_must_be_awaited_are_not_checked_in_place() {
    let clock = FakeClock::new();
    for store in [
        Arc::new(FailingStore) as Arc<dyn Store>,
        Arc::new(HangingStore),
    ] {
        let limiter = limiter_on(store, FailurePolicy::FailClosed, &clock).await;
        // No answer in place, and so no failure policy either: the awaited
        // check owns the store call, the timeout and the breaker.
        assert!(
            limiter
                .try_check(&Identity::user("1"), &Rules::one("r"), 1)
                .is_none()
        );
        let v = limiter
            .check(&Identity::user("1"), &Rules::one("r"), 1)
            .await
            .unwrap();
        assert_eq!(v.source(), Source::FailClosed);
    }
}

/// A check naming a rule the instance does not have (a route's, or one by
/// name) is answered by the failure policy, with the reason; a peek says
/// it is unknown.
#[tokio::test]
async fn a_route_naming_an_unknown_rule_is_answered_by_the_failure_policy() {
    let (limiter, _clock) = limiter();
    limiter.add_rule("api", Target::Each, 1, SEC).await.unwrap();
    for _ in 0..3 {
        let verdict = limiter
            .check(&Identity::user("1"), &Rules::route(["api", "gone"]), 1)
            .await
            .unwrap();
        assert!(verdict.allowed());
        assert_eq!(verdict.source(), Source::FailOpen);
    }
    let verdict = limiter
        .check(&Identity::user("1"), &Rules::one("gone"), 1)
        .await
        .unwrap();
    assert_eq!(verdict.source(), Source::FailOpen);
    assert_eq!(
        verdict.store_error(),
        Some(&Error::UnknownRule("gone".into()))
    );
    assert_eq!(
        limiter
            .peek(&Identity::user("1"), &Rules::one("gone"))
            .await
            .unwrap_err(),
        Error::UnknownRule("gone".into())
    );

    let store = Arc::new(MemoryStore::new());
    let closed = DistributedRateLimiter::new(
        LimiterConfig::new(store).failure_policy(FailurePolicy::FailClosed),
    );
    let verdict = closed
        .check(&Identity::user("1"), &Rules::route(["gone"]), 1)
        .await
        .unwrap();
    assert!(!verdict.allowed());
    assert_eq!(verdict.source(), Source::FailClosed);
}

/// A store that answers after `delay` and claims to bound its own calls by
/// `bound`.
#[derive(Debug)]
struct SlowStore {
    delay: Duration,
    bound: Option<Duration>,
    inner: MemoryStore,
}

#[async_trait]
impl Store for SlowStore {
    async fn check(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        tokio::time::sleep(self.delay).await;
        self.inner.check(items).await
    }

    async fn peek(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        tokio::time::sleep(self.delay).await;
        self.inner.peek(items).await
    }

    async fn reset(&self, keys: &[&[u8]]) -> Result<(), Error> {
        self.inner.reset(keys).await
    }

    fn call_timeout(&self) -> Option<Duration> {
        self.bound
    }
}

/// One owner for the store timeout: a store that bounds its own calls no
/// longer than the limiter's timeout is trusted to (the limiter arms no
/// timer of its own, so this store, which overruns its claim, is waited
/// for); one whose bound is longer, or that has none, is bounded by the
/// limiter.
#[tokio::test(start_paused = true)]
async fn a_store_that_bounds_its_calls_owns_the_timeout() {
    let clock = FakeClock::new();
    for (bound, waited) in [
        (Some(Duration::from_millis(20)), true),
        (Some(Duration::from_millis(100)), false),
        (None, false),
    ] {
        let store = SlowStore {
            delay: Duration::from_millis(60),
            bound,
            inner: MemoryStore::with_clock(clock.clone()),
        };
        let limiter = limiter_on(Arc::new(store), FailurePolicy::FailClosed, &clock).await;
        let started = tokio::time::Instant::now();
        let verdict = limiter
            .check(&Identity::user("1"), &Rules::one("r"), 1)
            .await
            .unwrap();
        if waited {
            assert_eq!(verdict.source(), Source::Store, "{bound:?}");
            assert_eq!(started.elapsed(), Duration::from_millis(60));
        } else {
            assert_eq!(verdict.source(), Source::FailClosed, "{bound:?}");
            assert_eq!(started.elapsed(), Duration::from_millis(30));
        }
    }
}
