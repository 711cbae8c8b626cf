//! [`RateLimiter`]: one quota for any number of keys.

use std::sync::Arc;

use super::Selector;
use super::{DistributedRateLimiter, LimiterConfig, Verdict};
use crate::{Error, Identity, Quota, Rule, Store, Target};

/// The simplest front door: every key gets `limit` requests per window.
///
/// It is a [`DistributedRateLimiter`] with a single `*` rule named
/// [`RateLimiter::RULE_ID`], so it has the same atomicity, failure policy and
/// timeout (see [`with_config`](Self::with_config)).
///
/// ```
/// use std::sync::Arc;
/// use ratelimit_core::{MemoryStore, RateLimiter};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ratelimit_core::Error> {
/// let limiter = RateLimiter::new(1, 60_000, Arc::new(MemoryStore::new()))?;
/// assert!(limiter.allow("10.0.0.1").await);
/// assert!(!limiter.allow("10.0.0.1").await);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimiter {
    limiter: DistributedRateLimiter,
    quota: Quota,
}

impl RateLimiter {
    /// The id of the single rule (it appears in storage keys).
    pub const RULE_ID: &'static str = "rate";

    /// `limit` requests per `window_ms` milliseconds per key, on `store`, with
    /// the default configuration. Fails if the quota is invalid (see [`Quota`]).
    pub fn new(limit: u32, window_ms: u64, store: Arc<dyn Store>) -> Result<Self, Error> {
        Self::with_config(
            LimiterConfig::new(store),
            Quota::per_millis(limit, window_ms)?,
        )
    }

    /// A limiter with `quota` per key and a full configuration (timeout,
    /// failure policy, key prefix). Rules in `config` are ignored.
    pub fn with_config(mut config: LimiterConfig, quota: Quota) -> Result<Self, Error> {
        config.rules = vec![Rule::new(Self::RULE_ID, Target::Each, quota)?];
        Ok(Self {
            limiter: DistributedRateLimiter::new(config),
            quota,
        })
    }

    /// Whether `key` may make one more request now; charges it when it may.
    /// A store failure is answered by the failure policy (fail open by default).
    pub async fn allow(&self, key: impl AsRef<[u8]>) -> bool {
        self.check(key).await.is_ok_and(|verdict| verdict.allowed())
    }

    /// The full verdict for one request by `key`.
    pub async fn check(&self, key: impl AsRef<[u8]>) -> Result<Verdict, Error> {
        let identity = Identity::key(key.as_ref());
        self.limiter
            .run(&identity, Selector::<&str>::One(Self::RULE_ID), 1, true)
            .await
    }

    /// The quota every key gets.
    pub fn quota(&self) -> Quota {
        self.quota
    }
}
