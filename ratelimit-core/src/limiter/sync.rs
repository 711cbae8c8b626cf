//! How a limiter keeps its rules in step with a shared [`RuleStore`]:
//! seeding an empty store, loading the fleet's rules, following their
//! changes, and putting them back when the store loses them.
//!
//! The rules in force are always a whole snapshot. The store is the
//! authority on every change, with one exception: a store that went *back*
//! — an older version of the same epoch, or a new epoch at a lower version,
//! as after a Redis restart without persistence, a flush or a failover to a
//! replica that missed writes — lost rules the fleet had agreed on. Every
//! instance that loaded them holds them, so the first to notice writes them
//! back with one compare-and-set, and the others load them as usual.
//!
//! Seed rules (those in the [`LimiterConfig`](crate::LimiterConfig)) fill a
//! store that holds no rules at all, in the same compare-and-set, and are in
//! force locally until the store answers. They never overwrite or add to
//! rules a fleet already has: an operator's removal stays removed.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};

use super::distributed::{DistributedRateLimiter, Inner};
use super::health::RuleSync;
use crate::rule_store::{RuleSnapshot, RuleWrite};
use crate::{Error, RuleSet, RuleStore, telemetry};

/// A limiter that does not keep its holder alive: what a rule store's
/// follower holds (see [`RuleStore::follow`]), so that the follower stops
/// when the limiter's last handle is dropped.
#[derive(Debug, Clone)]
pub struct WeakLimiter(Weak<Inner>);

impl WeakLimiter {
    /// A handle to `limiter` that does not keep it alive.
    pub fn new(limiter: &DistributedRateLimiter) -> Self {
        Self(Arc::downgrade(&limiter.inner))
    }

    /// The limiter, if any handle to it is still alive.
    pub fn upgrade(&self) -> Option<DistributedRateLimiter> {
        self.0
            .upgrade()
            .map(|inner| DistributedRateLimiter { inner })
    }
}

/// How many times one refresh reads the store again after a
/// compare-and-set lost to another instance.
const ATTEMPTS: usize = 4;

/// # The shared rule store
///
/// A limiter [started](DistributedRateLimiter::start) with a rule store
/// follows it by itself; [`refresh_rules`](Self::refresh_rules) brings the
/// rules in step at once (a follower calls it on every announcement).
impl DistributedRateLimiter {
    /// Where this limiter's rules stand with its rule store.
    pub(super) fn rule_sync(&self) -> RuleSync {
        let inner = &self.inner;
        if inner.rule_store.is_none() {
            RuleSync::Local
        } else if inner.restoring.load(Ordering::Acquire) {
            RuleSync::Restoring
        } else if inner.synced.load(Ordering::Acquire) {
            RuleSync::Synced
        } else {
            RuleSync::Pending
        }
    }

    /// Brings the rules in force in step with the shared rule store, if one
    /// is configured: loads the store's rules and puts them in force when
    /// they differ from those in force; fills an empty store with the seed
    /// rules; and puts back the rules this instance holds when the store
    /// lost them (see the module docs). Returns whether the rules in force
    /// changed.
    ///
    /// [`start`](Self::start) calls it, and so does the store's follower on
    /// every announcement and reconnection.
    pub async fn refresh_rules(&self) -> Result<bool, Error> {
        let Some(store) = self.inner.rule_store.clone() else {
            return Ok(false);
        };
        for _ in 0..ATTEMPTS {
            let snapshot = self.with_timeout(store.load()).await?;
            match self.next_step(&snapshot) {
                Step::Keep => return Ok(false),
                Step::Install => return Ok(self.install_snapshot(snapshot)),
                Step::Write(write, after) => {
                    let seen = (snapshot.version, snapshot.epoch);
                    match self.with_timeout(store.write(*write)).await {
                        Ok(_) if after == After::Seeded => {
                            tracing::info!(
                                rules = self.inner.seeds.len(),
                                "filled the empty rule store with the seed rules"
                            );
                            // Loaded on the next round, with the store's
                            // version and epoch.
                        }
                        Ok(_) => return Ok(self.restored(seen)),
                        Err(Error::RuleConflict(_)) => {}
                        Err(error) => {
                            if after == After::Restored {
                                self.inner.restoring.store(true, Ordering::Release);
                            }
                            return Err(error);
                        }
                    }
                }
            }
        }
        Err(Error::RuleConflict(
            "the rule store keeps changing".to_owned(),
        ))
    }

