//! The front doors: [`DistributedRateLimiter`] and [`RateLimiter`].

mod config;
mod distributed;
mod simple;
mod verdict;

pub use config::LimiterConfig;
pub use distributed::DistributedRateLimiter;
pub use simple::RateLimiter;
pub use verdict::{RuleDecision, Source, Verdict};
