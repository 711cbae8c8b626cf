//! [`Plan`]: a [`RuleChoice`](super::RuleChoice) resolved against one rule
//! set, so that checks reuse the resolution until the rules change.
//!
//! Resolving a choice (looking its rules up by id, ordering them by
//! priority, testing each against the cost) cost an HTTP check more than
//! its store call on the in-memory store, and its answer changes only when
//! the rules do. So the limiter resolves a choice once for a caller that
//! has no rules of its own, keeps the answer in the choice, and reuses it
//! while the rule set it was made from is in force. Checks the plan does
//! not cover (a caller with its own rules, a cost some rule cannot take, a
//! choice naming an unknown rule) take the general path, which decides and
//! reports exactly as before.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use smallvec::SmallVec;

use crate::key::Subject;
use crate::rule_set::{ActiveRule, Selected};
use crate::{Caller, RuleSet};

/// Where a [`RuleChoice`](super::RuleChoice) keeps its plan; empty until
/// its first check.
#[derive(Debug, Default)]
pub(crate) struct PlanSlot(ArcSwapOption<Plan>);

impl PlanSlot {
    pub(super) fn get(&self) -> &ArcSwapOption<Plan> {
        &self.0
    }
}

/// A choice's rules for callers without rules of their own, as resolved
/// against one rule set of one limiter.
#[derive(Debug)]
pub(super) struct Plan {
    /// The limiter this was resolved for (see `Inner::id`).
    limiter: u64,
    /// Its rules generation at the time (see `Inner::generation`).
    generation: u64,
    /// The rule set resolved against, to ask whether a caller has rules of
    /// its own.
    rules: Arc<RuleSet>,
    /// The rules in check order, each with whether it counts globally.
    /// Empty when the choice could not be resolved: then every check takes
    /// the general path, which reports why.
    entries: SmallVec<[(Arc<ActiveRule>, bool); 2]>,
    /// The largest cost every rule accepts; a larger one takes the general
    /// path (an error, or a shadow rule left out).
    max_cost: u32,
    /// Whether a user's or a service's own rules would change the answer
    /// (the choice picks caller rules, and the set has some).
    caller_rules: bool,
}

impl Plan {
    /// A plan from `selected`, the choice resolved for a caller with no
    /// rules of its own (`None` when it could not be resolved).
    pub(super) fn new(
        limiter: u64,
        generation: u64,
        rules: Arc<RuleSet>,
        selected: Option<&Selected<'_, '_>>,
        picks_caller_rules: bool,
    ) -> Self {
        let entries: SmallVec<[(Arc<ActiveRule>, bool); 2]> = selected
            .into_iter()
            .flatten()
            .map(|(rule, subject)| {
                rules
                    .active(rule.id().as_str())
                    .map(|active| (active, *subject == Subject::Global))
            })
            .collect::<Option<_>>()
            .unwrap_or_default();
        let max_cost = entries
            .iter()
            .map(|(rule, _)| rule.quota().burst())
            .min()
            .unwrap_or(0);
        let caller_rules = picks_caller_rules && rules.has_caller_rules();
        Self {
            limiter,
            generation,
            rules,
            entries,
            max_cost,
            caller_rules,
        }
    }

    /// Whether this plan was made from the rules `limiter` has in force at
    /// `generation`.
    #[inline]
    pub(super) fn is_current(&self, limiter: u64, generation: u64) -> bool {
        self.limiter == limiter && self.generation == generation
    }

    /// The rules for `caller` checking at `cost`, or `None` when this plan
    /// does not cover the check.
    #[inline]
    pub(super) fn selected<'p, 'c>(
        &'p self,
        caller: Caller<'c>,
        cost: u32,
    ) -> Option<Selected<'p, 'c>> {
        if cost == 0 || cost > self.max_cost {
            return None;
        }
        if self.caller_rules && self.rules.has_rules_of(caller) {
            return None;
        }
        let mut selected = Selected::new();
        for (rule, global) in &self.entries {
            let subject = if *global {
                Subject::Global
            } else {
                Subject::Caller(caller)
            };
            selected.push((&**rule, subject));
        }
        Some(selected)
    }
}
