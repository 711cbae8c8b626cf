//! [`RuleSet`]: an immutable snapshot of the rules, indexed for lookups.

use std::collections::{BTreeMap, HashMap};
use std::ops::Deref;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::key::Subject;
use crate::limiter::Reservations;
use crate::telemetry::RuleCounters;
use crate::{Error, Identity, Rule, RuleId, Target};

/// The rules in force at one moment, with a version that grows with every
/// change. Limiters swap whole snapshots, so a check always sees one
/// consistent set and never waits for a change.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    version: u64,
    by_id: BTreeMap<RuleId, Arc<ActiveRule>>,
    global: Vec<Arc<ActiveRule>>,
    each: Vec<Arc<ActiveRule>>,
    /// The `FACET:*` rules.
    facets: Vec<Arc<ActiveRule>>,
    users: HashMap<Box<[u8]>, Vec<Arc<ActiveRule>>>,
    services: HashMap<Box<[u8]>, Vec<Arc<ActiveRule>>>,
}

/// A rule in force, with its metrics counters (registered when the set is
/// built, so a check only adds to them).
#[derive(Debug)]
pub(crate) struct ActiveRule {
    rule: Rule,
    pub(crate) counters: RuleCounters,
    /// Hot-key mode's units held by this instance (`None` when off). They
    /// live as long as this snapshot of the rule: a rule change drops them.
    pub(crate) reservations: Option<Reservations>,
}

impl ActiveRule {
    fn new(rule: Rule) -> Self {
        let counters = RuleCounters::register(rule.id());
        let reservations =
            (rule.batch() > 1 && !rule.is_shadow()).then(|| Reservations::new(rule.batch()));
        Self {
            rule,
            counters,
            reservations,
        }
    }
}

impl Deref for ActiveRule {
    type Target = Rule;

    fn deref(&self) -> &Rule {
        &self.rule
    }
}

/// The rules chosen for a check, borrowed from the snapshot the check
/// holds (no reference count touched per rule), with the counter each uses
/// for the caller.
///
/// Room for two inline, as in [`Verdict`](crate::Verdict) and
/// [`Outcome`](crate::store::Outcome): most checks cover one or two rules (a
/// route's own and a global one), and every move of these values copies the
/// whole inline array, so a larger array would slow the common checks to
/// spare the rare larger ones a heap allocation.
pub(crate) type Selected<'r, 'c> = SmallVec<[(&'r ActiveRule, Subject<'c>); 2]>;

impl RuleSet {
    /// An empty set at version 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set of `rules` at `version` (as loaded from a shared rule store). A
    /// later rule with the same id replaces an earlier one.
    pub fn from_rules(version: u64, rules: impl IntoIterator<Item = Rule>) -> Self {
        let by_id = rules
            .into_iter()
            .map(|rule| (rule.id().clone(), rule))
            .collect();
        Self::indexed(version, by_id)
    }

