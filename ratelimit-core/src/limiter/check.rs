//! The check front doors: [`is_allowed`](DistributedRateLimiter::is_allowed),
//! [`check`](DistributedRateLimiter::check) and its in-place variant
//! [`try_check`](DistributedRateLimiter::try_check); peek and reset.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use smallvec::SmallVec;

use super::breaker::CircuitState;
use super::distributed::DistributedRateLimiter;
use super::keys::Keys;
use super::pipeline::Waiting;
use super::pipeline::*;
use super::plan::Plan;
use super::verdict::Verdict;
use super::{Rules, Selector};
use crate::rule_set::Selected;
use crate::rule_store::RuleWrite;
use crate::{Error, Identity};

/// # Checks
impl DistributedRateLimiter {
    /// Whether the caller `target_id` (`user:ID`, `service:ID`, `ip:ADDR` or
    /// `key:ID`) may make one request under rule `rule_id`; charges the rule's
    /// counter when it may.
    ///
    /// Returns `false` for an unparsable caller, an unknown rule or a rule
    /// that does not apply to this caller (use [`check`](Self::check) to tell
    /// these apart). A store failure is answered by the failure policy.
    pub async fn is_allowed(&self, target_id: &str, rule_id: &str) -> bool {
        let Ok(identity) = Identity::parse(target_id) else {
            return false;
        };
        self.run(&identity, Selector::<&str>::One(rule_id), 1, true)
            .await
            .is_ok_and(|verdict| verdict.allowed())
    }

    /// Checks one request of `cost` from `identity` against `rules`,
    /// atomically: admitted only if every rule admits it, and then charged
    /// to every rule.
    ///
    /// A store failure is answered by each rule's [failure
    /// policy](crate::FailurePolicy), and so is a rule this instance does
    /// not have (a rule store can lose rules; counted in
    /// [`UNKNOWN_RULE_CHECKS`](crate::telemetry::UNKNOWN_RULE_CHECKS),
    /// logged once per id). Errors are the caller's or the server's
    /// mistakes: a cost of 0 or above a rule's burst, a named rule that
    /// does not apply to this identity.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use ratelimit_core::{DistributedRateLimiter, Identity, LimiterConfig, MemoryStore, Rules, Target};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ratelimit_core::Error> {
    /// let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())));
    /// limiter.add_rule("api", Target::Each, 2, Duration::from_secs(1)).await?;
    /// let api = Rules::one("api");
    /// let alice = Identity::user("alice");
    /// assert!(limiter.check(&alice, &api, 2).await?.allowed());
    /// let denied = limiter.check(&alice, &api, 1).await?;
    /// assert!(!denied.allowed());
    /// assert!(denied.retry_after() > Duration::ZERO);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn check(
        &self,
        identity: &Identity<'_>,
        rules: &Rules,
        cost: u32,
    ) -> Result<Verdict, Error> {
        // An owned plan: the check may wait for the store.
        let plan = rules.plan().get().load_full();
        if let Some(selected) = self.planned(rules, plan.as_deref(), identity, cost) {
            return self.run_selected(identity, &selected, cost, true).await;
        }
        let result = self.run(identity, rules.selector(), cost, true).await;
        self.unknown_rule_answer(result)
    }

    /// The verdict of [`check`](Self::check) computed right here, without a
    /// future, when the store answers in place (the in-memory store does:
    /// see [`Store::try_check_now`](crate::Store::try_check_now)); `None`
    /// when the check has to wait for the store — then nothing was charged,
    /// and the caller awaits `check` instead.
    ///
    /// HTTP adapters call this first, so that a check on an in-memory store
    /// costs no allocation of a future and no task wake-up.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ratelimit_core::{DistributedRateLimiter, Identity, LimiterConfig, MemoryStore, Rules, Target};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ratelimit_core::Error> {
    /// let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())));
    /// limiter.add_rule("api", Target::Each, 1, std::time::Duration::from_secs(1)).await?;
    /// let (api, who) = (Rules::one("api"), Identity::user("7"));
    /// let check = || limiter.try_check(&who, &api, 1).expect("the in-memory store answers in place");
    /// assert!(check()?.allowed());
    /// assert!(!check()?.allowed());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn try_check(
        &self,
        identity: &Identity<'_>,
        rules: &Rules,
        cost: u32,
    ) -> Option<Result<Verdict, Error>> {
        self.try_check_or_wait(identity, rules, cost).ok()
    }

    /// What [`check`](Self::check) would answer now for a request of cost
    /// 1, without charging. A store failure and an unknown rule are
    /// returned as errors (no failure policy applies).
    pub async fn peek(&self, identity: &Identity<'_>, rules: &Rules) -> Result<Verdict, Error> {
        self.run(identity, rules.selector(), 1, false).await
    }

    /// Clears `identity`'s counters of `rules` (for a global rule:
    /// everyone's), and this instance's cached denials. With a shared rule
    /// store, the reset is announced as a new rules version (no rule
    /// changes), so every instance drops its cached denials too.
    pub async fn reset(&self, identity: &Identity<'_>, rules: &Rules) -> Result<(), Error> {
        let snapshot = self.inner.rules.load_full();
        let selected = select(&snapshot, identity, rules.selector())?;
        let keys = Keys::new(&self.inner.key_prefix, &selected);
        let keys: SmallVec<[&[u8]; 2]> = keys.iter().collect();
        if !keys.is_empty() {
            self.store_call(self.inner.store.reset(&keys)).await?;
        }
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
}

