//! [`Rules`]: which rules one check covers.

use std::sync::Arc;

use super::plan::PlanSlot;

/// Which rules a check covers: one rule, several, every rule that applies
/// to the caller, or a route's rules. Made once (per route, per scope) and
/// cloned cheaply; clones share what the limiter remembers of it.
///
/// | made with | checks |
/// |---|---|
/// | [`Rules::one`], [`Rules::named`] | exactly these rules; each must apply to the caller |
/// | [`Rules::applicable`] (the default) | every global rule, every `FACET:*` rule the caller's identity shows, and the caller's own rules: the `*` rules, or a rule naming the caller when its [`priority`](crate::Rule::priority) is higher |
/// | [`Rules::route`] | as `applicable`, but of the `*` and `FACET:*` rules only those the route names |
///
/// A `Rules` also keeps what it last resolved to (its *plan*: which rules,
/// in which order, up to which cost), so a check does not look its rules
/// up again until the rules change.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use ratelimit_core::{DistributedRateLimiter, Identity, LimiterConfig, MemoryStore, Rules, Target};
/// use ratelimit_core::identity::Facet;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ratelimit_core::Error> {
/// let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())));
/// limiter.add_rule("default", Target::Each, 10, Duration::from_secs(1)).await?;
/// // One login a minute per client address, whoever the user says they are.
/// limiter.add_rule("login", Target::Every(Facet::Ip), 1, Duration::from_secs(60)).await?;
///
/// let login = Rules::route(["login", "default"]);
/// let from = "203.0.113.9".parse().unwrap();
/// let first = limiter.check(&Identity::user("7").with_ip(from), &login, 1).await?;
/// assert!(first.allowed());
/// assert_eq!(first.decisions().len(), 2);
/// // Another user id from the same address: the address's login is spent.
/// let second = limiter.check(&Identity::user("8").with_ip(from), &login, 1).await?;
/// assert!(!second.allowed());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Rules {
    kind: Kind,
    plan: Arc<PlanSlot>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Applicable,
    Named(Arc<[String]>),
    Route(Arc<[String]>),
}

impl Rules {
    /// Every rule that applies to the caller.
    pub fn applicable() -> Self {
        Self::of(Kind::Applicable)
    }

    /// One rule; it must apply to the caller.
    pub fn one(rule_id: &str) -> Self {
        Self::named([rule_id])
    }

    /// These rules, atomically; each must apply to the caller.
    pub fn named<I, S>(rules: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::of(Kind::Named(ids(rules)))
    }

    /// A route's rules: every global rule, the `*` and `FACET:*` rules
    /// named here, and every rule naming the caller (a VIP's own rule
    /// replaces the route's `*` rules for them), atomically.
    pub fn route<I, S>(rules: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::of(Kind::Route(ids(rules)))
    }

    fn of(kind: Kind) -> Self {
        Self {
            kind,
            plan: Arc::default(),
        }
    }

    /// The selection as the limiter reads it (borrowing the ids: nothing is
    /// built per check).
    pub(crate) fn selector(&self) -> Selector<'_, String> {
        match &self.kind {
            Kind::Applicable => Selector::Applicable,
            Kind::Named(rules) => Selector::Named(rules),
            Kind::Route(rules) => Selector::Route(rules),
        }
    }

    /// Where the limiter keeps this selection's plan.
    pub(crate) fn plan(&self) -> &PlanSlot {
        &self.plan
    }
}

fn ids<S: AsRef<str>>(rules: impl IntoIterator<Item = S>) -> Arc<[String]> {
    rules.into_iter().map(|id| id.as_ref().to_owned()).collect()
}

impl Default for Rules {
    /// [`Rules::applicable`].
    fn default() -> Self {
        Self::applicable()
    }
}

/// Two selections are equal when they select the same rules (whatever each
/// remembers).
impl PartialEq for Rules {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

impl Eq for Rules {}

/// A selection as the limiter reads it: generic over how the ids are held,
/// so the front doors that name one rule build nothing per check.
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
