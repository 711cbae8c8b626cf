//! Checks through a `Rules` selection kept across checks, as HTTP adapters
//! keep one: a selection remembers what it resolved to, and that memory
//! must never outlive the rules it was made from, cover a caller with rules
//! of its own or without a facet a rule counts, hide an error, or leak from
//! one limiter to another. Every test runs each check both in place
//! (`try_check`) and awaited (`check`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use ratelimit_core::{
    DistributedRateLimiter, Error, Identity, LimiterConfig, MemoryStore, Quota, Rule, Rules,
    Target, Verdict, clock::FakeClock, verdict::Source,
};

const SEC: Duration = Duration::from_secs(1);

fn limiter() -> DistributedRateLimiter {
    let clock = FakeClock::at_micros(1_000_000_000);
    let store = MemoryStore::with_clock(clock);
    DistributedRateLimiter::new(LimiterConfig::new(Arc::new(store)))
}

/// One check in place and, when `awaited`, the same kind of check through
/// the awaited entry point instead.
async fn check(
    limiter: &DistributedRateLimiter,
    caller: &Identity<'_>,
    choice: &Rules,
    cost: u32,
    awaited: bool,
) -> Result<Verdict, Error> {
    if awaited {
        limiter.check(caller, choice, cost).await
    } else {
        limiter
            .try_check(caller, choice, cost)
            .expect("the in-memory store answers in place")
    }
}

async fn admitted(
    limiter: &DistributedRateLimiter,
    caller: &Identity<'_>,
    choice: &Rules,
    n: usize,
    awaited: bool,
) -> usize {
    let mut count = 0;
    for _ in 0..n {
        if check(limiter, caller, choice, 1, awaited)
            .await
            .unwrap()
            .allowed()
        {
            count += 1;
        }
    }
    count
}

fn rule_ids(verdict: &Verdict) -> Vec<&str> {
    verdict
        .decisions()
        .iter()
        .map(|decision| decision.rule.as_str())
        .collect()
}

#[tokio::test]
async fn a_choice_follows_every_rule_change() {
    for awaited in [false, true] {
        let limiter = limiter();
        limiter.add_rule("api", Target::Each, 2, SEC).await.unwrap();
        let choice = Rules::route(["api"]);
        let caller = Identity::user("1");
        assert_eq!(admitted(&limiter, &caller, &choice, 5, awaited).await, 2);

        // A longer window applies from the next check: the two requests
        // spent 1 s of the 2 s the new rule allows at once (under the old
        // rule, nothing more would pass).
        limiter.update_rule("api", 4, 2 * SEC).await.unwrap();
        assert_eq!(admitted(&limiter, &caller, &choice, 5, awaited).await, 2);

        // A removed rule is not remembered: the failure policy (fail open)
        // answers, with the reason.
        limiter.remove_rule("api").await.unwrap();
        let verdict = check(&limiter, &caller, &choice, 1, awaited).await.unwrap();
        assert!(verdict.allowed());
        assert_eq!(verdict.source(), Source::FailOpen);
        assert_eq!(
            verdict.store_error(),
            Some(&Error::UnknownRule("api".into()))
        );

        // Added again (a fresh counter under the same key name, which the
        // old requests still fill), then joined by a global rule.
        limiter
            .add_rule("api", Target::Each, 10, SEC)
            .await
            .unwrap();
        let verdict = check(&limiter, &caller, &choice, 1, awaited).await.unwrap();
        assert_eq!(rule_ids(&verdict), ["api"]);
        limiter
            .add_rule("everyone", Target::Global, 100, SEC)
            .await
            .unwrap();
        let verdict = check(&limiter, &caller, &choice, 1, awaited).await.unwrap();
        assert_eq!(rule_ids(&verdict), ["everyone", "api"]);
    }
}

#[tokio::test]
async fn a_callers_own_rule_still_replaces_the_wildcard() {
    for awaited in [false, true] {
        let limiter = limiter();
        limiter
            .add_rule("default", Target::Each, 1, SEC)
            .await
            .unwrap();
        for choice in [Rules::applicable(), Rules::route(["default"])] {
            let first = check(&limiter, &Identity::user("7"), &choice, 1, awaited).await;
            assert_eq!(rule_ids(&first.unwrap()), ["default"]);

            limiter
                .insert_rule(
                    Rule::new(
                        "vip",
                        "user:42".parse().unwrap(),
                        Quota::per_second(5).unwrap(),
                    )
                    .unwrap(),
                )
                .await
                .unwrap();
            let vip = check(&limiter, &Identity::user("42"), &choice, 1, awaited).await;
            assert_eq!(rule_ids(&vip.unwrap()), ["vip"]);
            // Everyone else keeps the wildcard, and user 7 its spent counter.
            let other = check(&limiter, &Identity::user("7"), &choice, 1, awaited)
                .await
                .unwrap();
            assert_eq!(rule_ids(&other), ["default"]);
            assert!(!other.allowed());
            let service = check(&limiter, &Identity::service("42"), &choice, 1, awaited).await;
            assert_eq!(rule_ids(&service.unwrap()), ["default"]);
            limiter.remove_rule("vip").await.unwrap();
        }
    }
}

