//! [`DistributedRateLimiter`]: named rules, checked atomically against a
//! shared store.

use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::Poll;
use std::time::Duration;

use arc_swap::ArcSwap;
use metrics::{Histogram, histogram};
use smallvec::SmallVec;
use tracing::Instrument;

use super::breaker::{CircuitBreaker, CircuitState, Permit};
use super::deny_cache::Denials;
use super::keys::Keys;
use super::plan::Plan;
use super::reservation::{self, Take, Units};
use super::unknown_rule::UnknownRules;
use super::verdict::{RuleDecision, Source, Verdict};
use super::{LimiterConfig, RuleChoice, RuleSelection, Selector};
use crate::rule_set::{ActiveRule, Selected};
use crate::store::{CheckItem, Outcome};
use crate::telemetry;
use crate::{
    Caller, Clock, Error, FailurePolicy, Following, KeyPrefix, MemoryStore, Quota, Rule, RuleId,
    RuleSet, RuleStore, RuleWrite, RuleWritten, Store, Target,
};

/// Rate limiting by named rules, shared by every instance using the same
/// store.
///
/// Each [`Rule`] gives a [`Target`] a [`Quota`]. A check names a caller
/// (`user:42`, `service:billing`, an address or a key) and either one rule,
/// a list of rules, or "every rule that applies" ([`check_all`]); all the
/// counters involved are tested and charged in **one atomic store call**:
/// either every enforced rule admits the request and all are charged, or none
/// is.
///
/// Rules change at run time ([`add_rule`], [`update_rule`],
/// [`remove_rule`], [`put_rule`]) from any thread; the next check sees the
/// change. Checks read the rules without taking a lock (an [`ArcSwap`]
/// snapshot); changes are serialized among themselves.
///
/// When the store fails or exceeds the configured timeout, the rules'
/// [`FailurePolicy`] answers; a check never waits longer than the timeout.
/// After repeated failures a circuit breaker stops asking the store for a
/// while, so checks answer at once instead of each paying the timeout
/// ([`CircuitBreakerConfig`](crate::CircuitBreakerConfig)).
/// A store call that does not complete at once arms a Tokio timer, so checks
/// on a remote store must run inside a Tokio runtime with its timer enabled
/// (as axum and actix-web provide).
///
/// Cloning is cheap; clones share rules and store.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use ratelimit_core::{Caller, DistributedRateLimiter, LimiterConfig, MemoryStore, Target};
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
/// let verdict = limiter.check_all(Caller::user("42")).await?;
/// assert!(verdict.allowed());
/// assert_eq!(verdict.decisions()[0].rule.as_str(), "vip");
/// # Ok(())
/// # }
/// ```
///
/// [`check_all`]: Self::check_all
/// [`add_rule`]: Self::add_rule
/// [`update_rule`]: Self::update_rule
/// [`remove_rule`]: Self::remove_rule
/// [`put_rule`]: Self::put_rule
#[derive(Debug, Clone)]
pub struct DistributedRateLimiter {
    inner: Arc<Inner>,
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
    pub(super) failure_policy: FailurePolicy,
    pub(super) key_prefix: KeyPrefix,
    pub(super) fallback: MemoryStore,
    pub(super) fail_closed_retry_after: Duration,
    pub(super) breaker: CircuitBreaker,
    pub(super) rule_store: Option<Arc<dyn RuleStore>>,
    /// Whether the last store call failed (so a failing store is reported
    /// once when it starts failing and once when it recovers, not per check).
    pub(super) failing: AtomicBool,
    pub(super) store_duration: Histogram,
    pub(super) check_duration: Histogram,
    /// Denials answered locally (see [`DenyCache`](crate::DenyCache)).
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

/// What [`prepare`] found.
enum Preparation<'r, 'c> {
    /// Ask the store about these rules.
    Ready(Selected<'r, 'c>),
    /// The check's answer, without asking the store (an error, or no rule
    /// applies).
    Answered(Result<Verdict, Error>),
}

/// A check's rules and keys, ready for the store. Both live on the stack
/// of the function running the check; this only borrows them.
#[derive(Clone, Copy)]
struct Prepared<'p, 'r, 'c> {
    selected: &'p Selected<'r, 'c>,
    keys: &'p Keys,
}

impl<'p> Prepared<'p, '_, '_> {
    /// The store's items: each rule's key, quota and the request's cost.
    /// Always inlined: left to the compiler it stayed a call (about 30
    /// instructions a check in the HTTP bench; the returned items are
    /// still copied once).
    #[inline(always)]
    fn items(self, cost: u32) -> SmallVec<[CheckItem<'p>; 2]> {
        let mut items = SmallVec::new();
        self.push_items(cost, &mut items);
        items
    }

    /// [`items`](Self::items), pushed onto `items`.
    #[inline(always)]
    fn push_items(self, cost: u32, items: &mut SmallVec<[CheckItem<'p>; 2]>) {
        // Pushed, not collected: `SmallVec`'s `collect` costs more than the
        // copies for one or two items.
        for ((rule, _), key) in self.selected.iter().zip(self.keys.iter()) {
            items.push(CheckItem {
                key,
                quota: *rule.quota(),
                cost,
                shadow: rule.is_shadow(),
                reserve: 0,
                lineage: rule.lineage(),
            });
        }
    }

    /// Whether a rule of this check is in hot-key mode.
    fn has_batches(&self) -> bool {
        self.selected
            .iter()
            .any(|(rule, _)| rule.reservations.is_some())
    }
}

/// Hot-key mode's plan for one check: per selected rule, units spent from
/// this instance's reservations, or what to ask the store.
struct Batched {
    /// The local clock, read before the store is asked.
    asked_at: u64,
    steps: SmallVec<[Step; 4]>,
}

/// What [`DistributedRateLimiter::plan_batches`] found.
enum BatchPlan {
    /// Ask the store about the rules not paid for locally.
    Ask(Batched),
    /// Answered here: admitted by units held, or denied while a rule
    /// waits for a batch.
    Answered(Verdict),
}

enum Step {
    /// Paid for by units held here.
    Local { units: Units, tat: u64 },
    /// Asked of the store, with this many units to reserve beyond the cost.
    Store { reserve: u32 },
}

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
                store: config.store,
                rules: ArcSwap::from_pointee(rules),
                generation: AtomicU64::new(0),
                changes: Mutex::new(()),
                timeout: config.timeout,
                failure_policy: config.failure_policy,
                key_prefix: config.key_prefix,
                fallback,
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

