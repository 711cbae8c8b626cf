//! [`Plan`]: a [`Rules`](super::Rules) selection resolved against one rule
//! set, so that checks reuse the resolution until the rules change.
//!
//! Resolving a choice (looking its rules up by id, ordering them by
//! priority, testing each against the cost) cost an HTTP check more than
//! its store call on the in-memory store, and its answer changes only when
//! the rules do. So the limiter resolves a choice once for a caller that
//! has no rules of its own and shows every facet, keeps the answer in the
//! selection, and reuses it while the rule set it was made from is in
//! force: each rule with which facet it counts, so a check only picks its
//! identity's ids. Checks the plan does not cover (a caller with its own
//! rules, a cost some rule cannot take, a named rule whose facet the caller
//! lacks, a selection naming an unknown rule) take the general path, which
//! decides and reports exactly as before.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use smallvec::SmallVec;

use crate::identity::Facet;
use crate::key::Subject;
use crate::rule_set::{ActiveRule, Selected};
use crate::{Identity, RuleSet, Target};

/// Where a [`Rules`](super::Rules) keeps its plan; empty until its first
/// check.
#[derive(Debug, Default)]
pub(crate) struct PlanSlot(ArcSwapOption<Plan>);

impl PlanSlot {
    pub(super) fn get(&self) -> &ArcSwapOption<Plan> {
        &self.0
    }
}

/// Which counter a planned rule uses.
#[derive(Debug, Clone, Copy)]
enum Counts {
    /// The one a global rule shares.
    Global,
    /// The caller's, by its primary facet (a `*` rule).
    Primary,
    /// The caller's, by this facet (a `FACET:*` rule).
    Facet(Facet),
}

/// A selection's rules for callers without rules of their own, as
/// resolved against one rule set of one limiter.
#[derive(Debug)]
pub(super) struct Plan {
    /// The limiter this was resolved for (see `Inner::id`).
    limiter: u64,
    /// Its rules generation at the time (see `Inner::generation`).
    generation: u64,
    /// The rule set resolved against, to ask whether a caller has rules of
    /// its own.
    rules: Arc<RuleSet>,
    /// The rules in check order, each with the counter it uses. Empty when
    /// the selection could not be resolved: then every check takes the
    /// general path, which reports why.
    entries: SmallVec<[(Arc<ActiveRule>, Counts); 2]>,
    /// The largest cost every rule accepts; a larger one takes the general
    /// path (an error, or a shadow rule left out).
    max_cost: u32,
    /// Whether a user's or a service's own rules would change the answer
    /// (the selection picks caller rules, and the set has some).
    caller_rules: bool,
    /// Whether a rule whose facet the caller lacks is left out (a route or
    /// every applicable rule) rather than refused (named rules).
    skip_absent: bool,
}

impl Plan {
    /// An identity with every facet and no rules of its own (no rule names
    /// an empty id), to resolve a selection for.
    pub(super) fn probe() -> Identity<'static> {
        Identity::key(b"")
            .with_user(b"")
            .with_service(b"")
            .with_custom(b"")
            .with_ip(std::net::Ipv4Addr::UNSPECIFIED.into())
    }

    /// A plan from `selected`, the selection resolved for
    /// [`probe`](Self::probe) (`None` when it could not be resolved).
    pub(super) fn new(
        limiter: u64,
        generation: u64,
        rules: Arc<RuleSet>,
        selected: Option<&Selected<'_, '_>>,
        picks_caller_rules: bool,
    ) -> Self {
        let entries: SmallVec<[(Arc<ActiveRule>, Counts); 2]> = selected
            .into_iter()
            .flatten()
            .map(|(rule, _)| {
                let counts = match rule.target() {
                    Target::Global => Counts::Global,
                    Target::Each => Counts::Primary,
                    Target::Every(facet) => Counts::Facet(*facet),
                    // A rule naming a user or service is never selected
                    // for the probe.
                    Target::User(_) | Target::Service(_) => return None,
                };
                rules
                    .active(rule.id().as_str())
                    .map(|active| (active, counts))
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
            skip_absent: picks_caller_rules,
        }
    }

    /// The rule set this plan was made from.
    pub(super) fn rule_set(&self) -> &RuleSet {
        &self.rules
    }

    /// Whether this plan was made from the rules `limiter` has in force at
    /// `generation`.
    #[inline]
    pub(super) fn is_current(&self, limiter: u64, generation: u64) -> bool {
        self.limiter == limiter && self.generation == generation
    }

    /// The rules for `identity` checking at `cost`, or `None` when this
    /// plan does not cover the check.
    #[inline]
    pub(super) fn selected<'p, 'c>(
        &'p self,
        identity: &'c Identity<'_>,
        cost: u32,
    ) -> Option<Selected<'p, 'c>> {
        if cost == 0 || cost > self.max_cost {
            return None;
        }
        if self.caller_rules && self.rules.has_rules_of(identity) {
            return None;
        }
        let primary = identity.caller();
        let mut selected = Selected::new();
        for (rule, counts) in &self.entries {
            let caller = match *counts {
                Counts::Global => {
                    selected.push((&**rule, Subject::Global));
                    continue;
                }
                Counts::Primary => primary,
                Counts::Facet(facet) => match identity.facet(facet) {
                    Some(caller) => caller,
                    None if self.skip_absent => continue,
                    None => return None,
                },
            };
            selected.push((&**rule, Subject::Caller(caller)));
        }
        if selected.is_empty() {
            // No rule applies: the general path answers that.
            return None;
        }
        Some(selected)
    }
}
