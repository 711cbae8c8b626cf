//! The check pipeline behind every front door: select the rules, build the
//! keys, answer from the deny cache or ask the store (in place or awaited),
//! and turn the store's outcome into a verdict.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use smallvec::SmallVec;
use tracing::Instrument;

use super::Selector;
use super::breaker::{CircuitState, Permit};
use super::deny_cache::Denials;
use super::distributed::DistributedRateLimiter;
use super::keys::Keys;
use super::verdict::{RuleDecision, Source, Verdict};
use crate::rule_set::{ActiveRule, Selected};
use crate::store::{CheckItem, Outcome};
use crate::telemetry;
use crate::{Decision, Error, Identity, RuleSet, Store};

impl DistributedRateLimiter {
    #[inline]
    pub(super) fn try_check_general<S: AsRef<str>>(
        &self,
        identity: &Identity<'_>,
        selector: Selector<'_, S>,
        cost: u32,
    ) -> Result<Result<Verdict, Error>, Option<Box<Waiting>>> {
        // While the circuit is open the breaker decides who probes; leave
        // that to the asynchronous path (when closed, `permit` is `Call`
        // and has no side effect, so skipping it here changes nothing).
        if self.inner.breaker.state() == CircuitState::Open {
            return Err(None);
        }
        // No `.await` follows: the snapshot is held until the verdict.
        let rules = self.inner.rules.load();
        let selected = match prepare(&rules, identity, selector, cost) {
            Preparation::Ready(selected) => selected,
            Preparation::Answered(answer) => return Ok(answer),
        };
        self.try_check_selected(identity, &selected, cost, &rules)
    }

    /// [`try_check`](Self::try_check) once the rules are selected (by
    /// [`prepare`] or a [`Plan`]) from `rules`; when the store must be
    /// awaited (then nothing was charged), the rules and keys for the
    /// awaited check to use.
    #[inline]
    pub(super) fn try_check_selected(
        &self,
        identity: &Identity<'_>,
        selected: &Selected<'_, '_>,
        cost: u32,
        rules: &RuleSet,
    ) -> Result<Result<Verdict, Error>, Option<Box<Waiting>>> {
        let keys = Keys::new(&self.inner.key_prefix, selected);
        let prepared = Prepared {
            selected,
            keys: &keys,
        };
        // The deny cache is asked only when there is one: calls that find
        // none still cost the hot path of a limiter without it.
        let denials = self.inner.denials.is_some();
        if denials && let Some(verdict) = self.cached_denial(prepared, cost, true) {
            return Ok(Ok(verdict));
        }
        if prepared.has_batches() {
            return match self.try_check_batched_now(identity, prepared, cost) {
                Some(answer) => Ok(answer),
                None => Err(Waiting::boxed(rules, selected, keys)),
            };
        }
        // Filled in place, so the items are not moved again.
        let mut items = SmallVec::new();
        prepared.push_items(cost, &mut items);
        let asked = self.inner.denials.as_ref().map(Denials::ask);
        let Some(result) = self.inner.store.try_check_now(&items) else {
            drop(items);
            return Err(Waiting::boxed(rules, selected, keys));
        };
        // Built where it is returned, so the verdict is not moved again.
        let answer = Ok(self.settle(identity, selected, &items, Permit::Call, result, true));
        if denials && let Ok(verdict) = &answer {
            self.remember(verdict, prepared, asked);
        }
        answer
    }

    /// A denial the deny cache can answer without the store, counted.
    pub(super) fn cached_denial(
        &self,
        prepared: Prepared<'_, '_, '_>,
        cost: u32,
        charge: bool,
    ) -> Option<Verdict> {
        let denials = self.inner.denials.as_ref()?;
        let verdict = denials.answer(prepared.selected, prepared.keys.iter(), cost)?;
        if charge {
            for (rule, _) in prepared.selected {
                if verdict
                    .decisions()
                    .iter()
                    .any(|d| d.rule == *rule.id() && !d.decision.allowed())
                {
                    rule.counters.count(telemetry::Outcome::Denied);
                }
            }
        }
        Some(verdict)
    }

    /// Lets the deny cache learn from a store's denial.
    pub(super) fn remember(
        &self,
        verdict: &Result<Verdict, Error>,
        prepared: Prepared<'_, '_, '_>,
        asked: Option<super::deny_cache::Asked>,
    ) {
        if let (Some(denials), Some(asked), Ok(verdict)) = (&self.inner.denials, asked, verdict) {
            denials.remember(verdict, &prepared.keys.iter(), asked);
        }
    }

