//! [`RuleSelection`]: which rules one check covers, and [`RuleChoice`],
//! its owned form.

use std::sync::Arc;

use super::plan::PlanSlot;

/// Which rules one check covers — the argument of
/// [`DistributedRateLimiter::check_selection`](crate::DistributedRateLimiter::check_selection)
/// and [`try_check_now`](crate::DistributedRateLimiter::try_check_now), for
/// adapters that pick the rules per route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuleSelection<'a> {
    /// One rule ([`check`](crate::DistributedRateLimiter::check)).
    One(&'a str),
    /// These rules, every one of which must exist and apply to the caller
    /// ([`check_rules`](crate::DistributedRateLimiter::check_rules)).
    Named(&'a [&'a str]),
    /// Every rule that applies to the caller
    /// ([`check_all`](crate::DistributedRateLimiter::check_all)).
    Applicable,
    /// A route's `*` rules, plus the caller's own and the global ones
    /// ([`check_route`](crate::DistributedRateLimiter::check_route)).
    Route(&'a [&'a str]),
}

/// An owned [`RuleSelection`], as an HTTP adapter keeps one per route or
/// scope (every adapter uses this one, so they resolve rules alike), and
/// checks with
/// [`check_choice`](crate::DistributedRateLimiter::check_choice) or
/// [`try_check_choice`](crate::DistributedRateLimiter::try_check_choice).
///
/// A choice also remembers what it last resolved to (its *plan*: which
/// rules, in which order, up to which cost), so that a check need not look
/// its rules up again until the rules change. Clones share that memory.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use ratelimit_core::{Caller, DistributedRateLimiter, LimiterConfig, MemoryStore, RuleChoice, Target};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ratelimit_core::Error> {
/// let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())));
/// limiter.add_rule("default", Target::Each, 10, Duration::from_secs(1)).await?;
/// limiter.add_rule("login", Target::Each, 1, Duration::from_secs(60)).await?;
///
/// let login = RuleChoice::route(["login", "default"]);
/// let first = limiter.check_choice(Caller::user("7"), &login, 1).await?;
/// assert!(first.allowed());
/// assert_eq!(first.decisions().len(), 2);
/// assert!(!limiter.check_choice(Caller::user("7"), &login, 1).await?.allowed());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RuleChoice {
    kind: ChoiceKind,
    plan: Arc<PlanSlot>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ChoiceKind {
    Applicable,
    Named(Arc<[String]>),
    Route(Arc<[String]>),
}

impl RuleChoice {
    /// Every rule that applies to the caller (what
    /// [`check_all`](crate::DistributedRateLimiter::check_all) checks).
    pub fn applicable() -> Self {
        Self::of(ChoiceKind::Applicable)
    }

    /// These rules, atomically; each must exist and apply to the caller
    /// (what [`check_rules`](crate::DistributedRateLimiter::check_rules)
    /// checks).
    pub fn named<I, S>(rules: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::of(ChoiceKind::Named(
            rules.into_iter().map(Into::into).collect(),
        ))
    }

    /// A route's `*` rules, plus the caller's own and the global ones (what
    /// [`check_route`](crate::DistributedRateLimiter::check_route) checks).
    pub fn route<I, S>(rules: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::of(ChoiceKind::Route(
            rules.into_iter().map(Into::into).collect(),
        ))
    }

    fn of(kind: ChoiceKind) -> Self {
        Self {
            kind,
            plan: Arc::default(),
        }
    }

    /// The selection this choice stands for, as the limiter reads it
    /// (borrowing the ids: nothing is built per check).
    pub(crate) fn selector(&self) -> Selector<'_, String> {
        match &self.kind {
            ChoiceKind::Applicable => Selector::Applicable,
            ChoiceKind::Named(rules) => Selector::Named(rules),
            ChoiceKind::Route(rules) => Selector::Route(rules),
        }
    }

    /// Where the limiter keeps this choice's plan.
    pub(crate) fn plan(&self) -> &PlanSlot {
        &self.plan
    }
}

impl Default for RuleChoice {
    fn default() -> Self {
        Self::applicable()
    }
}

/// Two choices are equal when they select the same rules (whatever each
/// remembers).
impl PartialEq for RuleChoice {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

impl Eq for RuleChoice {}

/// A [`RuleSelection`] or a [`RuleChoice`], as the limiter reads either:
/// generic over how the ids are held, so an adapter's owned ids are
/// checked without first being borrowed into a list of `&str`.
#[derive(Debug)]
pub(crate) enum Selector<'a, S> {
    One(&'a str),
    Named(&'a [S]),
    Applicable,
    Route(&'a [S]),
}

// By hand: a derive would ask `S: Copy`, and only references are held.
impl<S> Clone for Selector<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Selector<'_, S> {}

impl<'a> From<RuleSelection<'a>> for Selector<'a, &'a str> {
    fn from(selection: RuleSelection<'a>) -> Self {
        match selection {
            RuleSelection::One(id) => Self::One(id),
            RuleSelection::Named(ids) => Self::Named(ids),
            RuleSelection::Applicable => Self::Applicable,
            RuleSelection::Route(ids) => Self::Route(ids),
        }
    }
}