    /// The version: 0 for the empty set, one more after every change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The rule with this id.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.by_id.get(id).map(|active| &active.rule)
    }

    /// The rule with this id, with its counters.
    pub(crate) fn get_active(&self, id: &str) -> Option<&ActiveRule> {
        self.by_id.get(id).map(Arc::as_ref)
    }

    /// The rule `id` in force, shared (for a plan to hold).
    pub(crate) fn active(&self, id: &str) -> Option<Arc<ActiveRule>> {
        self.by_id.get(id).cloned()
    }

    /// Whether some rule targets one user or one service.
    pub(crate) fn has_caller_rules(&self) -> bool {
        !self.users.is_empty() || !self.services.is_empty()
    }

    /// Whether a rule targets this identity's user or service.
    pub(crate) fn has_rules_of(&self, identity: &Identity<'_>) -> bool {
        identity
            .user_id()
            .is_some_and(|id| self.users.contains_key(id))
            || identity
                .service_id()
                .is_some_and(|id| self.services.contains_key(id))
    }

    /// All rules, ordered by id.
    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.by_id.values().map(|active| &active.rule)
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// A copy with `rule` added or replacing the rule with its id.
    #[must_use]
    pub fn with_rule(&self, rule: Rule) -> Self {
        let mut by_id = self.rules_by_id();
        by_id.insert(rule.id().clone(), rule);
        Self::indexed(self.version.saturating_add(1), by_id)
    }

    /// A copy without the rule `id`, or `None` if there is no such rule.
    #[must_use]
    pub fn without_rule(&self, id: &str) -> Option<Self> {
        let mut by_id = self.rules_by_id();
        by_id.remove(id)?;
        Some(Self::indexed(self.version.saturating_add(1), by_id))
    }

    fn rules_by_id(&self) -> BTreeMap<RuleId, Rule> {
        self.by_id
            .iter()
            .map(|(id, active)| (id.clone(), active.rule.clone()))
            .collect()
    }

    /// Indexes `rules`; each gets its counters from the metrics recorder
    /// installed now.
    fn indexed(version: u64, rules: BTreeMap<RuleId, Rule>) -> Self {
        let mut set = Self {
            version,
            ..Self::default()
        };
        let by_id: BTreeMap<RuleId, Arc<ActiveRule>> = rules
            .into_iter()
            .map(|(id, rule)| (id, Arc::new(ActiveRule::new(rule))))
            .collect();
        for rule in by_id.values() {
            let list = match rule.target() {
                Target::Global => &mut set.global,
                Target::Each => &mut set.each,
                Target::Every(_) => &mut set.facets,
                Target::User(id) => set.users.entry(id.as_bytes().into()).or_default(),
                Target::Service(id) => set.services.entry(id.as_bytes().into()).or_default(),
            };
            list.push(Arc::clone(rule));
        }
        set.by_id = by_id;
        set
    }

    /// The rules that apply to `identity` when checking "everything that
    /// applies", with their counters:
    ///
    /// 1. every global rule (one counter shared by all callers);
    /// 2. every `FACET:*` rule whose facet the identity shows;
    /// 3. of the rules counting the caller itself — the wildcard `*` rules
    ///    and the rules naming its user or service — those with the highest
    ///    [`priority`](Rule::priority). Ties all apply.
    ///
    /// So, with default priorities, a rule for one user replaces the `*`
    /// rules for that user (a VIP gets their own limit instead of the common
    /// one), while global and per-facet rules (a login limit per client
    /// address) still count the VIP's requests. Give a user rule the
    /// wildcard's priority (0) to apply both instead.
    pub(crate) fn applicable<'c>(&self, identity: &'c Identity<'_>) -> Selected<'_, 'c> {
        self.select_for(identity, &self.facets.iter(), &self.each.iter())
    }

    /// Like [`applicable`](Self::applicable), but the only `*` and
    /// `FACET:*` rules considered are those named by a route: every global
    /// rule, the named wildcard rules, and every rule naming this very
    /// caller, prioritised as in `applicable`. Fails with
    /// [`Error::UnknownRule`] for an unknown name.
    pub(crate) fn applicable_on_route<'c, S: AsRef<str>>(
        &self,
        identity: &'c Identity<'_>,
        names: &[S],
    ) -> Result<Selected<'_, 'c>, Error> {
        let mut facets: SmallVec<[&Arc<ActiveRule>; 2]> = SmallVec::new();
        let mut wildcards: SmallVec<[&Arc<ActiveRule>; 2]> = SmallVec::new();
        for name in names {
            let name = name.as_ref();
            let rule = self
                .by_id
                .get(name)
                .ok_or_else(|| Error::UnknownRule(name.to_owned()))?;
            match rule.target() {
                Target::Each => wildcards.push(rule),
                Target::Every(_) => facets.push(rule),
                _ => {}
            }
        }
        Ok(self.select_for(
            identity,
            &facets.iter().copied(),
            &wildcards.iter().copied(),
        ))
    }

    fn select_for<'r, 'c>(
        &'r self,
        identity: &'c Identity<'_>,
        facets: &(impl Iterator<Item = &'r Arc<ActiveRule>> + Clone),
        wildcards: &(impl Iterator<Item = &'r Arc<ActiveRule>> + Clone),
    ) -> Selected<'r, 'c> {
        let mut selected = Selected::new();
        for rule in &self.global {
            selected.push((rule, Subject::Global));
        }
        for rule in facets.clone() {
            if let Some(subject) = rule.target().subject_for(identity) {
                selected.push((rule, subject));
            }
        }
        let user = identity.user_id().and_then(|id| self.users.get(id));
        let service = identity.service_id().and_then(|id| self.services.get(id));
        let per_caller = || {
            wildcards
                .clone()
                .chain(user.into_iter().flatten())
                .chain(service.into_iter().flatten())
        };
        if let Some(top) = per_caller().map(|rule| rule.priority()).max() {
            for rule in per_caller().filter(|rule| rule.priority() == top) {
                if let Some(subject) = rule.target().subject_for(identity) {
                    selected.push((rule, subject));
                }
            }
        }
        selected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Quota;

    fn rule(id: &str, target: &str) -> Rule {
        Rule::new(id, target.parse().unwrap(), Quota::per_second(1).unwrap()).unwrap()
    }

    fn ids(set: &RuleSet, identity: &Identity<'_>) -> Vec<String> {
        set.applicable(identity)
            .iter()
            .map(|(rule, _)| rule.id().to_string())
            .collect()
    }

    #[test]
    fn specific_rules_replace_the_wildcard_and_globals_always_apply() {
        let set = RuleSet::new()
            .with_rule(rule("default", "*"))
            .with_rule(rule("everyone", "global"))
            .with_rule(rule("vip", "user:42"))
            .with_rule(rule("svc", "service:42"));
        assert_eq!(set.version(), 4);
        assert_eq!(ids(&set, &Identity::user("1")), ["everyone", "default"]);
        assert_eq!(ids(&set, &Identity::user("42")), ["everyone", "vip"]);
        assert_eq!(ids(&set, &Identity::service("42")), ["everyone", "svc"]);
        assert_eq!(ids(&set, &Identity::key("42")), ["everyone", "default"]);
    }

    #[test]
    fn routes_scope_the_wildcards_but_not_the_caller_rules() {
        let set = RuleSet::new()
            .with_rule(rule("default", "*"))
            .with_rule(rule("login", "*"))
            .with_rule(rule("global", "global"))
            .with_rule(rule("vip", "user:42"));
        let on = |caller, names: &[&str]| -> Vec<String> {
            set.applicable_on_route(&caller, names)
                .unwrap()
                .iter()
                .map(|(rule, _)| rule.id().to_string())
                .collect()
        };
        assert_eq!(on(Identity::user("1"), &["default"]), ["global", "default"]);
        assert_eq!(
            on(Identity::user("1"), &["login", "default"]),
            ["global", "login", "default"]
        );
        assert_eq!(on(Identity::user("42"), &["default"]), ["global", "vip"]);
        assert_eq!(
            on(Identity::user("42"), &["login", "default"]),
            ["global", "vip"]
        );
        assert!(matches!(
            set.applicable_on_route(&Identity::user("1"), &["nope"]),
            Err(Error::UnknownRule(_))
        ));
    }

    #[test]
    fn facet_rules_count_their_facet_whatever_the_priorities() {
        let set = RuleSet::new()
            .with_rule(rule("default", "*"))
            .with_rule(rule("login", "ip:*"))
            .with_rule(rule("keys", "key:*"))
            .with_rule(rule("vip", "user:42"));
        let ip = "10.0.0.1".parse().unwrap();
        // The address is counted for a VIP too; no key, no `keys`.
        assert_eq!(
            ids(&set, &Identity::user("42").with_ip(ip)),
            ["login", "vip"]
        );
        assert_eq!(
            ids(&set, &Identity::user("1").with_ip(ip).with_key("k")),
            ["keys", "login", "default"]
        );
        let on_login: Vec<String> = set
            .applicable_on_route(&Identity::user("1").with_ip(ip), &["login", "default"])
            .unwrap()
            .iter()
            .map(|(rule, _)| rule.id().to_string())
            .collect();
        assert_eq!(on_login, ["login", "default"]);
        let elsewhere: Vec<String> = set
            .applicable_on_route(&Identity::user("1").with_ip(ip), &["default"])
            .unwrap()
            .iter()
            .map(|(rule, _)| rule.id().to_string())
            .collect();
        assert_eq!(elsewhere, ["default"]);
    }

    #[test]
    fn equal_priorities_stack() {
        let set = RuleSet::new()
            .with_rule(rule("default", "*"))
            .with_rule(rule("extra", "user:42").with_priority(0));
        assert_eq!(ids(&set, &Identity::user("42")), ["default", "extra"]);
        let set = set.with_rule(rule("low", "user:42").with_priority(-1));
        assert_eq!(ids(&set, &Identity::user("42")), ["default", "extra"]);
    }

    #[test]
    fn replace_and_remove() {
        let set = RuleSet::new().with_rule(rule("a", "*"));
        let set = set.with_rule(rule("a", "global"));
        assert_eq!(set.len(), 1);
        assert_eq!(set.get("a").unwrap().target(), &Target::Global);
        assert!(set.without_rule("b").is_none());
        let set = set.without_rule("a").unwrap();
        assert!(set.is_empty());
        assert_eq!(set.version(), 3);
        assert!(ids(&set, &Identity::user("1")).is_empty());
    }
}