    /// What to do about `snapshot`, the store's rules as just read.
    fn next_step(&self, snapshot: &RuleSnapshot) -> Step {
        let inner = &self.inner;
        let current = inner.rules.load();
        let synced = inner.synced.load(Ordering::Acquire);
        let ours = (current.version(), inner.epoch.load(Ordering::Acquire));
        let theirs = (snapshot.version, snapshot.epoch);
        let empty = theirs == (0, 0) && snapshot.rules.is_empty();
        if synced && ours > theirs {
            // The store went back: it lost rules the fleet agreed on.
            return Step::Write(
                Box::new(restore(
                    theirs,
                    RuleSnapshot {
                        version: ours.0,
                        epoch: ours.1,
                        rules: current.iter().cloned().collect(),
                    },
                )),
                After::Restored,
            );
        }
        if !synced && empty && !inner.seeds.is_empty() {
            let seeds = RuleSnapshot {
                version: 1,
                epoch: new_epoch(),
                rules: inner.seeds.clone(),
            };
            return Step::Write(Box::new(restore(theirs, seeds)), After::Seeded);
        }
        if !synced || ours != theirs {
            Step::Install
        } else {
            inner.restoring.store(false, Ordering::Release);
            Step::Keep
        }
    }

    /// Puts `snapshot` in force (unless a refresh running beside this one
    /// already did); returns whether the rules in force changed.
    fn install_snapshot(&self, snapshot: RuleSnapshot) -> bool {
        let inner = &self.inner;
        let _serial = inner.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let current = (
            inner.rules.load().version(),
            inner.epoch.load(Ordering::Acquire),
        );
        let same =
            inner.synced.load(Ordering::Acquire) && current == (snapshot.version, snapshot.epoch);
        inner.restoring.store(false, Ordering::Release);
        if same {
            return false;
        }
        let epoch = snapshot.epoch;
        let set = RuleSet::from_rules(snapshot.version, snapshot.rules);
        telemetry::rules_changed("reload", set.len(), set.version());
        inner.epoch.store(epoch, Ordering::Release);
        self.install(set);
        inner.synced.store(true, Ordering::Release);
        true
    }

    /// After our rules were put back into a store that had lost them: they
    /// stay in force.
    fn restored(&self, seen: (u64, u64)) -> bool {
        let inner = &self.inner;
        inner.restoring.store(false, Ordering::Release);
        tracing::warn!(
            version = inner.rules.load().version(),
            found_version = seen.0,
            "the rule store had lost the fleet's rules; put them back"
        );
        false
    }

    /// Lets `store`'s follower keep this limiter current for as long as it
    /// lives (see [`RuleStore::follow`]).
    pub(super) fn follow(&self, store: &Arc<dyn RuleStore>) {
        if let Some(following) = store.follow(WeakLimiter::new(self)) {
            let _ = self.inner.following.set(following);
        }
    }
}

/// What a refresh does next.
enum Step {
    /// The rules in force are the store's.
    Keep,
    /// Put the store's rules in force.
    Install,
    /// Write to the store, then treat the result as `After` says.
    Write(Box<RuleWrite>, After),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Our rules were put back: they stay in force.
    Restored,
    /// The seeds filled the empty store: load them on the next round.
    Seeded,
}

fn restore(seen: (u64, u64), snapshot: RuleSnapshot) -> RuleWrite {
    RuleWrite::Restore {
        seen_version: seen.0,
        seen_epoch: seen.1,
        snapshot,
    }
}

/// A fresh epoch: random, never 0 (SipHash under the process's random keys
/// of a counter, which differs per call).
fn new_epoch() -> u64 {
    use std::sync::atomic::AtomicU64;
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish().max(1)
}
