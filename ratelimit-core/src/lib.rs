//! Core of the `ratelimit` family: the GCRA algorithm, the [`Store`] trait,
//! rules, an in-memory store, and the two limiter front doors.
//!
//! - [`RateLimiter`]: one quota, any key — `allow(key) -> bool`.
//! - [`DistributedRateLimiter`]: named [`Rule`]s, changed at run time, each
//!   counting one facet of a request's [`Identity`] (its user, service, API
//!   key, client address or custom key; every caller; everyone together),
//!   checked atomically against a shared [`Store`] (Redis, via
//!   `ratelimit-redis`) with a [`FailurePolicy`] for
//!   when the store is down.
//! - [`http`]: what the web adapters (`ratelimit-tower`, `ratelimit-actix`)
//!   share — key extractors, the [`Gate`](http::Gate) a request passes, the
//!   `RateLimit` header fields.
//!
//! ```
//! use std::sync::Arc;
//! use ratelimit_core::{MemoryStore, RateLimiter};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ratelimit_core::Error> {
//! // 3 requests per second per key.
//! let limiter = RateLimiter::new(3, 1_000, Arc::new(MemoryStore::new()))?;
//! for _ in 0..3 {
//!     assert!(limiter.allow("alice").await);
//! }
//! assert!(!limiter.allow("alice").await);
//! assert!(limiter.allow("bob").await);
//! # Ok(())
//! # }
//! ```
//!
//! Time is integer microseconds throughout; see [`gcra`] for the algorithm
//! and [`Quota`] for what a valid rate is.

#[cfg(feature = "admin")]
pub mod admin;
mod caller;
mod client_ip;
pub mod clock;
pub mod config;
mod decision;
mod error;
pub mod gcra;
pub mod health;
pub mod http;
pub mod identity;
mod key;
mod limiter;
mod memory;
mod policy;
mod quota;
mod rule;
mod rule_id;
mod rule_set;
pub mod rule_store;
pub mod store;
mod target;
pub mod telemetry;
pub mod verdict;

pub use error::Error;
pub use identity::Identity;
pub use limiter::{DistributedRateLimiter, LimiterConfig, RateLimiter, Rules, Verdict};
pub use memory::MemoryStore;
pub use quota::Quota;
pub use rule::Rule;
pub use rule_id::RuleId;
pub use rule_store::RuleStore;
pub use store::Store;
pub use target::Target;

// Crate-internal paths for items public in their modules.
pub(crate) use clock::{Clock, SystemClock};
pub(crate) use config::{FailurePolicy, KeyPrefix};
pub(crate) use decision::Decision;
pub(crate) use rule_set::RuleSet;
