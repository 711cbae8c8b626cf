//! The check front doors: one rule, several, every rule that applies, a
//! route's rules, in place or awaited; peek and reset.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use smallvec::SmallVec;

use super::breaker::CircuitState;
use super::distributed::DistributedRateLimiter;
use super::keys::Keys;
use super::pipeline::*;
use super::plan::Plan;
use super::verdict::Verdict;
use super::{RuleChoice, RuleSelection, Selector};
use crate::rule_set::Selected;
use crate::rule_store::RuleWrite;
use crate::{Caller, Error};

impl DistributedRateLimiter {
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
    ///    ones with the highest [`priority`](crate::Rule::priority) (ties all apply).
    ///    By default a user or service rule has priority
    ///    [`Rule::SPECIFIC_PRIORITY`](crate::Rule::SPECIFIC_PRIORITY) and a `*` rule 0, so a specific rule
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
        self.store_call(self.inner.store.reset(&keys)).await?;
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
    pub(super) fn planned<'p, 'c>(
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
    pub(super) fn replan(&self, choice: &RuleChoice) {
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
    /// in-memory store does: see [`Store::try_check_now`](crate::Store::try_check_now)); `None` when the
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
}
