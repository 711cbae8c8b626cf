//! A limiter in step with a shared rule store, on an in-process rule store
//! that can lose its rules and refuse writes: seeds fill only an empty
//! store, a store that lost the fleet's rules gets them back, the limiter
//! says so while it cannot put them back, and instances that disagree
//! converge on the newest rules.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ratelimit_core::rule_store::{RuleSnapshot, RuleWrite, RuleWritten};
use ratelimit_core::{
    DistributedRateLimiter, Error, LimiterConfig, MemoryStore, Quota, Rule, RuleStore, Target,
    health::RuleSync,
};

/// Rules in a `Mutex`, written as `RedisRules` writes them.
#[derive(Debug, Default)]
struct SharedRules {
    state: Mutex<RuleSnapshot>,
    refuse_writes: AtomicBool,
}

impl SharedRules {
    fn lose_everything(&self) {
        *self.state.lock().unwrap() = RuleSnapshot::default();
    }

    fn snapshot(&self) -> RuleSnapshot {
        self.state.lock().unwrap().clone()
    }

    fn limit_of(&self, id: &str) -> Option<u32> {
        let state = self.state.lock().unwrap();
        let rule = state.rules.iter().find(|r| r.id().as_str() == id)?;
        Some(rule.quota().limit())
    }
}

#[async_trait]
impl RuleStore for SharedRules {
    async fn load(&self) -> Result<RuleSnapshot, Error> {
        Ok(self.snapshot())
    }

    async fn write(&self, change: RuleWrite) -> Result<RuleWritten, Error> {
        if self.refuse_writes.load(Ordering::Relaxed) {
            return Err(Error::Store("writes refused".into()));
        }
        let mut state = self.state.lock().unwrap();
        let position =
            |state: &RuleSnapshot, id: &str| state.rules.iter().position(|r| r.id().as_str() == id);
        let previous = match change {
            RuleWrite::Restore {
                seen_version,
                seen_epoch,
                snapshot,
            } => {
                if (state.version, state.epoch) != (seen_version, seen_epoch) {
                    return Err(Error::RuleConflict("the rule set".into()));
                }
                let version = snapshot.version;
                *state = snapshot;
                return Ok(RuleWritten {
                    version,
                    previous: None,
                });
            }
            RuleWrite::Insert(rule) => {
                if position(&state, rule.id().as_str()).is_some() {
                    return Err(Error::RuleExists(rule.id().to_string()));
                }
                state.rules.push(rule);
                None
            }
            RuleWrite::Upsert(rule) | RuleWrite::Replace { new: rule, .. } => {
                match position(&state, rule.id().as_str()) {
                    Some(i) => Some(std::mem::replace(&mut state.rules[i], rule)),
                    None => {
                        state.rules.push(rule);
                        None
                    }
                }
            }
            RuleWrite::Remove(id) => match position(&state, id.as_str()) {
                Some(i) => Some(state.rules.remove(i)),
                None => return Err(Error::UnknownRule(id.to_string())),
            },
            RuleWrite::Touch => None,
        };
        state.version += 1;
        Ok(RuleWritten {
            version: state.version,
            previous,
        })
    }
}

const SEC: Duration = Duration::from_secs(1);

fn seeds() -> Vec<Rule> {
    vec![
        Rule::new("default", Target::Each, Quota::per_second(10).unwrap()).unwrap(),
        Rule::new("login", Target::Each, Quota::per_minute(5).unwrap()).unwrap(),
    ]
}

async fn instance(store: &Arc<SharedRules>) -> DistributedRateLimiter {
    let config = seeds().into_iter().fold(
        LimiterConfig::new(Arc::new(MemoryStore::new())).rule_store(store.clone()),
        LimiterConfig::rule,
    );
    DistributedRateLimiter::start(config).await.unwrap()
}

#[tokio::test]
async fn seeds_fill_an_empty_store_and_nothing_else() {
    let store = Arc::new(SharedRules::default());
    let first = instance(&store).await;
    assert_eq!(first.health().await.rules, RuleSync::Synced);
    let filled = store.snapshot();
    assert_eq!((filled.version, filled.rules.len()), (1, 2));
    assert_ne!(filled.epoch, 0);

    // The fleet removes a seed; a new instance does not bring it back.
    first.remove_rule("login").await.unwrap();
    let second = instance(&store).await;
    assert!(second.rules().get("login").cloned().is_none());
    assert_eq!(store.limit_of("login"), None);
}

#[tokio::test]
async fn a_store_that_lost_the_fleets_rules_gets_them_back() {
    let store = Arc::new(SharedRules::default());
    let limiter = instance(&store).await;
    limiter.update_rule("login", 3, 60 * SEC).await.unwrap();
    store.lose_everything();
    limiter.refresh_rules().await.unwrap();
    assert_eq!(store.limit_of("login"), Some(3));
    assert_eq!(store.snapshot().version, limiter.rules().version());
    assert_eq!(limiter.health().await.rules, RuleSync::Synced);
    // An instance started now loads them, not its seeds.
    let late = instance(&store).await;
    assert_eq!(
        late.rules().get("login").cloned().unwrap().quota().limit(),
        3
    );
}

#[tokio::test]
async fn the_rules_stay_in_force_and_the_limiter_says_so_until_they_are_back() {
    let store = Arc::new(SharedRules::default());
    let limiter = instance(&store).await;
    store.lose_everything();
    store.refuse_writes.store(true, Ordering::Relaxed);
    assert!(limiter.refresh_rules().await.is_err());
    assert_eq!(limiter.health().await.rules, RuleSync::Restoring);
    // Still enforced here: 5 logins a minute.
    let mut admitted = 0;
    for _ in 0..8 {
        admitted += usize::from(limiter.is_allowed("user:a", "login").await);
    }
    assert_eq!(admitted, 5);

    store.refuse_writes.store(false, Ordering::Relaxed);
    limiter.refresh_rules().await.unwrap();
    assert_eq!(limiter.health().await.rules, RuleSync::Synced);
    assert_eq!(store.limit_of("login"), Some(5));
}

#[tokio::test]
async fn instances_that_disagree_converge_on_the_newest_rules() {
    let store = Arc::new(SharedRules::default());
    let behind = instance(&store).await;
    let ahead = instance(&store).await;
    ahead.update_rule("login", 4, 60 * SEC).await.unwrap();
    // `behind` missed the announcement; the store loses everything.
    store.lose_everything();
    behind.refresh_rules().await.unwrap(); // puts back what it has
    assert_eq!(store.limit_of("login"), Some(5));
    ahead.refresh_rules().await.unwrap(); // newer: puts back its own
    assert_eq!(store.limit_of("login"), Some(4));
    behind.refresh_rules().await.unwrap(); // loads the newer
    assert_eq!(
        behind
            .rules()
            .get("login")
            .cloned()
            .unwrap()
            .quota()
            .limit(),
        4
    );
    assert_eq!(behind.rules().version(), ahead.rules().version());
}