    // ----- rules -----

    /// Adds a rule `rule_id` giving `target` `limit` requests per `window`
    /// (burst = limit, default priority, enforced, the default failure
    /// policy). Fails with [`Error::RuleExists`] if the id is taken, or with
    /// a validation error.
    pub async fn add_rule(
        &self,
        rule_id: &str,
        target: Target,
        limit: u32,
        window: Duration,
    ) -> Result<(), Error> {
        let rule = Rule::new(rule_id, target, Quota::new(limit, window)?)?;
        self.insert_rule(rule).await
    }

    /// Adds a fully configured rule; fails with [`Error::RuleExists`] if the
    /// id is taken.
    pub async fn insert_rule(&self, rule: Rule) -> Result<(), Error> {
        if let Some(store) = &self.inner.rule_store {
            return self
                .write_shared(store, RuleWrite::Insert(rule))
                .await
                .map(drop);
        }
        self.change("insert", |set| {
            if set.get(rule.id().as_str()).is_some() {
                return Err(Error::RuleExists(rule.id().to_string()));
            }
            Ok((set.with_rule(rule), ()))
        })
    }

    /// Adds a rule or replaces the rule with its id; returns the replaced one.
    /// A replacement [succeeds](Rule::succeeding) the rule it replaces, so
    /// counters keep each caller's usage across a change of quota.
    ///
    /// With a shared rule store the replacement is a compare-and-set on the
    /// stored rule, retried a few times if other instances change it
    /// meanwhile; if they keep changing it, the rule is written
    /// unconditionally (a put always applies), succeeding the rule last
    /// seen.
    pub async fn put_rule(&self, rule: Rule) -> Result<Option<Rule>, Error> {
        if let Some(store) = &self.inner.rule_store {
            let mut last_seen = None;
            for _ in 0..8 {
                let snapshot = self.with_timeout(store.load()).await?;
                let current = snapshot.rules.into_iter().find(|r| r.id() == rule.id());
                let change = match current {
                    Some(expected) => {
                        let new = rule.clone().succeeding(&expected);
                        last_seen = Some(new.clone());
                        RuleWrite::Replace { expected, new }
                    }
                    None => RuleWrite::Insert(rule.clone()),
                };
                match self.write_shared(store, change).await {
                    Err(Error::RuleConflict(_) | Error::RuleExists(_)) => continue,
                    result => return result.map(|written| written.previous),
                }
            }
            let rule = last_seen.unwrap_or(rule);
            let written = self.write_shared(store, RuleWrite::Upsert(rule)).await?;
            return Ok(written.previous);
        }
        self.change("put", |set| {
            let previous = set.get(rule.id().as_str()).cloned();
            let rule = match &previous {
                Some(previous) => rule.succeeding(previous),
                None => rule,
            };
            Ok((set.with_rule(rule), previous))
        })
    }

    /// Changes a rule's limit and window, keeping its target, priority, shadow
    /// flag, failure policy, and burst if that was set explicitly. Counters
    /// carry over: a caller's recent requests count against the new rate.
    ///
    /// With a shared rule store this is a compare-and-set on the stored rule,
    /// retried a few times if another instance changes it meanwhile
    /// ([`Error::RuleConflict`] if it keeps changing).
    pub async fn update_rule(
        &self,
        rule_id: &str,
        limit: u32,
        window: Duration,
    ) -> Result<(), Error> {
        self.modify_rule(rule_id, |rule| {
            let quota = rule.quota().with_rate(limit, window)?;
            Ok(rule.clone().with_quota(quota))
        })
        .await
        .map(drop)
    }

