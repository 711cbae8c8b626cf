//! [`DistributedRateLimiter`]: named rules, checked atomically against a
//! shared store.

use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::Duration;

use arc_swap::ArcSwap;
use metrics::{Histogram, histogram};

use super::LimiterConfig;
use super::breaker::CircuitBreaker;
use super::deny_cache::Denials;
use super::fleet::FleetSize;
use super::health::Health;
use super::unknown_rule::UnknownRules;
use crate::caller::Caller;
use crate::key::Subject;
use crate::rule_store::Following;
use crate::store::CheckItem;
use crate::telemetry;
use crate::{
    Clock, Error, FailurePolicy, KeyPrefix, MemoryStore, Quota, Rule, RuleId, RuleSet, RuleStore,
    Store,
};

/// Rate limiting by named rules, shared by every instance using the same
/// store.
///
/// Each [`Rule`] gives a [`Target`](crate::Target) a [`Quota`]. A check
/// names who asks — an [`Identity`](crate::Identity): a user, a service, an
/// API key, a client address, or several of these at once — and which
/// [`Rules`](crate::Rules) it covers: one, several, a route's, or every
/// rule that applies. All the counters involved are tested and charged in
/// **one atomic store call**: either every enforced rule admits the request
/// and all are charged, or none is.
///
/// Rules change at run time ([`add_rule`], [`update_rule`],
/// [`remove_rule`], [`insert_rule`]) from any thread; the next check sees the
/// change. Checks read the rules without taking a lock (an [`ArcSwap`]
/// snapshot); changes are serialized among themselves.
///
/// When the store fails or exceeds the configured timeout, the rules'
/// [`FailurePolicy`] answers; a check never waits longer than the timeout.
/// After repeated failures a circuit breaker stops asking the store for a
/// while, so checks answer at once instead of each paying the timeout
/// ([`CircuitBreakerConfig`](crate::config::CircuitBreakerConfig)).
/// A store call that does not complete at once arms a Tokio timer, so checks
/// on a remote store must run inside a Tokio runtime with its timer enabled
/// (as axum and actix-web provide).
///
/// Cloning is cheap; clones share rules and store.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use ratelimit_core::{DistributedRateLimiter, Identity, LimiterConfig, MemoryStore, Rules, Target};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ratelimit_core::Error> {
/// let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())));
/// limiter.add_rule("api", Target::Each, 2, Duration::from_secs(1)).await?;
/// limiter.add_rule("vip", "user:42".parse()?, 100, Duration::from_secs(1)).await?;
///
/// assert!(limiter.is_allowed("user:7", "api").await);
/// assert!(limiter.is_allowed("user:7", "api").await);
/// assert!(!limiter.is_allowed("user:7", "api").await);
///
/// // Everything that applies to user 42: the VIP rule replaces `api`.
/// let verdict = limiter.check(&Identity::user("42"), &Rules::applicable(), 1).await?;
/// assert!(verdict.allowed());
/// assert_eq!(verdict.decisions()[0].rule.as_str(), "vip");
/// # Ok(())
/// # }
/// ```
///
/// [`add_rule`]: Self::add_rule
/// [`update_rule`]: Self::update_rule
/// [`remove_rule`]: Self::remove_rule
/// [`insert_rule`]: Self::insert_rule
#[derive(Debug, Clone)]
pub struct DistributedRateLimiter {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    /// Tells this limiter's plans from another's (see [`Plan`]).
    pub(super) id: u64,
    pub(super) store: Arc<dyn Store>,
    pub(super) rules: ArcSwap<RuleSet>,
    /// Counts the rule sets put in force, so that a plan knows whether the
    /// one it was made from is still the one in force.
    pub(super) generation: AtomicU64,
    /// Serializes rule changes (read-modify-swap); never held across `.await`.
    pub(super) changes: Mutex<()>,
    pub(super) timeout: Duration,
    /// Whether the store bounds each of its calls by itself, no longer than
    /// `timeout` (see [`Store::call_timeout`]).
    pub(super) store_bounds_calls: bool,
    pub(super) failure_policy: FailurePolicy,
    pub(super) key_prefix: KeyPrefix,
    pub(super) fallback: MemoryStore,
    /// The instances the local fallback divides quotas by, if any.
    pub(super) fleet: Option<FleetSize>,
    pub(super) fail_closed_retry_after: Duration,
    pub(super) breaker: CircuitBreaker,
    pub(super) rule_store: Option<Arc<dyn RuleStore>>,
    /// Whether the last store call failed (so a failing store is reported
    /// once when it starts failing and once when it recovers, not per check).
    pub(super) failing: AtomicBool,
    pub(super) store_duration: Histogram,
    pub(super) check_duration: Histogram,
    /// Denials answered locally (see [`DenyCache`](crate::config::DenyCache)).
    pub(super) denials: Option<Denials>,
    /// Hot-key mode's clock (see [`Rule::with_batch`]).
    pub(super) clock: Arc<dyn Clock>,
    /// Route checks naming rules this instance does not have.
    pub(super) unknown_rules: UnknownRules,
    /// The config's rules: in force until the rule store answers, and
    /// written to it when it holds no rules (see [`super::sync`]).
    pub(super) seeds: Vec<Rule>,
    /// Whether the rules in force were loaded from the rule store.
    pub(super) synced: AtomicBool,
    /// The rule store's epoch the rules in force came from.
    pub(super) epoch: AtomicU64,
    /// Whether the rule store lost the fleet's rules and they are not back.
    pub(super) restoring: AtomicBool,
    /// Keeps the rule store's follower running while the limiter lives.
    pub(super) following: OnceLock<Following>,
}