    pub(super) async fn run<S: AsRef<str> + Sync>(
        &self,
        identity: &Identity<'_>,
        selector: Selector<'_, S>,
        cost: u32,
        charge: bool,
    ) -> Result<Verdict, Error> {
        // An owned snapshot: the check may wait for the store.
        let rules = self.inner.rules.load_full();
        let selected = match prepare(&rules, identity, selector, cost) {
            Preparation::Ready(selected) => selected,
            Preparation::Answered(answer) => return answer,
        };
        self.run_selected(identity, &selected, cost, charge).await
    }

    /// [`run`](Self::run) once the rules are selected (by [`prepare`] or a
    /// [`Plan`]).
    pub(super) async fn run_selected(
        &self,
        identity: &Identity<'_>,
        selected: &Selected<'_, '_>,
        cost: u32,
        charge: bool,
    ) -> Result<Verdict, Error> {
        let keys = Keys::new(&self.inner.key_prefix, selected);
        self.run_keyed(identity, selected, &keys, cost, charge)
            .await
    }

    /// [`run_selected`](Self::run_selected) with the keys built already
    /// (by an attempt in place that found the store must be awaited).
    pub(super) async fn run_keyed(
        &self,
        identity: &Identity<'_>,
        selected: &Selected<'_, '_>,
        keys: &Keys,
        cost: u32,
        charge: bool,
    ) -> Result<Verdict, Error> {
        let prepared = Prepared { selected, keys };
        // Before the breaker: a cached denial holds whether or not the store
        // answers now.
        if let Some(verdict) = self.cached_denial(prepared, cost, charge) {
            return Ok(verdict);
        }
        if charge && prepared.has_batches() {
            return self.run_batched(identity, prepared, cost).await;
        }
        let items = prepared.items(cost);
        let store = &self.inner.store;
        let permit = self.inner.breaker.permit();
        if permit == Permit::Skip {
            let result = Err(Error::CircuitOpen);
            return self.settle(identity, prepared.selected, &items, permit, result, charge);
        }
        let asked = self.inner.denials.as_ref().map(Denials::ask);
        let verdict = if !charge {
            let result = self.store_call(store.peek(&items)).await;
            self.settle(identity, prepared.selected, &items, permit, result, charge)
        } else if let Some(result) = store.try_check_now(&items) {
            // A store that answers in place needs no future, no timer and
            // no timing.
            self.settle(identity, prepared.selected, &items, permit, result, charge)
        } else {
            let started = quanta::Instant::now();
            let result = self.awaited_check(&items).await;
            self.inner.store_duration.record(started.elapsed());
            let verdict = self.settle(identity, prepared.selected, &items, permit, result, charge);
            self.inner.check_duration.record(started.elapsed());
            verdict
        };
        self.remember(&verdict, prepared, asked);
        verdict
    }

    /// The store call of a check that waits for the store, in its own
    /// (boxed) future: its timer and span stay out of the in-place path.
    pub(super) fn awaited_check<'s>(
        &'s self,
        items: &'s [CheckItem<'s>],
    ) -> Pin<Box<dyn Future<Output = Result<Outcome, Error>> + Send + 's>> {
        let span = tracing::debug_span!("ratelimit.store", keys = items.len());
        Box::pin(
            self.store_call(self.inner.store.check(items))
                .instrument(span),
        )
    }

    /// What every check does with the store's answer: hold the store to
    /// answering for what it was asked, tell the breaker, and let the
    /// failure policy answer a failed check. Inlined into its callers so
    /// the verdict is built where they return it.
    #[inline(always)]
    pub(super) fn settle(
        &self,
        identity: &Identity<'_>,
        selected: &Selected<'_, '_>,
        items: &[CheckItem<'_>],
        permit: Permit,
        result: Result<Outcome, Error>,
        charge: bool,
    ) -> Result<Verdict, Error> {
        let breaker = &self.inner.breaker;
        // A store that answers for other items than it was asked about is
        // broken. (Checked in place, so the outcome is not re-wrapped.)
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
        // Built where it is returned, so the verdict is not moved again.
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
                %identity,
                allowed = verdict.allowed(),
                source = ?verdict.source(),
                rules = selected.len(),
                "rate limit check"
            );
        }
        answer
    }
}

