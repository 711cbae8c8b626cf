//! How a limiter stands: [`Health`], from
//! [`DistributedRateLimiter::health`](crate::DistributedRateLimiter::health),
//! with the circuit breaker's [`CircuitState`] and where the rules stand
//! with their rule store ([`RuleSync`]).

pub use crate::limiter::{CircuitState, Health, RuleSync};