    /// Replaces the rule `rule_id` with what `modify` makes of it, and
    /// returns the new rule. `modify` must keep the id.
    ///
    /// With a shared rule store this is a compare-and-set: `modify` is given
    /// the stored rule, and if another instance changed it meanwhile, the
    /// change is made again on the newer rule (a few times at most, then
    /// [`Error::RuleConflict`]). So concurrent modifications from several
    /// instances never overwrite one another.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ratelimit_core::{DistributedRateLimiter, LimiterConfig, MemoryStore, Target};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ratelimit_core::Error> {
    /// let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())));
    /// limiter.add_rule("api", Target::Each, 10, std::time::Duration::from_secs(1)).await?;
    /// let rule = limiter.modify_rule("api", |rule| Ok(rule.clone().with_shadow(true))).await?;
    /// assert!(rule.is_shadow());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn modify_rule(
        &self,
        rule_id: &str,
        modify: impl Fn(&Rule) -> Result<Rule, Error>,
    ) -> Result<Rule, Error> {
        let modify = |rule: &Rule| {
            let new = modify(rule)?;
            if new.id() == rule.id() {
                Ok(new)
            } else {
                Err(Error::InvalidRuleId {
                    id: new.id().to_string(),
                    reason: "a modified rule must keep its id",
                })
            }
        };
        if let Some(store) = &self.inner.rule_store {
            for _ in 0..8 {
                let snapshot = self.with_timeout(store.load()).await?;
                let expected = snapshot
                    .rules
                    .into_iter()
                    .find(|rule| rule.id().as_str() == rule_id)
                    .ok_or_else(|| Error::UnknownRule(rule_id.to_owned()))?;
                let new = modify(&expected)?;
                let change = RuleWrite::Replace {
                    expected,
                    new: new.clone(),
                };
                match self.write_shared(store, change).await {
                    Err(Error::RuleConflict(_)) => continue,
                    result => return result.map(|_| new),
                }
            }
            return Err(Error::RuleConflict(rule_id.to_owned()));
        }
        self.change("update", |set| {
            let rule = set
                .get(rule_id)
                .ok_or_else(|| Error::UnknownRule(rule_id.to_owned()))?;
            let new = modify(rule)?;
            Ok((set.with_rule(new.clone()), new))
        })
    }

    /// Removes a rule and returns it. Its counters are left to expire.
    pub async fn remove_rule(&self, rule_id: &str) -> Result<Rule, Error> {
        if let Some(store) = &self.inner.rule_store {
            let id = RuleId::new(rule_id)?;
            let written = self.write_shared(store, RuleWrite::Remove(id)).await?;
            return written
                .previous
                .ok_or_else(|| Error::UnknownRule(rule_id.to_owned()));
        }
        self.change("remove", |set| {
            let rule = set
                .get(rule_id)
                .cloned()
                .ok_or_else(|| Error::UnknownRule(rule_id.to_owned()))?;
            let without = set
                .without_rule(rule_id)
                .ok_or_else(|| Error::UnknownRule(rule_id.to_owned()))?;
            Ok((without, rule))
        })
    }

    /// Writes a change to the shared rule store, then reloads the rules so
    /// this instance sees its own change (and any other) at once.
    async fn write_shared(
        &self,
        store: &Arc<dyn RuleStore>,
        change: RuleWrite,
    ) -> Result<RuleWritten, Error> {
        let written = self.with_timeout(store.write(change)).await?;
        self.refresh_rules().await?;
        Ok(written)
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

    pub(super) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    pub(super) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Asks the store a harmless question (a peek at a probe key), bounded by
    /// the timeout and ignoring the circuit breaker: `Ok` if it answers.
    pub async fn store_health(&self) -> Result<(), Error> {
        let key = self.inner.key_prefix.key(
            &RuleId::new("health")?,
            crate::Subject::Caller(Caller::Key(b"probe")),
        );
        let quota = Quota::per_second(1)?;
        let item = CheckItem::new(&key, quota);
        self.with_timeout(self.inner.store.peek(&[item]))
            .await
            .map(drop)
    }

    /// The failure policy of rules that have none of their own.
    pub fn default_failure_policy(&self) -> FailurePolicy {
        self.inner.failure_policy
    }

    /// Whether checks currently reach the store (see
    /// [`CircuitBreakerConfig`](crate::CircuitBreakerConfig)).
    pub fn circuit_state(&self) -> CircuitState {
        self.inner.breaker.state()
    }

    /// The rules in force now.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.inner.rules.load_full()
    }

    /// The rule with this id.
    pub fn rule(&self, rule_id: &str) -> Option<Rule> {
        self.inner.rules.load().get(rule_id).cloned()
    }

    fn change<T>(
        &self,
        kind: &'static str,
        f: impl FnOnce(&RuleSet) -> Result<(RuleSet, T), Error>,
    ) -> Result<T, Error> {
        // The guard protects no data of its own, so a poisoned lock is safe to reuse.
        let _serial = self
            .inner
            .changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.inner.rules.load();
        let (next, result) = f(&current)?;
        telemetry::rules_changed(kind, next.len(), next.version());
        self.install(next);
        Ok(result)
    }

    /// Puts a rule set in force. Cached denials were decided under the old
    /// rules, so they go.
    pub(super) fn install(&self, set: RuleSet) {
        self.inner.rules.store(Arc::new(set));
        // After the store: a plan made from a generation is made from its
        // rule set or a later one (see `replan`).
        self.inner.generation.fetch_add(1, Ordering::Release);
        if let Some(denials) = &self.inner.denials {
            denials.clear();
        }
    }

    // ----- checks -----

    /// Whether the caller `target_id` (`user:ID`, `service:ID`, `ip:ADDR` or
    /// `key:ID`) may make one request under rule `rule_id`; charges the rule's
    /// counter when it may.
    ///
    /// Returns `false` for an unparsable caller, an unknown rule or a rule
    /// that does not apply to this caller (use [`check`](Self::check) to tell
    /// these apart). A store failure is answered by the failure policy.
    pub async fn is_allowed(&self, target_id: &str, rule_id: &str) -> bool {
        let Ok(caller) = Caller::parse(target_id) else {
            return false;
        };
        self.check(caller, rule_id)
            .await
            .is_ok_and(|verdict| verdict.allowed())
    }

    /// Checks one request of cost 1 against one rule.
    ///
    /// A `*` rule counts this caller separately, a global rule counts all
    /// callers together, and a user or service rule applies only to that
    /// caller (otherwise [`Error::RuleNotApplicable`]).
    pub async fn check(&self, caller: Caller<'_>, rule_id: &str) -> Result<Verdict, Error> {
        self.run(caller, RuleSelection::One(rule_id).into(), 1, true)
            .await
    }

    /// Checks one request of `cost` against one rule.
    pub async fn check_cost(
        &self,
        caller: Caller<'_>,
        rule_id: &str,
        cost: u32,
    ) -> Result<Verdict, Error> {
        self.run(caller, RuleSelection::One(rule_id).into(), cost, true)
            .await
    }

    /// Checks one request of `cost` against several named rules, atomically.
    /// Every rule must exist and apply to the caller.
    pub async fn check_rules(
        &self,
        caller: Caller<'_>,
        rule_ids: &[&str],
        cost: u32,
    ) -> Result<Verdict, Error> {
        self.run(caller, RuleSelection::Named(rule_ids).into(), cost, true)
            .await
    }

    /// Checks one request of cost 1 against every rule that applies to the
    /// caller, atomically:
    ///
    /// 1. every global rule;
    /// 2. among the `*` rules and the rules naming this user or service, the
    ///    ones with the highest [`priority`](Rule::priority) (ties all apply).
    ///    By default a user or service rule has priority
    ///    [`Rule::SPECIFIC_PRIORITY`] and a `*` rule 0, so a specific rule
    ///    replaces the wildcard for its caller.
    ///
    /// With no applicable rule the request is admitted and nothing is charged.
    pub async fn check_all(&self, caller: Caller<'_>) -> Result<Verdict, Error> {
        self.run(caller, RuleSelection::Applicable.into(), 1, true)
            .await
    }

    /// [`check_all`](Self::check_all) for a request of `cost`.
    pub async fn check_all_cost(&self, caller: Caller<'_>, cost: u32) -> Result<Verdict, Error> {
        self.run(caller, RuleSelection::Applicable.into(), cost, true)
            .await
    }

    /// Checks one request of `cost` on a route that names its `*` rules:
    /// every global rule, the named `*` rules, and every rule naming this
    /// caller, prioritised as in [`check_all`](Self::check_all) — so a rule
    /// for one user replaces the route's wildcard rules for that user, and
    /// `*` rules that the route does not name do not apply. A route naming
    /// a rule this instance does not have is answered by the default
    /// failure policy (counted in
    /// [`UNKNOWN_RULE_CHECKS`](crate::telemetry::UNKNOWN_RULE_CHECKS), logged
    /// once per id), as a route check of a [`RuleChoice`] is.
    pub async fn check_route(
        &self,
        caller: Caller<'_>,
        route_rules: &[&str],
        cost: u32,
    ) -> Result<Verdict, Error> {
        let result = self
            .run(caller, RuleSelection::Route(route_rules).into(), cost, true)
            .await;
        self.unknown_rule_answer(result)
    }

    /// A route check's result, with `Err(UnknownRule)` answered by the
    /// default failure policy (see [`UnknownRules`]).
    #[inline]
    fn unknown_rule_answer(&self, result: Result<Verdict, Error>) -> Result<Verdict, Error> {
        self.inner.unknown_rules.answer(
            result,
            self.inner.failure_policy,
            self.inner.fail_closed_retry_after,
        )
    }

    /// What [`check`](Self::check) would answer now, without charging. A store
    /// failure is returned as an error (no failure policy applies).
    pub async fn peek(&self, caller: Caller<'_>, rule_id: &str) -> Result<Verdict, Error> {
        self.run(caller, RuleSelection::One(rule_id).into(), 1, false)
            .await
    }

    /// Clears the caller's counter for one rule (for a global rule:
    /// everyone's), and this instance's cached denials. With a shared rule
    /// store, the reset is announced as a new rules version (no rule
    /// changes), so every instance drops its cached denials too.
    pub async fn reset(&self, caller: Caller<'_>, rule_id: &str) -> Result<(), Error> {
        let rules = self.inner.rules.load_full();
        let selected = select(&rules, caller, Selector::<&str>::One(rule_id))?;
        let keys = Keys::new(&self.inner.key_prefix, &selected);
        let keys: SmallVec<[&[u8]; 2]> = keys.iter().collect();
        self.with_timeout(self.inner.store.reset(&keys)).await?;
        if let Some(denials) = &self.inner.denials {
            denials.clear();
        }
        // Units reserved before the reset were charged to the old counter;
        // spending them now would add to the fresh one's burst.
        for (rule, _) in &selected {
            if let Some(reservations) = &rule.reservations {
                reservations.clear();
            }
        }
        // Other instances drop their cached denials when they hear of a new
        // rules version.
        if let Some(store) = &self.inner.rule_store {
            self.write_shared(store, RuleWrite::Touch).await?;
        }
        Ok(())
    }

    /// Runs a store call under the per-check timeout. The timer is armed
    /// only if the call does not finish on its first poll: a store that
    /// answers at once (the in-memory one) costs no timer registration.
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

    /// Checks one request of `cost` against the rules `selection` names —
    /// the one entry point behind [`check`](Self::check),
    /// [`check_rules`](Self::check_rules), [`check_all`](Self::check_all)
    /// and [`check_route`](Self::check_route), for adapters that pick the
    /// rules per route.
    pub async fn check_selection(
        &self,
        caller: Caller<'_>,
        selection: RuleSelection<'_>,
        cost: u32,
    ) -> Result<Verdict, Error> {
        self.run(caller, selection.into(), cost, true).await
    }

    /// [`check_selection`](Self::check_selection) for the rules an adapter
    /// keeps as a [`RuleChoice`] (its ids are read where they are, not
    /// first collected into a list).
    pub async fn check_choice(
        &self,
        caller: Caller<'_>,
        choice: &RuleChoice,
        cost: u32,
    ) -> Result<Verdict, Error> {
        // An owned plan: the check may wait for the store.
        let plan = choice.plan().get().load_full();
        if let Some(selected) = self.planned(choice, plan.as_deref(), caller, cost) {
            return self.run_selected(caller, &selected, cost, true).await;
        }
        let result = self.run(caller, choice.selector(), cost, true).await;
        self.unknown_rule_answer(result)
    }

    /// The rules of `caller`'s check from `choice`'s plan, or `None` when
    /// the check takes the general path: the plan does not cover it, or it
    /// was made from other rules (then a new one is made for the next
    /// checks).
    #[inline]
    fn planned<'p, 'c>(
        &self,
        choice: &RuleChoice,
        plan: Option<&'p Plan>,
        caller: Caller<'c>,
        cost: u32,
    ) -> Option<Selected<'p, 'c>> {
        let generation = self.inner.generation.load(Ordering::Acquire);
        match plan.filter(|plan| plan.is_current(self.inner.id, generation)) {
            Some(plan) => plan.selected(caller, cost),
            None => {
                self.replan(choice);
                None
            }
        }
    }

    /// Resolves `choice` against the rules in force and keeps the plan in
    /// it for the next checks.
    #[cold]
    fn replan(&self, choice: &RuleChoice) {
        // The generation first: if the rules change in between, the plan
        // is labelled with the older generation and simply made again.
        let generation = self.inner.generation.load(Ordering::Acquire);
        let rules = self.inner.rules.load_full();
        let selector = choice.selector();
        let picks_caller_rules = matches!(selector, Selector::Applicable | Selector::Route(_));
        // A caller with no rules of its own: a key never has any.
        let selected = select(&rules, Caller::Key(b""), selector).ok();
        let plan = Plan::new(
            self.inner.id,
            generation,
            Arc::clone(&rules),
            selected.as_ref(),
            picks_caller_rules,
        );
        choice.plan().get().store(Some(Arc::new(plan)));
    }

    /// The verdict of [`check_selection`](Self::check_selection) computed
    /// right here, without a future, when the store answers in place (the
    /// in-memory store does: see [`Store::try_check_now`]); `None` when the
    /// check has to wait for the store — then nothing was charged, and the
    /// caller awaits `check_selection` instead.
    ///
    /// HTTP adapters call this first, so that a check on an in-memory store
    /// costs no allocation of a future and no task wake-up.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ratelimit_core::{Caller, DistributedRateLimiter, LimiterConfig, MemoryStore, RuleSelection, Target};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ratelimit_core::Error> {
    /// let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())));
    /// limiter.add_rule("api", Target::Each, 1, std::time::Duration::from_secs(1)).await?;
    /// let check = |limiter: &DistributedRateLimiter| {
    ///     limiter.try_check_now(Caller::user("7"), RuleSelection::One("api"), 1)
    /// };
    /// assert!(check(&limiter).expect("the in-memory store answers in place")?.allowed());
    /// assert!(!check(&limiter).expect("the in-memory store answers in place")?.allowed());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn try_check_now(
        &self,
        caller: Caller<'_>,
        selection: RuleSelection<'_>,
        cost: u32,
    ) -> Option<Result<Verdict, Error>> {
        self.try_check(caller, selection.into(), cost)
    }

    /// [`try_check_now`](Self::try_check_now) for the rules an adapter keeps
    /// as a [`RuleChoice`]; `None` when the caller has to await
    /// [`check_choice`](Self::check_choice) instead.
    #[inline]
    pub fn try_check_choice(
        &self,
        caller: Caller<'_>,
        choice: &RuleChoice,
        cost: u32,
    ) -> Option<Result<Verdict, Error>> {
        if self.inner.breaker.state() == CircuitState::Open {
            return None;
        }
        // No `.await` follows: the plan is held until the verdict.
        let plan = choice.plan().get().load();
        if let Some(selected) = self.planned(choice, plan.as_deref(), caller, cost) {
            return self.try_check_selected(caller, &selected, cost);
        }
        self.try_check(caller, choice.selector(), cost)
            .map(|result| self.unknown_rule_answer(result))
    }

    #[inline]
    fn try_check<S: AsRef<str>>(
        &self,
        caller: Caller<'_>,
        selector: Selector<'_, S>,
        cost: u32,
    ) -> Option<Result<Verdict, Error>> {
        // While the circuit is open the breaker decides who probes; leave
        // that to the asynchronous path (when closed, `permit` is `Call`
        // and has no side effect, so skipping it here changes nothing).
        if self.inner.breaker.state() == CircuitState::Open {
            return None;
        }
        // No `.await` follows: the snapshot is held until the verdict.
        let rules = self.inner.rules.load();
        let selected = match prepare(&rules, caller, selector, cost) {
            Preparation::Ready(selected) => selected,
            Preparation::Answered(answer) => return Some(answer),
        };
        self.try_check_selected(caller, &selected, cost)
    }

    /// [`try_check`](Self::try_check) once the rules are selected (by
    /// [`prepare`] or a [`Plan`]).
    #[inline]
    fn try_check_selected(
        &self,
        caller: Caller<'_>,
        selected: &Selected<'_, '_>,
        cost: u32,
    ) -> Option<Result<Verdict, Error>> {
        let keys = Keys::new(&self.inner.key_prefix, selected);
        let prepared = Prepared {
            selected,
            keys: &keys,
        };
        // The deny cache is asked only when there is one: calls that find
        // none still cost the hot path of a limiter without it.
        let denials = self.inner.denials.is_some();
        if denials && let Some(verdict) = self.cached_denial(prepared, cost, true) {
            return Some(Ok(verdict));
        }
        if prepared.has_batches() {
            return self.try_check_batched_now(caller, prepared, cost);
        }
        // Filled in place: returned from a function, the items were copied.
        let mut items = SmallVec::new();
        prepared.push_items(cost, &mut items);
        let asked = self.inner.denials.as_ref().map(Denials::ask);
        let result = self.inner.store.try_check_now(&items)?;
        // Built where it is returned: a verdict made first and then wrapped
        // in `Some` was copied once more.
        let answer = Some(self.settle(caller, selected, &items, Permit::Call, result, true));
        if denials && let Some(verdict) = &answer {
            self.remember(verdict, prepared, asked);
        }
        answer
    }

    /// A denial the deny cache can answer without the store, counted.
    fn cached_denial(
        &self,
        prepared: Prepared<'_, '_, '_>,
        cost: u32,
        charge: bool,
    ) -> Option<Verdict> {
        let denials = self.inner.denials.as_ref()?;
        let verdict = denials.answer(prepared.selected, prepared.keys.iter(), cost)?;
        if charge {
            for (rule, _) in prepared.selected {
                if verdict.decisions().iter().any(|d| d.rule == *rule.id()) {
                    rule.counters.count(telemetry::Outcome::Denied);
                }
            }
        }
        Some(verdict)
    }

    /// Lets the deny cache learn from a store's denial.
    fn remember(
        &self,
        verdict: &Result<Verdict, Error>,
        prepared: Prepared<'_, '_, '_>,
        asked: Option<super::deny_cache::Asked>,
    ) {
        if let (Some(denials), Some(asked), Ok(verdict)) = (&self.inner.denials, asked, verdict) {
            denials.remember(verdict, &prepared.keys.iter(), asked);
        }
    }

    async fn run<S: AsRef<str> + Sync>(
        &self,
        caller: Caller<'_>,
        selector: Selector<'_, S>,
        cost: u32,
        charge: bool,
    ) -> Result<Verdict, Error> {
        // An owned snapshot: the check may wait for the store.
        let rules = self.inner.rules.load_full();
        let selected = match prepare(&rules, caller, selector, cost) {
            Preparation::Ready(selected) => selected,
            Preparation::Answered(answer) => return answer,
        };
        self.run_selected(caller, &selected, cost, charge).await
    }

    /// [`run`](Self::run) once the rules are selected (by [`prepare`] or a
    /// [`Plan`]).
    async fn run_selected(
        &self,
        caller: Caller<'_>,
        selected: &Selected<'_, '_>,
        cost: u32,
        charge: bool,
    ) -> Result<Verdict, Error> {
        let keys = Keys::new(&self.inner.key_prefix, selected);
        let prepared = Prepared {
            selected,
            keys: &keys,
        };
        // Before the breaker: a cached denial holds whether or not the store
        // answers now.
        if let Some(verdict) = self.cached_denial(prepared, cost, charge) {
            return Ok(verdict);
        }
        if charge && prepared.has_batches() {
            return self.run_batched(caller, prepared, cost).await;
        }
        let items = prepared.items(cost);
        let store = &self.inner.store;
        let permit = self.inner.breaker.permit();
        if permit == Permit::Skip {
            let result = Err(Error::CircuitOpen);
            return self.settle(caller, prepared.selected, &items, permit, result, charge);
        }
        let asked = self.inner.denials.as_ref().map(Denials::ask);
        let verdict = if !charge {
            let result = self.with_timeout(store.peek(&items)).await;
            self.settle(caller, prepared.selected, &items, permit, result, charge)
        } else if let Some(result) = store.try_check_now(&items) {
            // A store that answers in place needs no future, no timer and
            // no timing.
            self.settle(caller, prepared.selected, &items, permit, result, charge)
        } else {
            let started = quanta::Instant::now();
            let result = self.awaited_check(&items).await;
            self.inner.store_duration.record(started.elapsed());
            let verdict = self.settle(caller, prepared.selected, &items, permit, result, charge);
            self.inner.check_duration.record(started.elapsed());
            verdict
        };
        self.remember(&verdict, prepared, asked);
        verdict
    }

    /// [`run`](Self::run) for a check with a rule in hot-key mode (see
    /// [`Rule::with_batch`]): units held here pay for what they can, the
    /// store is asked (reserving more) for the rest.
    async fn run_batched(
        &self,
        caller: Caller<'_>,
        prepared: Prepared<'_, '_, '_>,
        cost: u32,
    ) -> Result<Verdict, Error> {
        let batched = match self.plan_batches(prepared, cost) {
            BatchPlan::Ask(batched) => batched,
            BatchPlan::Answered(verdict) => return Ok(verdict),
        };
        let items = prepared.items(cost);
        let store_items = store_items(&items, &batched);
        let permit = self.inner.breaker.permit();
        if permit == Permit::Skip {
            give_back(prepared, &batched);
            let result = Err(Error::CircuitOpen);
            return self.settle(caller, prepared.selected, &items, permit, result, true);
        }
        let asked = self.inner.denials.as_ref().map(Denials::ask);
        let started = quanta::Instant::now();
        let result = match self.inner.store.try_check_now(&store_items) {
            Some(result) => result,
            None => self.awaited_check(&store_items).await,
        };
        self.inner.store_duration.record(started.elapsed());
        let result = finish_batched(prepared, &batched, result);
        let verdict = self.settle(caller, prepared.selected, &items, permit, result, true);
        self.inner.check_duration.record(started.elapsed());
        self.remember(&verdict, prepared, asked);
        verdict
    }

    /// [`try_check_now`](Self::try_check_now) for a check with a rule in
    /// hot-key mode.
    fn try_check_batched_now(
        &self,
        caller: Caller<'_>,
        prepared: Prepared<'_, '_, '_>,
        cost: u32,
    ) -> Option<Result<Verdict, Error>> {
        let batched = match self.plan_batches(prepared, cost) {
            BatchPlan::Ask(batched) => batched,
            BatchPlan::Answered(verdict) => return Some(Ok(verdict)),
        };
        let items = prepared.items(cost);
        let store_items = store_items(&items, &batched);
        let asked = self.inner.denials.as_ref().map(Denials::ask);
        let Some(result) = self.inner.store.try_check_now(&store_items) else {
            // The awaited path takes them again.
            give_back(prepared, &batched);
            return None;
        };
        let result = finish_batched(prepared, &batched, result);
        let verdict = self.settle(
            caller,
            prepared.selected,
            &items,
            Permit::Call,
            result,
            true,
        );
        self.remember(&verdict, prepared, asked);
        Some(verdict)
    }

    /// Takes units for each rule in hot-key mode. Answers at once when the
    /// units pay for every rule (admitted), or when a rule has no unit and
    /// waits for a batch (denied).
    fn plan_batches(&self, prepared: Prepared<'_, '_, '_>, cost: u32) -> BatchPlan {
        let now = self.inner.clock.now_micros();
        let mut waiting: SmallVec<[(usize, u64, u64); 1]> = SmallVec::new();
        let steps = prepared
            .selected
            .iter()
            .zip(prepared.keys.iter())
            .enumerate()
            .map(|(i, ((rule, _), key))| match &rule.reservations {
                None => Step::Store { reserve: 0 },
                Some(reservations) => match reservations.take(key, cost, now) {
                    Take::Spent { units, tat } => Step::Local { units, tat },
                    Take::Ask { reserve } => Step::Store { reserve },
                    Take::Wait { until, tat } => {
                        waiting.push((i, until, tat));
                        Step::Store { reserve: 0 }
                    }
                },
            })
            .collect();
        let batched = Batched {
            asked_at: now,
            steps,
        };
        if waiting.is_empty() {
            return match all_local(prepared, &batched) {
                Some(verdict) => BatchPlan::Answered(verdict),
                None => BatchPlan::Ask(batched),
            };
        }
        give_back(prepared, &batched);
        let decisions: SmallVec<[RuleDecision; 2]> = waiting
            .iter()
            .filter_map(|&(i, until, tat)| {
                let (rule, _) = prepared.selected.get(i)?;
                rule.counters.count(telemetry::Outcome::Denied);
                Some(RuleDecision {
                    rule: rule.id().clone(),
                    shadow: false,
                    decision: reservation::local_decision(rule.quota(), tat, now, Some(until)),
                })
            })
            .collect();
        let retry_after = decisions
            .iter()
            .map(|d| d.decision.retry_after())
            .max()
            .unwrap_or_default();
        BatchPlan::Answered(Verdict {
            allowed: false,
            source: Source::Batch,
            decisions,
            retry_after,
            error: None,
        })
    }

    /// The store call of a check that waits for the store, in its own
    /// (boxed) future: its timer and span stay out of the in-place path.
    fn awaited_check<'s>(
        &'s self,
        items: &'s [CheckItem<'s>],
    ) -> Pin<Box<dyn Future<Output = Result<Outcome, Error>> + Send + 's>> {
        let span = tracing::debug_span!("ratelimit.store", keys = items.len());
        Box::pin(
            self.with_timeout(self.inner.store.check(items))
                .instrument(span),
        )
    }

    /// What every check does with the store's answer: hold the store to
    /// answering for what it was asked, tell the breaker, and let the
    /// failure policy answer a failed check. Always inlined: as a call it
    /// returned the verdict through one more copy.
    #[inline(always)]
    fn settle(
        &self,
        caller: Caller<'_>,
        selected: &Selected<'_, '_>,
        items: &[CheckItem<'_>],
        permit: Permit,
        result: Result<Outcome, Error>,
        charge: bool,
    ) -> Result<Verdict, Error> {
        let breaker = &self.inner.breaker;
        // A store that answers for other items than it was asked about is
        // broken. (Checked in place: re-wrapping the outcome in a new
        // `Result` copied it twice on every check.)
        let mut result = result;
        if let Ok(outcome) = &result
            && outcome.decisions.len() != items.len()
        {
            result = Err(Error::InvalidResponse(format!(
                "{} decisions for {} items",
                outcome.decisions.len(),
                items.len()
            )));
        }
        let failed = matches!(&result, Err(error) if error.is_store_failure());
        if permit != Permit::Skip {
            let changed = if failed {
                breaker.on_failure(permit)
            } else {
                breaker.on_success(permit)
            };
            if let Some(state) = changed {
                telemetry::circuit_changed(state);
            }
        }
        if failed {
            if let Err(error) = &result {
                self.store_failed(error);
            }
        } else if self.inner.failing.load(Ordering::Relaxed)
            && self.inner.failing.swap(false, Ordering::Relaxed)
        {
            tracing::info!("rate limit store answers again");
        }
        // Built where it is returned (a verdict made first and then wrapped
        // in `Ok` was copied once more).
        let answer = match result {
            // By reference: moving the outcome out would copy it.
            Ok(ref outcome) => {
                if charge {
                    for ((rule, _), decision) in selected.iter().zip(&outcome.decisions) {
                        let outcome =
                            telemetry::outcome(Source::Store, rule.is_shadow(), decision.allowed());
                        rule.counters.count(outcome);
                    }
                }
                Ok(from_outcome(Source::Store, selected, outcome, None))
            }
            Err(error) if charge && failed => Ok(self.on_failure(selected, items, error)),
            Err(error) => Err(error),
        };
        if let Ok(verdict) = &answer {
            tracing::debug!(
                %caller,
                allowed = verdict.allowed(),
                source = ?verdict.source(),
                rules = selected.len(),
                "rate limit check"
            );
        }
        answer
    }

    /// Reports a store failure: counted by kind, a warning when the store
    /// starts failing, a debug event for each further failure.
    fn store_failed(&self, error: &Error) {
        telemetry::store_error(error);
        if matches!(error, Error::CircuitOpen) {
            return;
        }
        if self.inner.failing.load(Ordering::Relaxed)
            || self.inner.failing.swap(true, Ordering::Relaxed)
        {
            tracing::debug!(%error, "rate limit store failed");
        } else {
            tracing::warn!(%error, "rate limit store failed; the failure policy answers");
        }
    }

    /// Answers a check the store could not, by the rules' failure policies.
    fn on_failure(
        &self,
        selected: &Selected<'_, '_>,
        items: &[CheckItem<'_>],
        error: Error,
    ) -> Verdict {
        let error = Arc::new(error);
        let policy_of = |rule: &Rule| rule.failure_policy().unwrap_or(self.inner.failure_policy);
        let enforced = || selected.iter().filter(|(rule, _)| !rule.is_shadow());

        let count_all = |outcome| {
            for (rule, _) in selected {
                rule.counters.count(outcome);
            }
        };

        if enforced().any(|(rule, _)| policy_of(rule) == FailurePolicy::FailClosed) {
            count_all(telemetry::Outcome::FailedClosed);
            let retry = self.inner.fail_closed_retry_after;
            return verdict(Source::FailClosed, false, &[], &[], retry, Some(error));
        }

        let fallback: SmallVec<[usize; 4]> = selected
            .iter()
            .enumerate()
            .filter(|(_, (rule, _))| {
                !rule.is_shadow() && policy_of(rule) == FailurePolicy::LocalFallback
            })
            .map(|(i, _)| i)
            .collect();
        if !fallback.is_empty() {
            let picked: Selected<'_, '_> = fallback
                .iter()
                .filter_map(|&i| selected.get(i).cloned())
                .collect();
            let local: SmallVec<[CheckItem<'_>; 4]> = fallback
                .iter()
                .filter_map(|&i| items.get(i).copied())
                .collect();
            // The local store only fails when full; then fail open.
            if let Ok(outcome) = self.inner.fallback.check_now(&local) {
                for (i, (rule, _)) in selected.iter().enumerate() {
                    rule.counters.count(if fallback.contains(&i) {
                        telemetry::Outcome::Fallback
                    } else {
                        telemetry::Outcome::FailedOpen
                    });
                }
                return from_outcome(Source::Fallback, &picked, &outcome, Some(error));
            }
        }
        count_all(telemetry::Outcome::FailedOpen);
        verdict(
            Source::FailOpen,
            true,
            &[],
            &[],
            Duration::ZERO,
            Some(error),
        )
    }
}

/// The verdict when units held here pay for every rule of the check.
fn all_local(prepared: Prepared<'_, '_, '_>, batched: &Batched) -> Option<Verdict> {
    let mut decisions = SmallVec::with_capacity(batched.steps.len());
    for ((rule, _), step) in prepared.selected.iter().zip(&batched.steps) {
        let Step::Local { tat, .. } = step else {
            return None;
        };
        decisions.push(reservation::local_decision(
            rule.quota(),
            *tat,
            batched.asked_at,
            None,
        ));
    }
    for (rule, _) in prepared.selected {
        rule.counters.count(telemetry::Outcome::Allowed);
    }
    let outcome = Outcome {
        allowed: true,
        decisions,
    };
    Some(from_outcome(
        Source::Batch,
        prepared.selected,
        &outcome,
        None,
    ))
}

/// The items the store is asked about: those not paid for locally, with
/// the units to reserve.
fn store_items<'i>(items: &[CheckItem<'i>], batched: &Batched) -> SmallVec<[CheckItem<'i>; 4]> {
    items
        .iter()
        .zip(&batched.steps)
        .filter_map(|(item, step)| match step {
            Step::Local { .. } => None,
            Step::Store { reserve } => Some(CheckItem {
                reserve: *reserve,
                ..*item
            }),
        })
        .collect()
}

