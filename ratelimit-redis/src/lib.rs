//! A Redis [`Store`](ratelimit_core::Store) for `ratelimit`: every check — one
//! rule or several — is **one** script call that runs the GCRA on all its
//! counters atomically, on Redis's own clock.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use ratelimit_core::{DistributedRateLimiter, LimiterConfig, Target};
//! use ratelimit_redis::RedisStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ratelimit_core::Error> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379/").await?;
//! let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(store)));
//! limiter.add_rule("api", Target::Each, 100, Duration::from_secs(60)).await?;
//! let allowed = limiter.is_allowed("user:42", "api").await;
//! # let _ = allowed;
//! # Ok(())
//! # }
//! ```
//!
//! How it works:
//!
//! - The script (`gcra.lua`) reads each counter's TAT, tests every counter
//!   with the same rule as `ratelimit_core::store::evaluate`, and writes the charged
//!   TATs only when every enforced counter conforms. Redis runs a script
//!   atomically, so concurrent checks from any number of app servers cannot
//!   interleave: the fleet never admits more than the rules allow.
//! - It runs by `EVALSHA` (the SHA is computed once) and reloads itself when
//!   the server answers `NOSCRIPT` (after a restart or `SCRIPT FLUSH`).
//! - Time is the server's `TIME`, so app servers with skewed clocks agree.
//!   If the server's clock steps backwards (a failover to a replica whose
//!   clock lags), counters would look further ahead than any check can put
//!   them: the script caps them at one full burst and writes them back
//!   capped, as `ratelimit_core::gcra::effective_tat` does, so a caller waits
//!   at most one window, and the limiter never becomes looser.
//! - Each key holds one integer and expires (`PX`) exactly when it becomes
//!   equivalent to an absent key: memory cleans itself, with no sweeper.
//! - Keys are built by `ratelimit_core::KeyPrefix`: collision-free, bounded in
//!   length whatever the id, with a hash tag chosen by us, never by an id.

mod fleet;
mod lazy;
mod rules;
pub mod script;
mod store;

pub use fleet::RedisFleet;
pub use rules::RedisRules;
pub use store::{RedisStore, RedisStoreBuilder};
