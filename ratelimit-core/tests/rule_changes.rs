//! A rule change keeps each caller's count: a caller who used k requests'
//! worth of the old quota has used k of the new one. Lowered, it is refused
//! while k ≥ the new limit; raised, it gets exactly the difference; changed
//! twice within a window, the fleet never admits more than the larger limit.
//! With the deny cache and hot-key batches too. Fake clock only.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use ratelimit_core::{
    DistributedRateLimiter, LimiterConfig, MemoryStore, Quota, Rule, Target, clock::FakeClock,
    config::DenyCache,
};

const MINUTE: Duration = Duration::from_secs(60);

/// How a limiter under test is set up.
#[derive(Debug, Clone, Copy)]
enum Setup {
    Plain,
    DenyCache,
    /// The rule reserves units in batches of this many (hot-key mode).
    Batches(u32),
}

const SETUPS: [Setup; 3] = [Setup::Plain, Setup::DenyCache, Setup::Batches(4)];

fn limiter(clock: &FakeClock, setup: Setup, limit: u32) -> DistributedRateLimiter {
    let store = Arc::new(MemoryStore::with_clock(clock.clone()));
    let mut rule = Rule::new("api", Target::Each, Quota::new(limit, MINUTE).unwrap()).unwrap();
    let mut config = LimiterConfig::new(store).clock(clock.clone());
    match setup {
        Setup::Plain => {}
        Setup::DenyCache => {
            config = config.deny_cache(DenyCache::new(1_000).clock(clock.clone()));
        }
        Setup::Batches(units) => rule = rule.with_batch(units),
    }
    DistributedRateLimiter::new(config.rule(rule))
}

async fn admitted(limiter: &DistributedRateLimiter, caller: &str, n: usize) -> usize {
    let mut count = 0;
    for _ in 0..n {
        count += usize::from(limiter.is_allowed(caller, "api").await);
    }
    count
}

fn clock() -> FakeClock {
    FakeClock::at_micros(1_000_000_000_000)
}

#[tokio::test]
async fn a_lowered_rule_refuses_a_caller_who_used_the_new_limit() {
    for setup in SETUPS {
        let clock = clock();
        let limiter = limiter(&clock, setup, 10);
        assert_eq!(admitted(&limiter, "user:a", 5).await, 5, "{setup:?}");
        limiter.update_rule("api", 5, MINUTE).await.unwrap();
        assert_eq!(admitted(&limiter, "user:a", 10).await, 0, "{setup:?}");
        // A caller who had used nothing gets the whole new limit.
        assert_eq!(admitted(&limiter, "user:b", 10).await, 5, "{setup:?}");
        // Until its next admission the usage drains at the old rate, 6 s a
        // request: 2 back after 12 s; from then on at the new one, 12 s.
        // (In hot-key mode, units reserved and not spent before the change
        // stay charged, so the caller may wait longer — never less.)
        clock.advance(Duration::from_secs(12));
        let more = admitted(&limiter, "user:a", 10).await;
        match setup {
            Setup::Batches(_) => assert!(more <= 2, "{setup:?}: {more}"),
            _ => assert_eq!(more, 2, "{setup:?}"),
        }
        clock.advance(Duration::from_secs(6));
        assert_eq!(admitted(&limiter, "user:a", 10).await, 0, "{setup:?}");
        clock.advance(Duration::from_secs(6));
        let more = admitted(&limiter, "user:a", 10).await;
        match setup {
            Setup::Batches(_) => assert!(more <= 1, "{setup:?}: {more}"),
            _ => assert_eq!(more, 1, "{setup:?}"),
        }
    }
}

#[tokio::test]
async fn a_lowered_rule_admits_only_what_is_left_of_it() {
    for setup in SETUPS {
        let clock = clock();
        let limiter = limiter(&clock, setup, 10);
        assert_eq!(admitted(&limiter, "user:a", 3).await, 3, "{setup:?}");
        limiter.update_rule("api", 5, MINUTE).await.unwrap();
        assert_eq!(admitted(&limiter, "user:a", 10).await, 2, "{setup:?}");
    }
}

#[tokio::test]
async fn a_raised_rule_gives_exactly_the_difference() {
    for setup in SETUPS {
        let clock = clock();
        let limiter = limiter(&clock, setup, 5);
        assert_eq!(admitted(&limiter, "user:a", 10).await, 5, "{setup:?}");
        limiter.update_rule("api", 10, MINUTE).await.unwrap();
        assert_eq!(admitted(&limiter, "user:a", 10).await, 5, "{setup:?}");
    }
}