/// Returns the units a check took, when it is not admitted after all.
fn give_back(prepared: Prepared<'_, '_, '_>, batched: &Batched) {
    let rules = prepared.selected.iter().zip(prepared.keys.iter());
    for (((rule, _), key), step) in rules.zip(&batched.steps) {
        if let (Some(reservations), Step::Local { units, .. }) = (&rule.reservations, step) {
            reservations.give_back(key, units);
        }
    }
}

/// Puts a hot-key check's store answer (for the rules not paid for
/// locally) together with the local part: keeps the units the store
/// reserved, and gives back the spent ones when the check is not admitted.
fn finish_batched(
    prepared: Prepared<'_, '_, '_>,
    batched: &Batched,
    result: Result<Outcome, Error>,
) -> Result<Outcome, Error> {
    let expected = batched
        .steps
        .iter()
        .filter(|step| matches!(step, Step::Store { .. }))
        .count();
    let outcome = match result {
        Ok(outcome) if outcome.decisions.len() == expected => outcome,
        Ok(outcome) => {
            give_back(prepared, batched);
            return Err(Error::InvalidResponse(format!(
                "{} decisions for {expected} items",
                outcome.decisions.len()
            )));
        }
        Err(error) => {
            give_back(prepared, batched);
            return Err(error);
        }
    };
    if !outcome.allowed {
        give_back(prepared, batched);
    }
    let mut answered = outcome.decisions.iter();
    let mut decisions = SmallVec::with_capacity(batched.steps.len());
    let rules = prepared.selected.iter().zip(prepared.keys.iter());
    for (((rule, _), key), step) in rules.zip(&batched.steps) {
        match step {
            Step::Local { tat, .. } => decisions.push(reservation::local_decision(
                rule.quota(),
                *tat,
                batched.asked_at,
                None,
            )),
            Step::Store { reserve } => {
                let Some(decision) = answered.next() else {
                    break;
                };
                // A check denied by another rule says nothing about this
                // counter's supply.
                if let Some(reservations) = &rule.reservations
                    && (outcome.allowed || !decision.allowed())
                {
                    reservations.stored(key, rule.quota(), batched.asked_at, decision, *reserve);
                }
                decisions.push(*decision);
            }
        }
    }
    Ok(Outcome {
        allowed: outcome.allowed,
        decisions,
    })
}

