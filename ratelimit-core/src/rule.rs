//! [`Rule`]: a named quota for a target.

use std::time::Duration;

use crate::gcra::Lineage;
use crate::{Error, FailurePolicy, Quota, RuleId, Target};

/// A named quota applied to a [`Target`], with the knobs operators need.
///
/// ```
/// use ratelimit_core::{config::FailurePolicy, Quota, Rule, Target};
///
/// let login = Rule::new("login", Target::Each, Quota::per_minute(5)?)?
///     .with_failure_policy(FailurePolicy::FailClosed);
/// assert_eq!(login.id().as_str(), "login");
/// assert_eq!(login.priority(), 0);
///
/// let vip = Rule::new("vip", "user:42".parse()?, Quota::per_second(100)?)?;
/// assert_eq!(vip.priority(), Rule::SPECIFIC_PRIORITY);
/// # Ok::<(), ratelimit_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    id: RuleId,
    target: Target,
    quota: Quota,
    priority: Option<i32>,
    shadow: bool,
    failure_policy: Option<FailurePolicy>,
    batch: u32,
    lineage: Lineage,
}

impl Rule {
    /// The default priority of a rule for one user or service: higher than
    /// the wildcard's, so by default such a rule *replaces* the `*` rules for
    /// its caller (see [`Rules`](crate::Rules)).
    pub const SPECIFIC_PRIORITY: i32 = 10;

    /// A rule `id` limiting `target` to `quota`. Validates the id and the
    /// target's id.
    pub fn new(id: &str, target: Target, quota: Quota) -> Result<Self, Error> {
        let id = RuleId::new(id)?;
        target.validate()?;
        Ok(Self {
            id,
            target,
            quota,
            priority: None,
            shadow: false,
            failure_policy: None,
            batch: 0,
            lineage: Lineage::ORIGINAL,
        })
    }

