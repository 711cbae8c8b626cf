//! [`RuleSelection`]: which rules one check covers.

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
