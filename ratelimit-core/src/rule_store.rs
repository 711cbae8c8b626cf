//! [`RuleStore`]: where rules live when a fleet of instances shares them,
//! and what a rule store implementer needs besides: the snapshot it loads,
//! the writes it applies, and the handles its follower works with.

use std::fmt::Debug;

use async_trait::async_trait;

pub use crate::limiter::WeakLimiter;
pub use crate::rule_set::RuleSet;
use crate::{Error, Rule, RuleId};

/// All rules at one version, as loaded from a [`RuleStore`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSnapshot {
    /// The version: it grows with every change.
    pub version: u64,
    /// Which life of the store's rules this is: a random number written
    /// when a fleet's rules are first stored (or put back), 0 when the store
    /// holds none. A store that lost its rules and was filled again has
    /// another epoch, so instances that hold the rules agreed before can
    /// tell it from an ordinary change.
    pub epoch: u64,
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
    /// Replace every rule, the version and the epoch with `snapshot`'s, only
    /// if the store still holds version `seen_version` of epoch `seen_epoch`
    /// (both 0: holds nothing); fails with [`Error::RuleConflict`]
    /// otherwise. Fills an empty store with seed rules, and puts back the
    /// rules a fleet agreed on after the store lost them.
    Restore {
        /// The version read before deciding to restore.
        seen_version: u64,
        /// The epoch read before deciding to restore.
        seen_epoch: u64,
        /// What the store is to hold.
        snapshot: RuleSnapshot,
    },
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

    /// Applies one change atomically, bumps the version and announces it
    /// ([`RuleWrite::Restore`] sets the version it carries).
    async fn write(&self, change: RuleWrite) -> Result<RuleWritten, Error>;

    /// Starts keeping `limiter` current with the store's changes — calling
    /// [`refresh_rules`](crate::DistributedRateLimiter::refresh_rules) on
    /// every announcement and after every reconnection — for as long as the
    /// limiter lives. [`DistributedRateLimiter::start`](crate::DistributedRateLimiter::start)
    /// calls it and keeps the returned guard with the limiter; dropping the
    /// guard stops the following.
    ///
    /// The default follows nothing: the limiter then sees the changes it
    /// makes itself, and others when `refresh_rules` is called.
    fn follow(&self, limiter: WeakLimiter) -> Option<Following> {
        let _ = limiter;
        None
    }
}

/// What keeps a limiter following its rule store (see
/// [`RuleStore::follow`]): the follower runs until this is dropped.
pub struct Following(#[allow(dead_code)] Box<dyn Send + Sync>);

impl Following {
    /// A guard that stops the following when dropped (a task handle that
    /// aborts on drop, say).
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        Self(Box::new(guard))
    }
}

impl Debug for Following {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Following")
    }
}