impl DistributedRateLimiter {
    /// [`try_check`](Self::try_check), or what the attempt prepared for
    /// the awaited check ([`check_waiting`](Self::check_waiting)): its
    /// rules and keys, unless it stopped before making them (an open
    /// circuit).
    #[inline]
    pub(crate) fn try_check_or_wait(
        &self,
        identity: &Identity<'_>,
        rules: &Rules,
        cost: u32,
    ) -> Result<Result<Verdict, Error>, Option<Box<Waiting>>> {
        if self.inner.breaker.state() == CircuitState::Open {
            return Err(None);
        }
        // No `.await` follows: the plan is held until the verdict.
        let plan = rules.plan().get().load();
        // `planned` answers only from a plan, so its rule set is at hand.
        if let Some(selected) = self.planned(rules, plan.as_deref(), identity, cost)
            && let Some(set) = plan.as_deref().map(Plan::rule_set)
        {
            return self.try_check_selected(identity, &selected, cost, set);
        }
        self.try_check_general(identity, rules.selector(), cost)
            .map(|result| self.unknown_rule_answer(result))
    }

    /// The awaited check of `identity` against `rules`, with what an
    /// attempt in place prepared (`None`: the whole check).
    pub(crate) async fn check_waiting(
        &self,
        identity: &Identity<'_>,
        rules: &Rules,
        cost: u32,
        waiting: Option<Box<Waiting>>,
    ) -> Result<Verdict, Error> {
        match waiting {
            Some(waiting) => {
                let selected = waiting.selected();
                self.run_keyed(identity, &selected, waiting.keys(), cost, true)
                    .await
            }
            None => self.check(identity, rules, cost).await,
        }
    }

    /// A check's result, with `Err(UnknownRule)` answered by the default
    /// failure policy (see [`UnknownRules`](super::unknown_rule)).
    #[inline]
    pub(super) fn unknown_rule_answer(
        &self,
        result: Result<Verdict, Error>,
    ) -> Result<Verdict, Error> {
        self.inner.unknown_rules.answer(
            result,
            self.inner.failure_policy,
            self.inner.fail_closed_retry_after,
        )
    }

    /// The rules of `identity`'s check from `rules`' plan, or `None` when
    /// the check takes the general path: the plan does not cover it, or it
    /// was made from other rules (then a new one is made for the next
    /// checks).
    #[inline]
    pub(super) fn planned<'p, 'c>(
        &self,
        rules: &Rules,
        plan: Option<&'p Plan>,
        identity: &'c Identity<'_>,
        cost: u32,
    ) -> Option<Selected<'p, 'c>> {
        let generation = self.inner.generation.load(Ordering::Acquire);
        match plan.filter(|plan| plan.is_current(self.inner.id, generation)) {
            Some(plan) => plan.selected(identity, cost),
            None => {
                self.replan(rules);
                None
            }
        }
    }

    /// Resolves `rules` against the rules in force and keeps the plan in
    /// it for the next checks.
    #[cold]
    pub(super) fn replan(&self, rules: &Rules) {
        // The generation first: if the rules change in between, the plan
        // is labelled with the older generation and simply made again.
        let generation = self.inner.generation.load(Ordering::Acquire);
        let snapshot = self.inner.rules.load_full();
        let selector = rules.selector();
        let picks_caller_rules = matches!(selector, Selector::Applicable | Selector::Route(_));
        let probe = Plan::probe();
        let selected = select(&snapshot, &probe, selector).ok();
        let plan = Plan::new(
            self.inner.id,
            generation,
            Arc::clone(&snapshot),
            selected.as_ref(),
            picks_caller_rules,
        );
        rules.plan().get().store(Some(Arc::new(plan)));
    }
}
