//! [`LimiterConfig`]: what a limiter is built from.

use std::sync::Arc;
use std::time::Duration;

use super::CircuitBreakerConfig;
use super::DenyCache;
use super::fleet::FleetSize;
use crate::{Clock, FailurePolicy, KeyPrefix, MemoryStore, Rule, RuleStore, Store};

/// Configuration of a [`DistributedRateLimiter`](crate::DistributedRateLimiter):
/// the store and how to treat it.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use ratelimit_core::{config::FailurePolicy, config::KeyPrefix, LimiterConfig, MemoryStore};
///
/// let config = LimiterConfig::new(Arc::new(MemoryStore::new()))
///     .timeout(Duration::from_millis(20))
///     .failure_policy(FailurePolicy::LocalFallback)
///     .key_prefix(KeyPrefix::new("myapp")?);
/// # Ok::<(), ratelimit_core::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct LimiterConfig {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) timeout: Duration,
    pub(crate) failure_policy: FailurePolicy,
    pub(crate) key_prefix: KeyPrefix,
    pub(crate) fallback: Option<MemoryStore>,
    pub(crate) fail_closed_retry_after: Duration,
    pub(crate) rules: Vec<Rule>,
    pub(crate) circuit_breaker: Option<CircuitBreakerConfig>,
    pub(crate) rule_store: Option<Arc<dyn RuleStore>>,
    pub(crate) deny_cache: Option<DenyCache>,
    pub(crate) clock: Option<Arc<dyn Clock>>,
    pub(crate) fleet: Option<FleetSize>,
}

impl LimiterConfig {
    /// The default per-check timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

    /// A configuration around `store`, with defaults: a 50 ms timeout,
    /// [`FailurePolicy::FailOpen`], key prefix `rl`, the default circuit
    /// breaker, no rules.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            timeout: Self::DEFAULT_TIMEOUT,
            failure_policy: FailurePolicy::default(),
            key_prefix: KeyPrefix::default(),
            fallback: None,
            fail_closed_retry_after: Duration::from_secs(1),
            rules: Vec::new(),
            circuit_breaker: Some(CircuitBreakerConfig::default()),
            rule_store: None,
            deny_cache: None,
            clock: None,
            fleet: None,
        }
    }

    /// The clock hot-key mode measures its reserved units' deadlines on
    /// (default: [`SystemClock`](crate::clock::SystemClock); see
    /// [`Rule::with_batch`]). Tests give it the store's
    /// [`FakeClock`](crate::clock::FakeClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// How long a check may wait for the store before the failure policy
    /// answers instead. Checks never take longer than this (plus scheduling).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The failure policy of rules that have none of their own.
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// The prefix of every storage key.
    pub fn key_prefix(mut self, prefix: KeyPrefix) -> Self {
        self.key_prefix = prefix;
        self
    }

    /// The local store used by [`FailurePolicy::LocalFallback`] (default: a
    /// [`MemoryStore`] on the system clock).
    pub fn fallback_store(mut self, store: MemoryStore) -> Self {
        self.fallback = Some(store);
        self
    }

    /// Under [`FailurePolicy::LocalFallback`], enforce each rule's quota
    /// divided by `fleet`'s count of instances (see [`FleetSize`]) instead
    /// of the whole quota on this instance. Without it (the default for a
    /// limiter built by hand) every instance enforces the whole quota while
    /// the store is down: more lenient, N times the rule for a fleet of N.
    pub fn fleet_size(mut self, fleet: FleetSize) -> Self {
        self.fleet = Some(fleet);
        self
    }

    /// The `retry_after` reported when [`FailurePolicy::FailClosed`] denies a
    /// request (default 1 s).
    pub fn fail_closed_retry_after(mut self, retry_after: Duration) -> Self {
        self.fail_closed_retry_after = retry_after;
        self
    }

    /// The circuit breaker's settings (on by default: see
    /// [`CircuitBreakerConfig::default`]).
    pub fn circuit_breaker(mut self, config: CircuitBreakerConfig) -> Self {
        self.circuit_breaker = Some(config);
        self
    }

    /// No circuit breaker: every check asks the store, however often it fails.
    pub fn without_circuit_breaker(mut self) -> Self {
        self.circuit_breaker = None;
        self
    }

    /// Share rules with every instance through `store`: rule changes are
    /// written there, and [`DistributedRateLimiter::refresh_rules`] loads
    /// them (see [`RuleStore`]). Without one, rule changes are local to this
    /// instance.
    ///
    /// [`DistributedRateLimiter::refresh_rules`]: crate::DistributedRateLimiter::refresh_rules
    pub fn rule_store(mut self, store: Arc<dyn RuleStore>) -> Self {
        self.rule_store = Some(store);
        self
    }

    /// Answer repeated denials locally, exactly as the store would (see
    /// [`DenyCache`]). Off by default; worth it in front of a remote store.
    pub fn deny_cache(mut self, cache: DenyCache) -> Self {
        self.deny_cache = Some(cache);
        self
    }

    /// A rule in force from the start. A later rule with the same id replaces
    /// an earlier one. With a rule store, these seed the store (see
    /// [`DistributedRateLimiter::start`](crate::DistributedRateLimiter::start)).
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }
}