/// Numbers the limiters of this process (see [`Inner::id`]).
static NEXT_LIMITER_ID: AtomicU64 = AtomicU64::new(0);

/// # Making one
impl DistributedRateLimiter {
    /// A limiter from `config`, with the config's rules in force.
    pub fn new(config: LimiterConfig) -> Self {
        let seeds = if config.rule_store.is_some() {
            config.rules.clone()
        } else {
            Vec::new()
        };
        let rules = config
            .rules
            .into_iter()
            .fold(RuleSet::new(), |set, rule| set.with_rule(rule));
        telemetry::rules_changed("insert", rules.len(), rules.version());
        let fallback = config
            .fallback
            .unwrap_or_else(|| MemoryStore::builder().metrics_label("fallback").build());
        Self {
            inner: Arc::new(Inner {
                id: NEXT_LIMITER_ID.fetch_add(1, Ordering::Relaxed),
                store_bounds_calls: config
                    .store
                    .call_timeout()
                    .is_some_and(|bound| bound <= config.timeout),
                store: config.store,
                rules: ArcSwap::from_pointee(rules),
                generation: AtomicU64::new(0),
                changes: Mutex::new(()),
                timeout: config.timeout,
                failure_policy: config.failure_policy,
                key_prefix: config.key_prefix,
                fallback,
                fleet: config.fleet,
                breaker: CircuitBreaker::new(config.circuit_breaker),
                rule_store: config.rule_store,
                fail_closed_retry_after: config.fail_closed_retry_after,
                failing: AtomicBool::new(false),
                store_duration: histogram!(telemetry::STORE_DURATION),
                check_duration: histogram!(telemetry::CHECK_DURATION),
                denials: config.deny_cache.map(super::DenyCache::build),
                clock: config
                    .clock
                    .unwrap_or_else(|| Arc::new(crate::SystemClock::new())),
                unknown_rules: UnknownRules::default(),
                seeds,
                synced: AtomicBool::new(false),
                epoch: AtomicU64::new(0),
                restoring: AtomicBool::new(false),
                following: OnceLock::new(),
            }),
        }
    }

    /// A limiter from `config` with its rules in force and, with a shared
    /// rule store, following the store: the store's rules once it answers
    /// (the config's rules fill it if it holds none, and are in force until
    /// it answers), and every change made to them, for as long as the
    /// limiter lives. Never waits for an unreachable store: a limiter
    /// started while its store is down answers by its failure policy until
    /// the store comes up, then loads the fleet's rules by itself.
    pub async fn start(config: LimiterConfig) -> Result<Self, Error> {
        let limiter = Self::new(config);
        if let Some(store) = limiter.inner.rule_store.clone() {
            if let Err(error) = limiter.refresh_rules().await {
                tracing::warn!(
                    %error,
                    "the rule store did not answer; the seed rules are in force until it does"
                );
            }
            limiter.follow(&store);
        }
        Ok(limiter)
    }
}

/// # State
impl DistributedRateLimiter {
    /// How this limiter stands: whether its store answers a harmless
    /// question now (a peek at a probe key, bounded by the timeout and
    /// ignoring the circuit breaker), the circuit breaker's state, and
    /// where its rules stand with the rule store.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ratelimit_core::{DistributedRateLimiter, LimiterConfig, MemoryStore};
    /// use ratelimit_core::health::{CircuitState, RuleSync};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())));
    /// let health = limiter.health().await;
    /// assert!(health.store.is_ok());
    /// assert_eq!(health.circuit, CircuitState::Closed);
    /// assert_eq!(health.rules, RuleSync::Local);
    /// # }
    /// ```
    pub async fn health(&self) -> Health {
        let store = self.ping_store().await;
        Health {
            store,
            circuit: self.inner.breaker.state(),
            rules: self.rule_sync(),
            rules_version: self.inner.rules.load().version(),
            instances: self.inner.fleet.as_ref().map(FleetSize::get),
            failure_policy: self.inner.failure_policy,
            node: self.inner.store.node(),
        }
    }

    async fn ping_store(&self) -> Result<(), Error> {
        let key = self.inner.key_prefix.key_of(
            &RuleId::new("health")?,
            Subject::Caller(Caller::Hidden(b'k', b"probe")),
        );
        let quota = Quota::per_second(1)?;
        let item = CheckItem::new(&key, quota);
        self.store_call(self.inner.store.peek(&[item]))
            .await
            .map(drop)
    }

    /// The rules in force now.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.inner.rules.load_full()
    }
}

impl DistributedRateLimiter {
    /// Runs a store call bounded by the timeout: by the store's own bound
    /// when it has one no longer than the limiter's (one timer, the
    /// store's), else by [`with_timeout`](Self::with_timeout).
    pub(super) async fn store_call<T>(
        &self,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        if self.inner.store_bounds_calls {
            call.await
        } else {
            self.with_timeout(call).await
        }
    }

    pub(super) async fn with_timeout<T>(
        &self,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let timeout = self.inner.timeout;
        let mut call = pin!(call);
        let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
        poll_fn(|cx| {
            if let Poll::Ready(result) = call.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
            timer
                .as_mut()
                .poll(cx)
                .map(|()| Err(Error::Timeout(timeout)))
        })
        .await
    }
}