#[tokio::test]
async fn costs_a_rule_cannot_take_are_still_reported_or_left_out() {
    for awaited in [false, true] {
        let limiter = limiter();
        limiter.add_rule("api", Target::Each, 5, SEC).await.unwrap();
        let shadow = Rule::new("trial", Target::Each, Quota::per_second(2).unwrap())
            .unwrap()
            .with_shadow(true);
        limiter.insert_rule(shadow).await.unwrap();
        let choice = Rules::route(["api", "trial"]);
        let caller = Identity::user("1");

        // Within every burst: both rules.
        let verdict = check(&limiter, &caller, &choice, 2, awaited).await.unwrap();
        assert_eq!(rule_ids(&verdict), ["api", "trial"]);
        // Above the shadow rule's burst: it is left out, not an error.
        let verdict = check(&limiter, &caller, &choice, 3, awaited).await.unwrap();
        assert_eq!(rule_ids(&verdict), ["api"]);
        assert!(verdict.allowed());
        // Above the enforced rule's burst, or nothing at all: errors.
        assert_eq!(
            check(&limiter, &caller, &choice, 6, awaited)
                .await
                .unwrap_err(),
            Error::CostExceedsBurst { cost: 6, burst: 5 }
        );
        assert_eq!(
            check(&limiter, &caller, &choice, 0, awaited)
                .await
                .unwrap_err(),
            Error::ZeroCost
        );
    }
}

#[tokio::test]
async fn named_choices_check_exactly_their_rules() {
    for awaited in [false, true] {
        let limiter = limiter();
        limiter.add_rule("a", Target::Each, 1, SEC).await.unwrap();
        limiter
            .add_rule("all", Target::Global, 3, SEC)
            .await
            .unwrap();
        limiter
            .add_rule("vip", "user:42".parse().unwrap(), 9, SEC)
            .await
            .unwrap();
        let choice = Rules::named(["all", "a"]);
        let verdict = check(&limiter, &Identity::user("1"), &choice, 1, awaited)
            .await
            .unwrap();
        assert_eq!(rule_ids(&verdict), ["all", "a"]);
        // A caller with rules of its own gets the named ones all the same.
        let verdict = check(&limiter, &Identity::user("42"), &choice, 1, awaited)
            .await
            .unwrap();
        assert_eq!(rule_ids(&verdict), ["all", "a"]);

        // A rule for one user applies to that user only.
        let own = Rules::named(["vip"]);
        let verdict = check(&limiter, &Identity::user("42"), &own, 1, awaited).await;
        assert_eq!(rule_ids(&verdict.unwrap()), ["vip"]);
        assert!(matches!(
            check(&limiter, &Identity::user("1"), &own, 1, awaited).await,
            Err(Error::RuleNotApplicable { .. })
        ));
    }
}

#[tokio::test]
async fn one_choice_on_two_limiters_uses_each_ones_rules() {
    for awaited in [false, true] {
        let strict = limiter();
        let lenient = limiter();
        strict.add_rule("api", Target::Each, 1, SEC).await.unwrap();
        lenient.add_rule("api", Target::Each, 3, SEC).await.unwrap();
        let choice = Rules::route(["api"]);
        let caller = Identity::user("1");
        let mut strict_admitted = 0;
        let mut lenient_admitted = 0;
        // Alternating, so that each check finds the other limiter's plan.
        for _ in 0..4 {
            strict_admitted += admitted(&strict, &caller, &choice, 1, awaited).await;
            lenient_admitted += admitted(&lenient, &caller, &choice, 1, awaited).await;
        }
        assert_eq!((strict_admitted, lenient_admitted), (1, 3));
    }
}

#[tokio::test]
async fn choices_compare_by_the_rules_they_select() {
    let route = Rules::route(["a", "b"]);
    let limiter = limiter();
    limiter.add_rule("a", Target::Each, 1, SEC).await.unwrap();
    limiter.add_rule("b", Target::Each, 1, SEC).await.unwrap();
    // A choice that has been used equals a fresh one.
    check(&limiter, &Identity::user("1"), &route, 1, false)
        .await
        .unwrap();
    assert_eq!(route, Rules::route(["a", "b"]));
    assert_ne!(route, Rules::named(["a", "b"]));
    assert_eq!(Rules::default(), Rules::applicable());
}
