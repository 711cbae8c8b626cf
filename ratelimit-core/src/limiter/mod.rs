//! The front doors: [`DistributedRateLimiter`] and [`RateLimiter`].

mod batch;
mod breaker;
mod changes;
mod check;
mod config;
mod deny_cache;
mod distributed;
mod failure;
mod fleet;
mod health;
mod keys;
mod pipeline;
mod plan;
mod reservation;
mod selection;
mod simple;
mod sync;
mod unknown_rule;
mod verdict;

pub use breaker::{CircuitBreakerConfig, CircuitState};
pub use config::LimiterConfig;
pub use deny_cache::DenyCache;
pub use distributed::DistributedRateLimiter;
pub use fleet::FleetSize;
pub use health::{Health, RuleSync};
pub(crate) use pipeline::Waiting;
pub(crate) use reservation::Reservations;
pub use selection::Rules;
pub(crate) use selection::Selector;
pub use simple::RateLimiter;
pub use sync::WeakLimiter;
pub use verdict::{RuleDecision, Source, Verdict};
