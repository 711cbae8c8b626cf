//! [`FailurePolicy`]: what a check answers when the store cannot.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// What a check answers when the store fails or exceeds the per-check timeout.
///
/// A rule may carry its own policy; otherwise the limiter's default applies.
/// When a check spans several rules with different policies, the strictest
/// wins: any [`FailClosed`](Self::FailClosed) rule denies the request;
/// otherwise the [`LocalFallback`](Self::LocalFallback) rules are checked on
/// the local in-memory limiter; otherwise the request is admitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum FailurePolicy {
    /// Admit the request: availability over protection. The default, because
    /// an outage of the limiter's store should not become an outage of the
    /// service it protects.
    #[default]
    FailOpen,
    /// Deny the request: protection over availability (for expensive or
    /// abuse-prone routes such as login).
    FailClosed,
    /// Check the request against an in-memory limiter local to this
    /// instance. With a [`FleetSize`](crate::config::FleetSize) (a
    /// `RedisFleet` keeps one) each instance enforces its share of the
    /// quota — divided by the instances last seen alive — so the fleet
    /// stays within the rule when traffic is spread evenly; without one,
    /// each enforces the whole quota, and a fleet of N admits up to N times
    /// the rule while the store is down.
    LocalFallback,
}

impl FailurePolicy {
    /// The policy's name as written in configuration: `fail_open`,
    /// `fail_closed` or `local_fallback`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::FailOpen => "fail_open",
            Self::FailClosed => "fail_closed",
            Self::LocalFallback => "local_fallback",
        }
    }
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FailurePolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fail_open" => Ok(Self::FailOpen),
            "fail_closed" => Ok(Self::FailClosed),
            "local_fallback" => Ok(Self::LocalFallback),
            _ => Err(Error::InvalidPolicy(crate::error::shown(s))),
        }
    }
}
