//! What a [`DistributedRateLimiter`](crate::DistributedRateLimiter) is made
//! from: [`LimiterConfig`] (also at the crate root) and its parts — the
//! [`FailurePolicy`] for when the store is down, the [`KeyPrefix`] its keys
//! share, the [`CircuitBreakerConfig`] and the [`DenyCache`].

pub use crate::key::KeyPrefix;
pub use crate::limiter::{CircuitBreakerConfig, DenyCache, FleetSize, LimiterConfig};
pub use crate::policy::FailurePolicy;
