//! Redis for `ratelimit`: a fleet of app servers enforcing one limit.
//!
//! [`RedisFleet`] is the front door: a
//! [`DistributedRateLimiter`](ratelimit_core::DistributedRateLimiter) whose
//! counters and rules live in one Redis (through Sentinel, or a Redis
//! Cluster), in one step.
//!
//! ```no_run
//! use std::time::Duration;
//! use ratelimit_core::{Quota, Rule, Target};
//! use ratelimit_redis::RedisFleet;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ratelimit_core::Error> {
//! let limiter = RedisFleet::new("redis://127.0.0.1:6379/")
//!     .rule(Rule::new("api", Target::Each, Quota::per_minute(100)?)?)
//!     .start()
//!     .await?;
//! let allowed = limiter.is_allowed("user:42", "api").await;
//! # let _ = allowed;
//! # Ok(())
//! # }
//! ```
//!
//! Underneath, [`RedisStore`] is the counter store and [`RedisRules`] the
//! shared rule store. How the store works:
//!
//! - The script (`gcra.lua`) reads each counter, tests every counter with
//!   the same rule as `ratelimit_core::store::evaluate`, and writes the
//!   charged TATs only when every enforced counter conforms. Redis runs a
//!   script atomically, so concurrent checks from any number of app servers
//!   cannot interleave: the fleet never admits more than the rules allow.
//! - It runs by `EVALSHA` (the SHA is computed once) and reloads itself when
//!   the server answers `NOSCRIPT` (after a restart or `SCRIPT FLUSH`).
//! - Time is the server's `TIME`, so app servers with skewed clocks agree.
//!   A counter charged under an earlier quota of its rule is converted to
//!   the current one (`ratelimit_core::gcra::booked`); one found further
//!   ahead than any check can put it (the server's clock stepped back, as
//!   after a failover to a replica whose clock lags) is capped and written
//!   back capped, so a caller waits for the normal rate and the limiter
//!   never becomes looser.
//! - Each key holds one integer — the TAT, or for a rule whose quota
//!   changed the TAT and the rule's revision — and expires (`PX`) exactly
//!   when it becomes equivalent to an absent key: memory cleans itself,
//!   with no sweeper.
//! - Keys are built by `ratelimit_core::config::KeyPrefix`: collision-free, bounded in
//!   length whatever the id, with a hash tag chosen by us, never by an id;
//!   API keys are written as digests, never in clear.
//! - Connections are made on first use and remade by themselves; every call
//!   is bounded by the store's timeout, the only timer a check arms.
//! - Through Redis Sentinel ([`Sentinels`], [`RedisFleet::sentinel`]) the
//!   counters and rules follow the primary through failovers by themselves.
//! - Durable admissions ([`RedisFleet::durable_replicas`]) report an
//!   admission only once replicas acknowledged it (`WAIT`, confirmed in
//!   groups), so that a failover does not forget it.

mod call;
mod durable;
mod fleet;
mod group_commit;
mod lazy;
mod primary;
mod rules;
pub mod script;
mod sentinels;
mod store;
mod topology;

pub use fleet::RedisFleet;
pub use rules::RedisRules;
pub use sentinels::Sentinels;
pub use store::{RedisStore, RedisStoreBuilder};
