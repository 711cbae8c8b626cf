//! Rule changes: adding, replacing, modifying and removing rules, locally
//! or through the shared rule store.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use super::distributed::DistributedRateLimiter;
use crate::rule_store::{RuleWrite, RuleWritten};
use crate::telemetry;
use crate::{Error, Quota, Rule, RuleId, RuleSet, RuleStore, Target};

/// # Rule changes
///
/// Changes apply from the next check, on every instance sharing a
/// [`RuleStore`](crate::RuleStore). A change of a rule's rate or burst keeps
/// each caller's usage (see [`Rule::succeeding`]).
impl DistributedRateLimiter {
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
        self.try_insert_rule(rule).await
    }

    /// Adds a fully configured rule; fails with [`Error::RuleExists`] if the
    /// id is taken.
    pub(crate) async fn try_insert_rule(&self, rule: Rule) -> Result<(), Error> {
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

    /// Adds a rule or replaces the rule with its id, and returns the replaced
    /// one, as `HashMap::insert` does.
    /// A replacement [succeeds](Rule::succeeding) the rule it replaces, so
    /// counters keep each caller's usage across a change of quota.
    ///
    /// With a shared rule store the replacement is a compare-and-set on the
    /// stored rule, retried a few times if other instances change it
    /// meanwhile; if they keep changing it, the rule is written
    /// unconditionally (an insert always applies), succeeding the rule last
    /// seen.
    pub async fn insert_rule(&self, rule: Rule) -> Result<Option<Rule>, Error> {
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
    pub(crate) async fn modify_rule(
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
    pub(super) async fn write_shared(
        &self,
        store: &Arc<dyn RuleStore>,
        change: RuleWrite,
    ) -> Result<RuleWritten, Error> {
        let written = self.with_timeout(store.write(change)).await?;
        self.refresh_rules().await?;
        Ok(written)
    }

    pub(super) fn change<T>(
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
}
