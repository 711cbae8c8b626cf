//! [`RuleSelection`]: which rules one check covers, and [`RuleChoice`],
//! its owned form.

use std::sync::Arc;

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
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuleChoice {
    /// Every rule that applies to the caller.
    Applicable,
    /// These rules, atomically; each must exist and apply.
    Named(Arc<[String]>),
    /// A route's `*` rules, plus the caller's own and the global ones.
    Route(Arc<[String]>),
}

impl RuleChoice {
    /// [`RuleChoice::Named`] from any list of ids.
    pub fn named<I, S>(rules: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::Named(rules.into_iter().map(Into::into).collect())
    }

    /// [`RuleChoice::Route`] from any list of ids.
    pub fn route<I, S>(rules: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::Route(rules.into_iter().map(Into::into).collect())
    }

    /// The selection this choice stands for, as the limiter reads it
    /// (borrowing the ids: nothing is built per check).
    pub(crate) fn selector(&self) -> Selector<'_, String> {
        match self {
            Self::Applicable => Selector::Applicable,
            Self::Named(rules) => Selector::Named(rules),
            Self::Route(rules) => Selector::Route(rules),
        }
    }
}

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