/// A check the store could not answer in place, with what the attempt
/// prepared: its rules and their keys, so the awaited check builds neither
/// again.
pub(crate) struct Waiting {
    rules: SmallVec<[Arc<ActiveRule>; 2]>,
    keys: Keys,
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl Waiting {
    /// What an attempt over `selected` (from `rules`) left, with its `keys`.
    #[cold]
    pub(super) fn boxed(
        rules: &RuleSet,
        selected: &Selected<'_, '_>,
        keys: Keys,
    ) -> Option<Box<Self>> {
        let rules: SmallVec<[Arc<ActiveRule>; 2]> = selected
            .iter()
            .filter_map(|(rule, _)| rules.active(rule.id().as_str()))
            .collect();
        // Every rule is in the set it was selected from; if one were not,
        // the awaited check would start over rather than pair keys wrongly.
        (rules.len() == selected.len()).then(|| Box::new(Self { rules, keys }))
    }

    /// The rules as a check reads them. The counters' subjects are in the
    /// keys already, so none is needed.
    pub(super) fn selected(&self) -> Selected<'_, 'static> {
        self.rules
            .iter()
            .map(|rule| (&**rule, crate::key::Subject::Global))
            .collect()
    }

    pub(super) fn keys(&self) -> &Keys {
        &self.keys
    }
}

/// What [`prepare`] found.
pub(super) enum Preparation<'r, 'c> {
    /// Ask the store about these rules.
    Ready(Selected<'r, 'c>),
    /// The check's answer, without asking the store (an error, or no rule
    /// applies).
    Answered(Result<Verdict, Error>),
}

/// A check's rules and keys, ready for the store. Both live on the stack
/// of the function running the check; this only borrows them.
#[derive(Clone, Copy)]
pub(super) struct Prepared<'p, 'r, 'c> {
    pub(super) selected: &'p Selected<'r, 'c>,
    pub(super) keys: &'p Keys,
}

impl<'p> Prepared<'p, '_, '_> {
    /// The store's items: each rule's key, quota, lineage and the
    /// request's cost.
    #[inline(always)]
    pub(super) fn items(self, cost: u32) -> SmallVec<[CheckItem<'p>; 2]> {
        let mut items = SmallVec::new();
        self.push_items(cost, &mut items);
        items
    }

    /// [`items`](Self::items), pushed onto `items`.
    #[inline(always)]
    pub(super) fn push_items(self, cost: u32, items: &mut SmallVec<[CheckItem<'p>; 2]>) {
        // Pushed, not collected: for one or two items `SmallVec`'s
        // `collect` does more work than the pushes.
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
    pub(super) fn has_batches(&self) -> bool {
        self.selected
            .iter()
            .any(|(rule, _)| rule.reservations.is_some())
    }
}

/// What every check does before asking the store: select the rules from
/// the snapshot the check holds (a rule change meanwhile applies from the
/// next check) and validate the cost — or answer at once when the store
/// need not be asked.
#[inline]
pub(super) fn prepare<'r, 'c, S: AsRef<str>>(
    rules: &'r RuleSet,
    identity: &'c Identity<'_>,
    selector: Selector<'_, S>,
    cost: u32,
) -> Preparation<'r, 'c> {
    let mut selected = match select(rules, identity, selector) {
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
pub(super) fn select<'r, 'c, S: AsRef<str>>(
    rules: &'r RuleSet,
    identity: &'c Identity<'_>,
    selector: Selector<'_, S>,
) -> Result<Selected<'r, 'c>, Error> {
    let one = |id: &str| {
        let rule = rules
            .get_active(id)
            .ok_or_else(|| Error::UnknownRule(id.to_owned()))?;
        let subject =
            rule.target()
                .subject_for(identity)
                .ok_or_else(|| Error::RuleNotApplicable {
                    rule: id.to_owned(),
                    caller: identity.to_string(),
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
        Selector::Applicable => Ok(rules.applicable(identity)),
        Selector::Route(names) => rules.applicable_on_route(identity, names),
    }
}

// Inlined, like `verdict`, so the verdict is built where it is returned.
#[inline(always)]
pub(super) fn from_outcome(
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
pub(super) fn verdict(
    source: Source,
    allowed: bool,
    selected: &[(&ActiveRule, crate::key::Subject<'_>)],
    decisions: &[Decision],
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
