//! [`RuleSelection`]: which rules one check covers, and [`RuleChoice`],
//! its owned form.

use std::sync::Arc;

use smallvec::SmallVec;

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
/// scope (every adapter uses this one, so they resolve rules alike).
///
/// ```
/// use ratelimit_core::{RuleChoice, RuleSelection};
///
/// let login = RuleChoice::route(["login", "default"]);
/// let ids = login.ids();
/// assert_eq!(ids.selection(), RuleSelection::Route(&["login", "default"]));
/// assert_eq!(RuleChoice::Applicable.ids().selection(), RuleSelection::Applicable);
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

    /// The ids borrowed for one check (no allocation for up to four); its
    /// [`selection`](RuleIds::selection) is what the limiter takes.
    pub fn ids(&self) -> RuleIds<'_> {
        let ids = match self {
            Self::Applicable => SmallVec::new(),
            Self::Named(rules) | Self::Route(rules) => rules.iter().map(String::as_str).collect(),
        };
        RuleIds { choice: self, ids }
    }
}

/// A [`RuleChoice`]'s ids, borrowed for one check.
#[derive(Debug)]
pub struct RuleIds<'a> {
    choice: &'a RuleChoice,
    ids: SmallVec<[&'a str; 4]>,
}

impl RuleIds<'_> {
    /// The selection to check.
    pub fn selection(&self) -> RuleSelection<'_> {
        match self.choice {
            RuleChoice::Applicable => RuleSelection::Applicable,
            RuleChoice::Named(_) => RuleSelection::Named(&self.ids),
            RuleChoice::Route(_) => RuleSelection::Route(&self.ids),
        }
    }
}
