//! [`RuleStore`]: where rules live when a fleet of instances shares them.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::{Error, Rule, RuleId};

/// All rules at one version, as loaded from a [`RuleStore`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSnapshot {
    /// The version: it grows with every change.
    pub version: u64,
    /// The rules.
    pub rules: Vec<Rule>,
}

/// One change to the shared rules, applied atomically by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleWrite {
    /// Add a rule; fails with [`Error::RuleExists`] if the id is taken.
    Insert(Rule),
    /// Add a rule or replace the rule with its id.
    Upsert(Rule),
    /// Replace `expected` by `new` (same id) only if the stored rule is still
    /// `expected`; fails with [`Error::RuleConflict`] otherwise, and with
    /// [`Error::UnknownRule`] if it is gone.
    Replace {
        /// The rule as it was read.
        expected: Rule,
        /// The rule to write.
        new: Rule,
    },
    /// Remove a rule; fails with [`Error::UnknownRule`] if there is none.
    Remove(RuleId),
    /// Change no rule, but bump the version and announce it, so every
    /// instance reloads and drops what it derived from counters (cached
    /// denials) — sent after a counter is reset.
    Touch,
}

/// The result of a [`RuleWrite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleWritten {
    /// The version after the change.
    pub version: u64,
    /// The rule the change replaced or removed, if any.
    pub previous: Option<Rule>,
}

/// Shared rule storage: every change is stored, versioned and announced, so
/// that every instance of a fleet applies it. `ratelimit-redis` implements it
/// on Redis (`RedisRules`).
///
/// A [`DistributedRateLimiter`](crate::DistributedRateLimiter) configured
/// with a rule store writes its rule changes there and reloads the whole set
/// after each of its own changes and whenever told to
/// ([`refresh_rules`](crate::DistributedRateLimiter::refresh_rules)), so
/// concurrent changes from several instances end in the one state the store
/// ordered, on every instance.
#[async_trait]
pub trait RuleStore: Send + Sync + Debug + 'static {
    /// The current rules and their version.
    async fn load(&self) -> Result<RuleSnapshot, Error>;

    /// Applies one change atomically, bumps the version and announces it.
    async fn write(&self, change: RuleWrite) -> Result<RuleWritten, Error>;
}
