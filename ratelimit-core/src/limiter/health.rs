//! [`Health`]: how a limiter stands, for health checks and dashboards.

use super::breaker::CircuitState;
use super::sync::RuleSync;
use crate::Error;

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
}

impl Health {
    /// Whether the limiter decides by its rules and store: the store
    /// answers, and the rules are local or the rule store's.
    pub fn is_healthy(&self) -> bool {
        self.store.is_ok() && matches!(self.rules, RuleSync::Local | RuleSync::Synced)
    }
}