/// What every check does before asking the store: select the rules from
/// the snapshot the check holds (a rule change meanwhile applies from the
/// next check) and validate the cost — or answer at once when the store
/// need not be asked.
#[inline]
fn prepare<'r, 'c, S: AsRef<str>>(
    rules: &'r RuleSet,
    caller: Caller<'c>,
    selector: Selector<'_, S>,
    cost: u32,
) -> Preparation<'r, 'c> {
    let mut selected = match select(rules, caller, selector) {
        Ok(selected) => selected,
        Err(error) => return Preparation::Answered(Err(error)),
    };
    if cost == 0 {
        return Preparation::Answered(Err(Error::ZeroCost));
    }
    for (rule, _) in selected.iter().filter(|(rule, _)| !rule.is_shadow()) {
        if let Err(error) = rule.quota().check_cost(cost) {
            return Preparation::Answered(Err(error));
        }
    }
    // A shadow rule that could never admit this cost is left out: it
    // must not turn a request into an error.
    if selected.iter().any(|(rule, _)| rule.is_shadow()) {
        selected.retain(|(rule, _)| !rule.is_shadow() || rule.quota().check_cost(cost).is_ok());
    }
    if selected.is_empty() {
        return Preparation::Answered(Ok(verdict(
            Source::Store,
            true,
            &selected,
            &[],
            Duration::ZERO,
            None,
        )));
    }
    Preparation::Ready(selected)
}

