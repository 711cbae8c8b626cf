//! What a check answers when the store fails: the rules' failure policies.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use smallvec::SmallVec;

use super::distributed::DistributedRateLimiter;
use super::fleet::{FleetSize, share};
use super::pipeline::*;
use super::verdict::{Source, Verdict, every_rule};
use crate::rule_set::Selected;
use crate::store::CheckItem;
use crate::telemetry;
use crate::{Error, FailurePolicy, Rule};

impl DistributedRateLimiter {
    /// Reports a store failure: counted by kind, a warning when the store
    /// starts failing, a debug event for each further failure.
    pub(super) fn store_failed(&self, error: &Error) {
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
    pub(super) fn on_failure(
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
            return Verdict {
                allowed: false,
                source: Source::FailClosed,
                decisions: every_rule(selected, |_| None),
                retry_after: self.inner.fail_closed_retry_after,
                error: Some(error),
            };
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
            // A fleet's share of each quota, when the fleet is known.
            let instances = self.inner.fleet.as_ref().map_or(1, FleetSize::get);
            let local: SmallVec<[CheckItem<'_>; 4]> = fallback
                .iter()
                .filter_map(|&i| items.get(i).copied())
                .map(|item| CheckItem {
                    quota: share(&item.quota, instances),
                    ..item
                })
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
                let fallen = from_outcome(Source::Fallback, &picked, &outcome, Some(error));
                let known = |i| {
                    let at = fallback.iter().position(|&f| f == i)?;
                    outcome.decisions.get(at).copied()
                };
                return Verdict {
                    decisions: every_rule(selected, known),
                    ..fallen
                };
            }
        }
        count_all(telemetry::Outcome::FailedOpen);
        Verdict {
            allowed: true,
            source: Source::FailOpen,
            decisions: every_rule(selected, |_| None),
            retry_after: Duration::ZERO,
            error: Some(error),
        }
    }
}
