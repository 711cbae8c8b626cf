//! What a route check answers when it names a rule this instance does not
//! have: the failure policy, never an error.
//!
//! A route names its rules in code, and the rules live in a store that can
//! lose them (a Redis restarted without persistence) or an operator can
//! change. Refusing every request of such a route with a server error would
//! turn a rule-store incident into an outage, so the limiter's default
//! failure policy answers instead — as it does when the store fails. Each
//! such check is counted; each unknown id is logged once.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use smallvec::SmallVec;

use super::verdict::{Source, Verdict};
use crate::{Error, FailurePolicy, telemetry};

/// The most unknown ids remembered as already logged; past this, each is
/// logged again at debug level only.
const REMEMBERED: usize = 64;

/// The ids already logged as unknown.
#[derive(Debug, Default)]
pub(super) struct UnknownRules {
    logged: Mutex<Vec<String>>,
}

impl UnknownRules {
    /// Turns a check's `Err(UnknownRule)` into the verdict of `policy`
    /// (fail closed denies for `retry_after`; fail open and local fallback,
    /// which knows no quota for a rule it has not got, admit). Other results
    /// pass through.
    #[inline]
    pub(super) fn answer(
        &self,
        result: Result<Verdict, Error>,
        policy: FailurePolicy,
        retry_after: Duration,
    ) -> Result<Verdict, Error> {
        match result {
            Err(Error::UnknownRule(id)) => Ok(self.policy_verdict(id, policy, retry_after)),
            other => other,
        }
    }

    #[cold]
    fn policy_verdict(&self, id: String, policy: FailurePolicy, retry_after: Duration) -> Verdict {
        telemetry::unknown_rule(&id);
        let first = {
            let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
            let first = !logged.contains(&id);
            if first && logged.len() < REMEMBERED {
                logged.push(id.clone());
            }
            first
        };
        if first {
            tracing::warn!(
                rule = %id,
                policy = policy.as_str(),
                "a route names a rule this instance does not have; its failure policy answers"
            );
        } else {
            tracing::debug!(rule = %id, "unknown rule answered by the failure policy");
        }
        let closed = policy == FailurePolicy::FailClosed;
        Verdict {
            allowed: !closed,
            source: if closed {
                Source::FailClosed
            } else {
                Source::FailOpen
            },
            decisions: SmallVec::new(),
            retry_after: if closed { retry_after } else { Duration::ZERO },
            error: Some(Arc::new(Error::UnknownRule(id))),
        }
    }
}