#[tokio::test]
async fn a_rule_replaced_whole_keeps_the_count_too() {
    let clock = clock();
    let limiter = limiter(&clock, Setup::Plain, 10);
    assert_eq!(admitted(&limiter, "user:a", 5).await, 5);
    let lowered = Rule::new("api", Target::Each, Quota::new(5, MINUTE).unwrap()).unwrap();
    limiter.insert_rule(lowered).await.unwrap();
    assert_eq!(admitted(&limiter, "user:a", 10).await, 0);
}

#[tokio::test]
async fn a_window_change_converts_the_count() {
    // 10 per minute, 4 used; changed to 10 per 2 minutes: still 4 used, 6 left.
    let clock = clock();
    let limiter = limiter(&clock, Setup::Plain, 10);
    assert_eq!(admitted(&limiter, "user:a", 4).await, 4);
    limiter.update_rule("api", 10, 2 * MINUTE).await.unwrap();
    assert_eq!(admitted(&limiter, "user:a", 10).await, 6);
}

/// Changed twice within one window: lowered then raised back. A caller who
/// used the whole limit before is still at the whole limit after, so it
/// gets nothing more — never more than the larger limit in the window.
#[tokio::test]
async fn lowered_and_raised_back_within_a_window_admits_no_more_than_the_larger_limit() {
    for checked_between in [false, true] {
        for setup in SETUPS {
            let clock = clock();
            let limiter = limiter(&clock, setup, 10);
            assert_eq!(admitted(&limiter, "user:a", 10).await, 10, "{setup:?}");
            limiter.update_rule("api", 5, MINUTE).await.unwrap();
            if checked_between {
                assert_eq!(admitted(&limiter, "user:a", 3).await, 0, "{setup:?}");
            }
            clock.advance(Duration::from_secs(20));
            limiter.update_rule("api", 10, MINUTE).await.unwrap();
            // Denied checks in between change nothing: the counter, last
            // charged under the first revision, is two revisions old and
            // read as stored, at 6 s a request: 3 back after 20 s, as if
            // the rule had never changed — no more than the larger limit's
            // own rate allows.
            let more = admitted(&limiter, "user:a", 20).await;
            assert_eq!(more, 3, "{setup:?} checked between: {checked_between}");
        }
    }
}

/// Lowered, then raised above the first limit: the count carries across
/// both changes when the caller was admitted in between.
#[tokio::test]
async fn two_changes_carry_the_count_across_both() {
    let clock = clock();
    let limiter = limiter(&clock, Setup::Plain, 10);
    assert_eq!(admitted(&limiter, "user:a", 3).await, 3);
    limiter.update_rule("api", 5, MINUTE).await.unwrap();
    // 3 of 5 used: 2 more, then none.
    assert_eq!(admitted(&limiter, "user:a", 3).await, 2);
    limiter.update_rule("api", 20, MINUTE).await.unwrap();
    // 5 of 20 used.
    assert_eq!(admitted(&limiter, "user:a", 30).await, 15);
}

/// After a change, a caller's usage drains at the old rate until its next
/// admission: whether its checks in between were denied by the store or
/// not made at all changes nothing.
#[tokio::test]
async fn denied_checks_after_a_change_change_nothing() {
    let clock = clock();
    let (quiet, busy) = (
        limiter(&clock, Setup::Plain, 10),
        limiter(&clock, Setup::Plain, 10),
    );
    for limiter in [&quiet, &busy] {
        assert_eq!(admitted(limiter, "user:a", 10).await, 10);
        limiter.update_rule("api", 5, MINUTE).await.unwrap();
    }
    // 10 of 5 used, draining at the old 6 s a request: denied for 36 s.
    for _ in 0..5 {
        clock.advance(Duration::from_secs(6));
        assert_eq!(admitted(&busy, "user:a", 1).await, 0);
    }
    clock.advance(Duration::from_secs(6));
    assert_eq!(admitted(&quiet, "user:a", 5).await, 1);
    assert_eq!(admitted(&busy, "user:a", 5).await, 1);
}

#[tokio::test]
async fn a_rule_set_to_its_own_quota_changes_nothing() {
    let clock = clock();
    let limiter = limiter(&clock, Setup::Plain, 10);
    assert_eq!(admitted(&limiter, "user:a", 4).await, 4);
    limiter.update_rule("api", 10, MINUTE).await.unwrap();
    assert!(
        limiter
            .rules()
            .get("api")
            .cloned()
            .unwrap()
            .lineage()
            .is_original()
    );
    assert_eq!(admitted(&limiter, "user:a", 10).await, 6);
}
