//! Hot-key mode's part of a check (see [`Rule::with_batch`](crate::Rule::with_batch)):
//! units held here pay for a rule, or the store is asked for a batch.

use smallvec::SmallVec;

use super::breaker::Permit;
use super::deny_cache::Denials;
use super::distributed::DistributedRateLimiter;
use super::pipeline::*;
use super::reservation::{self, Take, Units};
use super::verdict::{Source, Verdict, every_rule, local_denial};
use crate::store::{CheckItem, Outcome};
use crate::telemetry;
use crate::{Clock, Error, Identity, Store};

impl DistributedRateLimiter {
    /// [`run`](Self::run) for a check with a rule in hot-key mode (see
    /// [`Rule::with_batch`]): units held here pay for what they can, the
    /// store is asked (reserving more) for the rest.
    pub(super) async fn run_batched(
        &self,
        identity: &Identity<'_>,
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
            return self.settle(identity, prepared.selected, &items, permit, result, true);
        }
        let asked = self.inner.denials.as_ref().map(Denials::ask);
        let started = quanta::Instant::now();
        let result = match self.inner.store.try_check_now(&store_items) {
            Some(result) => result,
            None => self.awaited_check(&store_items).await,
        };
        self.inner.store_duration.record(started.elapsed());
        let result = finish_batched(prepared, &batched, result);
        let verdict = self.settle(identity, prepared.selected, &items, permit, result, true);
        self.inner.check_duration.record(started.elapsed());
        self.remember(&verdict, prepared, asked);
        verdict
    }

    /// [`try_check`](Self::try_check) for a check with a rule in
    /// hot-key mode.
    pub(super) fn try_check_batched_now(
        &self,
        identity: &Identity<'_>,
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
            identity,
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
    pub(super) fn plan_batches(&self, prepared: Prepared<'_, '_, '_>, cost: u32) -> BatchPlan {
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
        for &(i, _, _) in &waiting {
            if let Some((rule, _)) = prepared.selected.get(i) {
                rule.counters.count(telemetry::Outcome::Denied);
            }
        }
        let decisions = every_rule(prepared.selected, |i| {
            let &(_, until, tat) = waiting.iter().find(|(w, _, _)| *w == i)?;
            let (rule, _) = prepared.selected.get(i)?;
            Some(reservation::local_decision(
                rule.quota(),
                tat,
                now,
                Some(until),
            ))
        });
        BatchPlan::Answered(local_denial(Source::Batch, decisions))
    }
}

/// Hot-key mode's plan for one check: per selected rule, units spent from
/// this instance's reservations, or what to ask the store.
pub(super) struct Batched {
    /// The local clock, read before the store is asked.
    pub(super) asked_at: u64,
    pub(super) steps: SmallVec<[Step; 4]>,
}

/// What [`DistributedRateLimiter::plan_batches`] found.
pub(super) enum BatchPlan {
    /// Ask the store about the rules not paid for locally.
    Ask(Batched),
    /// Answered here: admitted by units held, or denied while a rule
    /// waits for a batch.
    Answered(Verdict),
}

pub(super) enum Step {
    /// Paid for by units held here.
    Local { units: Units, tat: u64 },
    /// Asked of the store, with this many units to reserve beyond the cost.
    Store { reserve: u32 },
}

/// The verdict when units held here pay for every rule of the check.
pub(super) fn all_local(prepared: Prepared<'_, '_, '_>, batched: &Batched) -> Option<Verdict> {
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
pub(super) fn store_items<'i>(
    items: &[CheckItem<'i>],
    batched: &Batched,
) -> SmallVec<[CheckItem<'i>; 4]> {
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
pub(super) fn give_back(prepared: Prepared<'_, '_, '_>, batched: &Batched) {
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
pub(super) fn finish_batched(
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
