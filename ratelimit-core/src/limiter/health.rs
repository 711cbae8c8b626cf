//! [`Health`]: how a limiter stands, for health checks and dashboards.

use super::breaker::CircuitState;
use crate::{Error, FailurePolicy};

/// How a limiter stands, from
/// [`DistributedRateLimiter::health`](crate::DistributedRateLimiter::health).
#[derive(Debug)]
#[non_exhaustive]
pub struct Health {
    /// Whether the store answered a harmless question within the timeout.
    pub store: Result<(), Error>,
    /// Whether checks reach the store (see
    /// [`CircuitBreakerConfig`](crate::config::CircuitBreakerConfig)).
    pub circuit: CircuitState,
    /// Where the rules stand with the rule store.
    pub rules: RuleSync,
    /// The version of the rules in force.
    pub rules_version: u64,
    /// The instances last seen alive, when the limiter keeps count (see
    /// [`FleetSize`](crate::config::FleetSize)).
    pub instances: Option<u32>,
    /// What answers for rules that name no failure policy of their own.
    pub failure_policy: FailurePolicy,
    /// The server the store uses now (see [`Store::node`](crate::Store::node)).
    pub node: Option<String>,
}

impl Health {
    /// Whether the limiter decides by its rules and store: the store
    /// answers, and the rules are local or the rule store's.
    pub fn is_healthy(&self) -> bool {
        self.store.is_ok() && matches!(self.rules, RuleSync::Local | RuleSync::Synced)
    }
}

/// Where a limiter's rules stand with its rule store (see
/// [`DistributedRateLimiter::health`](crate::DistributedRateLimiter::health)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleSync {
    /// No rule store: the rules are this instance's own.
    Local,
    /// The rule store has not answered yet: the seed rules are in force.
    Pending,
    /// The rules in force are the store's.
    Synced,
    /// The store lost the fleet's rules and they are not back yet: the
    /// rules last agreed on stay in force here.
    Restoring,
}

impl RuleSync {
    /// The state as a word, for health reports: `local`, `pending`,
    /// `synced` or `restoring`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Pending => "pending",
            Self::Synced => "synced",
            Self::Restoring => "restoring",
        }
    }
}