/// The rules a check covers, with their counters.
fn select<'r, 'c, S: AsRef<str>>(
    rules: &'r RuleSet,
    caller: Caller<'c>,
    selector: Selector<'_, S>,
) -> Result<Selected<'r, 'c>, Error> {
    let one = |id: &str| {
        let rule = rules
            .get_active(id)
            .ok_or_else(|| Error::UnknownRule(id.to_owned()))?;
        let subject =
            rule.target()
                .subject_for(caller)
                .ok_or_else(|| Error::RuleNotApplicable {
                    rule: id.to_owned(),
                    caller: caller.to_string(),
                })?;
        Ok((rule, subject))
    };
    match selector {
        Selector::One(id) => {
            let mut selected = SmallVec::new();
            selected.push(one(id)?);
            Ok(selected)
        }
        Selector::Named(ids) => ids.iter().map(|id| one(id.as_ref())).collect(),
        Selector::Applicable => Ok(rules.applicable(caller)),
        Selector::Route(names) => rules.applicable_on_route(caller, names),
    }
}

// Always inlined, like `verdict`: as calls, each returned the verdict
// through one more copy.
#[inline(always)]
fn from_outcome(
    source: Source,
    selected: &Selected<'_, '_>,
    outcome: &Outcome,
    error: Option<Arc<Error>>,
) -> Verdict {
    let retry_after = if outcome.allowed {
        Duration::ZERO
    } else {
        selected
            .iter()
            .zip(&outcome.decisions)
            .filter(|((rule, _), d)| !rule.is_shadow() && !d.allowed())
            .map(|(_, d)| d.retry_after())
            .max()
            .unwrap_or(Duration::ZERO)
    };
    verdict(
        source,
        outcome.allowed,
        selected,
        &outcome.decisions,
        retry_after,
        error,
    )
}

#[inline(always)]
fn verdict(
    source: Source,
    allowed: bool,
    selected: &[(&ActiveRule, crate::Subject<'_>)],
    decisions: &[crate::Decision],
    retry_after: Duration,
    error: Option<Arc<Error>>,
) -> Verdict {
    let mut verdict = Verdict {
        allowed,
        source,
        decisions: SmallVec::new(),
        retry_after,
        error,
    };
    // Pushed, not collected (see `Prepared::items`).
    for ((rule, _), decision) in selected.iter().zip(decisions) {
        verdict.decisions.push(RuleDecision {
            rule: rule.id().clone(),
            shadow: rule.is_shadow(),
            decision: *decision,
        });
    }
    verdict
}
