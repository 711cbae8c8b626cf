//! [`Verdict`]: the limiter's answer to one request.

use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;

use crate::rule_set::Selected;
use crate::{Decision, Error, RuleId};

/// Who decided a [`Verdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// The store answered (or no rule applied, so nothing had to be asked).
    Store,
    /// The store failed and the request was admitted (fail open).
    FailOpen,
    /// The store failed and the request was denied (fail closed).
    FailClosed,
    /// The store failed and the local fallback limiter decided.
    Fallback,
    /// The local [`DenyCache`](crate::config::DenyCache) denied the request: the
    /// store denied the same key earlier, and would deny it still.
    DenyCache,
    /// Hot-key mode answered without the store: units this instance had
    /// reserved admitted the request, or it was denied while the instance
    /// waits for the counter to have a batch again (see
    /// [`Rule::with_batch`](crate::Rule::with_batch)).
    Batch,
}

/// One rule's decision within a [`Verdict`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuleDecision {
    /// The rule.
    pub rule: RuleId,
    /// Whether the rule is a shadow rule (reported, never blocking).
    pub shadow: bool,
    /// What the rule says.
    pub decision: Decision,
}

/// The answer to "may this caller make this request now?".
#[derive(Debug, Clone)]
pub struct Verdict {
    pub(crate) allowed: bool,
    pub(crate) source: Source,
    pub(crate) decisions: SmallVec<[RuleDecision; 2]>,
    pub(crate) retry_after: Duration,
    pub(crate) error: Option<Arc<Error>>,
}

impl Verdict {
    /// Whether the request is admitted.
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// Who decided.
    pub fn source(&self) -> Source {
        self.source
    }

    /// Each checked rule's decision (empty when the store failed and the
    /// request was failed open or closed).
    pub fn decisions(&self) -> &[RuleDecision] {
        &self.decisions
    }

    /// For a denied request, how long until it could succeed: the longest
    /// wait among the denying rules (or the configured fail-closed delay).
    /// Zero when admitted.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The enforced decision a client most needs to see: when denied, the
    /// denying rule with the longest wait; when admitted, the rule with the
    /// fewest remaining requests.
    pub fn binding(&self) -> Option<&RuleDecision> {
        let enforced = self.decisions.iter().filter(|d| !d.shadow);
        if self.allowed {
            enforced.min_by_key(|d| d.decision.remaining())
        } else {
            enforced
                .filter(|d| !d.decision.allowed())
                .max_by_key(|d| d.decision.retry_after())
        }
    }

    /// The shadow rules that would have denied this request.
    pub fn shadow_denials(&self) -> impl Iterator<Item = &RuleDecision> {
        self.decisions
            .iter()
            .filter(|d| d.shadow && !d.decision.allowed())
    }

    /// The error that made a failure policy decide, if one did: the
    /// store's, or [`Error::UnknownRule`] for a route naming a rule the
    /// instance does not have.
    pub fn store_error(&self) -> Option<&Error> {
        self.error.as_deref()
    }
}

/// A decision for every enforced rule of `selected`, in order: `known(i)`
/// for the rules an answer knows of, and the rule rested (its whole burst
/// left) for the others — so a refusal lists the same rules in its header
/// fields whether the store, the deny cache, a batch or the failure policy
/// answered it.
pub(super) fn every_rule(
    selected: &Selected<'_, '_>,
    mut known: impl FnMut(usize) -> Option<Decision>,
) -> SmallVec<[RuleDecision; 2]> {
    let mut decisions = SmallVec::new();
    for (i, (rule, _)) in selected.iter().enumerate() {
        if rule.is_shadow() {
            continue;
        }
        let decision =
            known(i).unwrap_or_else(|| Decision::from_state(rule.quota(), true, 0, 0, 0));
        decisions.push(RuleDecision {
            rule: rule.id().clone(),
            shadow: false,
            decision,
        });
    }
    decisions
}

/// A denial answered without the store (by `source`) from `decisions`
/// (every enforced rule, see [`every_rule`]): it waits for the longest of
/// the denying rules.
pub(super) fn local_denial(source: Source, decisions: SmallVec<[RuleDecision; 2]>) -> Verdict {
    let retry_after = decisions
        .iter()
        .filter(|d| !d.decision.allowed())
        .map(|d| d.decision.retry_after())
        .max()
        .unwrap_or_default();
    Verdict {
        allowed: false,
        source,
        decisions,
        retry_after,
        error: None,
    }
}