    /// Sets the priority (see [`priority`](Self::priority)).
    #[must_use]
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// A shadow rule is counted but never blocks: a safe way to roll out a
    /// new limit and watch what it would do.
    #[must_use]
    pub fn with_shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// What this rule answers when the store fails, instead of the limiter's
    /// default.
    #[must_use]
    pub fn with_failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = Some(policy);
        self
    }

    /// Hot-key mode: each instance reserves up to `units` units per store
    /// call (beyond the request that asks) and spends them locally, without
    /// asking the store, while they are valid. 0 or 1 turns it off (the
    /// default). Meant for a rule whose one counter takes a large share of
    /// all checks, such as a [`Target::Global`] rule: it moves that
    /// counter's traffic off the store once it is busy.
    ///
    /// What it keeps and what it costs:
    ///
    /// - **Never more than the rule allows, fleet-wide.** A unit is taken
    ///   from the shared counter, and an instance spends it only before the
    ///   counter could have rested past it (each unit's deadline is measured
    ///   on the instance's clock from before its store call, so it errs
    ///   early); a unit not spent in time is dropped. Every admission thus
    ///   has its own GCRA slot, as with one check per request.
    /// - **Only while the counter is busy.** Units are handed out only while
    ///   the counter runs at least half its tolerance ahead (more than half
    ///   the burst in use; see [`gcra::extra_units`](crate::gcra::extra_units)),
    ///   so each can be held at least that long. Below that, checks go to
    ///   the store one by one, as without batches.
    /// - **Slightly fewer admissions.** Units held by an instance cannot be
    ///   spent by another, and units dropped (expired, or held when the rules
    ///   change) are lost; when the counter has fewer than `units` left, an
    ///   instance that has spent its units denies locally until a batch
    ///   fits. At any moment the fleet holds at most instances × `units`
    ///   units, which bounds the shortfall.
    ///
    /// Shadow rules ignore it.
    #[must_use]
    pub fn with_batch(mut self, units: u32) -> Self {
        self.batch = if units > 1 { units } else { 0 };
        self
    }

    /// The rule's batch size (see [`with_batch`](Self::with_batch)); 0 when
    /// hot-key mode is off.
    pub fn batch(&self) -> u32 {
        self.batch
    }

    /// The same rule with another quota. A quota of another rate or burst
    /// starts the rule's next [`Lineage`] revision, so its counters keep
    /// each caller's usage across the change.
    #[must_use]
    pub fn with_quota(mut self, quota: Quota) -> Self {
        self.lineage = self.lineage.succeeded_by(&self.quota, &quota);
        self.quota = quota;
        self
    }

    /// This rule as the successor of `previous` (the rule it replaces, with
    /// the same id): its lineage continues `previous`'s, as if `previous`'s
    /// quota had been changed to this rule's with
    /// [`with_quota`](Self::with_quota).
    #[must_use]
    pub fn succeeding(mut self, previous: &Rule) -> Self {
        self.lineage = previous.lineage.succeeded_by(&previous.quota, &self.quota);
        self
    }

    /// Which quotas the rule's counters were charged under (see
    /// [`Lineage`]).
    pub fn lineage(&self) -> Lineage {
        self.lineage
    }

    /// The rule's id.
    pub fn id(&self) -> &RuleId {
        &self.id
    }

    /// Whom the rule limits.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The rule's quota.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// The priority among the per-caller rules that apply to one caller: only
    /// those with the highest priority are enforced. Defaults to
    /// [`SPECIFIC_PRIORITY`](Self::SPECIFIC_PRIORITY) for a user or service
    /// rule and 0 otherwise. Global rules always apply, whatever their
    /// priority.
    pub fn priority(&self) -> i32 {
        self.priority.unwrap_or(if self.target.is_specific() {
            Self::SPECIFIC_PRIORITY
        } else {
            0
        })
    }

    /// The priority if one was set explicitly.
    pub fn explicit_priority(&self) -> Option<i32> {
        self.priority
    }

    /// Whether the rule is a shadow rule.
    pub fn is_shadow(&self) -> bool {
        self.shadow
    }

    /// The rule's own failure policy, if it has one.
    pub fn failure_policy(&self) -> Option<FailurePolicy> {
        self.failure_policy
    }

    /// The rule as one line of text (without its id), for rule stores:
    /// `1 LIMIT WINDOW_US BURST PRIORITY SHADOW POLICY TARGET`, with `-` for
    /// a default. The target comes last, so it may contain spaces. A rule
    /// with a [batch](Self::with_batch) is written as version 2, with the
    /// batch before the target; a rule whose quota changed as version 3,
    /// with the batch (0 for none) and its [`Lineage`] (revision, previous
    /// interval in µs, previous burst) before the target. Instances that
    /// predate a version refuse it rather than misread it.
    pub fn to_record(&self) -> String {
        fn or_dash(value: Option<impl ToString>) -> String {
            value.map_or_else(|| "-".to_owned(), |v| v.to_string())
        }
        let lineage = self.lineage;
        let (version, extra) = if !lineage.is_original() {
            (
                "3",
                format!(
                    " {} {} {} {}",
                    self.batch,
                    lineage.revision(),
                    lineage.previous_interval_micros().unwrap_or(0),
                    lineage.previous_burst()
                ),
            )
        } else if self.batch > 0 {
            ("2", format!(" {}", self.batch))
        } else {
            ("1", String::new())
        };
        format!(
            "{version} {} {} {} {} {} {}{extra} {}",
            self.quota.limit(),
            self.quota.window_micros(),
            or_dash(self.quota.has_explicit_burst().then(|| self.quota.burst())),
            or_dash(self.priority),
            u8::from(self.shadow),
            or_dash(self.failure_policy.map(|p| p.as_str())),
            self.target
        )
    }

    /// Parses a record written by [`to_record`](Self::to_record), validating
    /// everything again (a store may hold garbage).
    pub fn from_record(id: &str, record: &str) -> Result<Self, Error> {
        let bad = |reason: &'static str| Error::InvalidRecord {
            rule: id.chars().take(80).collect(),
            reason,
        };
        let version = record.split(' ').next().unwrap_or_default();
        let count = match version {
            "1" => 8,
            "2" => 9,
            "3" => 12,
            _ => return Err(bad("unknown record version")),
        };
        let mut fields = record.splitn(count, ' ').skip(1);
        let mut next = |what| fields.next().ok_or_else(|| bad(what));
        let limit: u32 = next("no limit")?.parse().map_err(|_| bad("bad limit"))?;
        let window: u64 = next("no window")?.parse().map_err(|_| bad("bad window"))?;
        let burst = match next("no burst")? {
            "-" => None,
            b => Some(b.parse::<u32>().map_err(|_| bad("bad burst"))?),
        };
        let priority = match next("no priority")? {
            "-" => None,
            p => Some(p.parse::<i32>().map_err(|_| bad("bad priority"))?),
        };
        let shadow = match next("no shadow flag")? {
            "0" => false,
            "1" => true,
            _ => return Err(bad("bad shadow flag")),
        };
        let policy = match next("no policy")? {
            "-" => None,
            p => Some(p.parse::<FailurePolicy>()?),
        };
        let batch = if version == "1" {
            0
        } else {
            next("no batch")?
                .parse::<u32>()
                .map_err(|_| bad("bad batch"))?
        };
        let lineage = if version == "3" {
            let revision = next("no revision")?
                .parse::<u16>()
                .map_err(|_| bad("bad revision"))?;
            let interval = next("no previous interval")?
                .parse::<u64>()
                .map_err(|_| bad("bad previous interval"))?;
            let burst = next("no previous burst")?
                .parse::<u32>()
                .map_err(|_| bad("bad previous burst"))?;
            Lineage::from_parts(revision, interval, burst).ok_or_else(|| bad("bad lineage"))?
        } else {
            Lineage::ORIGINAL
        };
        let target = Target::parse(next("no target")?)?;
        let quota = Quota::from_parts(limit, Duration::from_micros(window), burst)?;
        let mut rule = Self::new(id, target, quota)?
            .with_shadow(shadow)
            .with_batch(batch);
        rule.priority = priority;
        rule.failure_policy = policy;
        rule.lineage = lineage;
        Ok(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_and_without_a_batch() {
        let plain = Rule::new("api", Target::Each, Quota::per_second(10).unwrap())
            .unwrap()
            .with_priority(3);
        assert!(plain.to_record().starts_with("1 "));
        assert_eq!(Rule::from_record("api", &plain.to_record()).unwrap(), plain);

        let hot = Rule::new(
            "all",
            "user:a b".parse().unwrap(),
            Quota::per_second(10).unwrap(),
        )
        .unwrap()
        .with_batch(16);
        let record = hot.to_record();
        assert_eq!(record, "2 10 1000000 - - 0 - 16 user:a b");
        let back = Rule::from_record("all", &record).unwrap();
        assert_eq!(back, hot);
        assert_eq!(back.batch(), 16);
    }

    #[test]
    fn a_batch_of_one_is_no_batch_and_bad_records_are_refused() {
        let rule = Rule::new("r", Target::Global, Quota::per_second(1).unwrap()).unwrap();
        assert_eq!(rule.clone().with_batch(1).batch(), 0);
        assert_eq!(rule.with_batch(1).to_record(), "1 1 1000000 - - 0 - global");
        for bad in [
            "2 1 1000000 - - 0 - global",
            "2 1 1000000 - - 0 - x global",
            "3 1 1000000 - - 0 - 4 global",
        ] {
            assert!(Rule::from_record("r", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_changed_quota_is_recorded_with_its_lineage() {
        let rule = Rule::new("api", Target::Each, Quota::per_second(10).unwrap()).unwrap();
        let same = rule.clone().with_quota(Quota::per_second(10).unwrap());
        assert!(same.lineage().is_original());
        let lowered = rule.with_quota(Quota::per_second(5).unwrap());
        assert_eq!(lowered.lineage().revision(), 1);
        let record = lowered.to_record();
        assert_eq!(record, "3 5 1000000 - - 0 - 0 1 100000 10 *");
        assert_eq!(Rule::from_record("api", &record).unwrap(), lowered);
        for bad in [
            "3 5 1000000 - - 0 - 0 1000 100000 10 *",
            "3 5 1000000 - - 0 - 0 1 100000 0 *",
            "3 5 1000000 - - 0 - 0 1 x 10 *",
            "3 5 1000000 - - 0 - 0 1 100000 *",
        ] {
            assert!(Rule::from_record("api", bad).is_err(), "{bad}");
        }
        // A replacement continues the lineage of the rule it replaces.
        let fresh = Rule::new("api", Target::Each, Quota::per_second(20).unwrap()).unwrap();
        assert_eq!(fresh.succeeding(&lowered).lineage().revision(), 2);
    }
}
