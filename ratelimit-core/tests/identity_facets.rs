//! A request has an identity with several facets — user, service, API key,
//! client address — and each rule counts one: a login rule per address, a
//! rule per user, a global rule, all in one atomic check. Every test runs
//! its checks in place, awaited, and with a deny cache, which must agree.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ratelimit_core::clock::FakeClock;
use ratelimit_core::config::DenyCache;
use ratelimit_core::identity::Facet;
use ratelimit_core::{
    DistributedRateLimiter, Error, Identity, LimiterConfig, MemoryStore, Rules, Target, Verdict,
};

const MINUTE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
enum Path {
    InPlace,
    Awaited,
    DenyCache,
}

const PATHS: [Path; 3] = [Path::InPlace, Path::Awaited, Path::DenyCache];

fn limiter(path: Path) -> DistributedRateLimiter {
    let clock = FakeClock::at_micros(1_000_000_000);
    let store = Arc::new(MemoryStore::with_clock(clock.clone()));
    let mut config = LimiterConfig::new(store);
    if let Path::DenyCache = path {
        config = config.deny_cache(DenyCache::new(1_000).clock(clock));
    }
    DistributedRateLimiter::new(config)
}

async fn check(
    limiter: &DistributedRateLimiter,
    path: Path,
    who: &Identity<'_>,
    rules: &Rules,
) -> Result<Verdict, Error> {
    match path {
        Path::InPlace => limiter
            .try_check(who, rules, 1)
            .expect("the in-memory store answers in place"),
        Path::Awaited | Path::DenyCache => limiter.check(who, rules, 1).await,
    }
}

fn ids(verdict: &Verdict) -> Vec<&str> {
    verdict
        .decisions()
        .iter()
        .map(|d| d.rule.as_str())
        .collect()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

async fn login_rules(limiter: &DistributedRateLimiter) {
    limiter
        .add_rule("default", Target::Each, 100, MINUTE)
        .await
        .unwrap();
    limiter
        .add_rule("login", Target::Every(Facet::Ip), 5, MINUTE)
        .await
        .unwrap();
    limiter
        .add_rule("global", Target::Global, 1_000, MINUTE)
        .await
        .unwrap();
}

#[tokio::test]
async fn twenty_user_ids_from_one_address_get_the_address_s_five_logins() {
    for path in PATHS {
        let limiter = limiter(path);
        login_rules(&limiter).await;
        let login = Rules::route(["login", "default"]);
        let mut admitted = Vec::new();
        for user in 0..20 {
            let id = format!("user-{user}");
            let who = Identity::user(&id).with_ip(ip("203.0.113.9"));
            let verdict = check(&limiter, path, &who, &login).await.unwrap();
            if verdict.allowed() {
                assert_eq!(ids(&verdict), ["global", "login", "default"], "{path:?}");
            } else {
                // The address's rule refused; the per-user rule would not.
                assert_eq!(verdict.binding().unwrap().rule.as_str(), "login");
            }
            admitted.push(verdict.allowed());
        }
        assert_eq!(admitted.iter().filter(|&&a| a).count(), 5, "{path:?}");
        assert!(admitted[..5].iter().all(|&a| a), "{path:?}");

        // Another address is not held back, nor is the first address on a
        // route that does not name `login`.
        let elsewhere = Identity::user("user-0").with_ip(ip("198.51.100.1"));
        assert!(
            check(&limiter, path, &elsewhere, &login)
                .await
                .unwrap()
                .allowed()
        );
        let home = Identity::user("user-0").with_ip(ip("203.0.113.9"));
        let verdict = check(&limiter, path, &home, &Rules::route(["default"]))
            .await
            .unwrap();
        assert!(verdict.allowed());
        assert_eq!(ids(&verdict), ["global", "default"]);
    }
}

#[tokio::test]
async fn a_rule_whose_facet_the_request_lacks_does_not_apply() {
    for path in PATHS {
        let limiter = limiter(path);
        limiter
            .add_rule("default", Target::Each, 100, MINUTE)
            .await
            .unwrap();
        limiter
            .add_rule("per-key", Target::Every(Facet::Key), 2, MINUTE)
            .await
            .unwrap();
        let anonymous = Identity::ip(ip("203.0.113.9"));
        for rules in [Rules::applicable(), Rules::route(["per-key", "default"])] {
            for _ in 0..5 {
                let verdict = check(&limiter, path, &anonymous, &rules).await.unwrap();
                assert!(verdict.allowed(), "{path:?}");
                assert_eq!(ids(&verdict), ["default"], "{path:?}");
            }
        }
        // Named, the rule must apply: the caller asked for it.
        let named = check(&limiter, path, &anonymous, &Rules::one("per-key")).await;
        assert!(
            matches!(named, Err(Error::RuleNotApplicable { .. })),
            "{path:?}: {named:?}"
        );

        // With a key, the key is counted — whoever presents it.
        let mut admitted = 0;
        for from in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            let client = Identity::ip(ip(from)).with_key("sk_live_abc");
            let verdict = check(&limiter, path, &client, &Rules::applicable())
                .await
                .unwrap();
            admitted += usize::from(verdict.allowed());
        }
        assert_eq!(admitted, 2, "{path:?}");
    }
}

#[tokio::test]
async fn a_vip_s_own_rule_replaces_the_wildcard_but_not_the_address_rule() {
    for path in PATHS {
        let limiter = limiter(path);
        login_rules(&limiter).await;
        limiter
            .add_rule("vip", "user:42".parse().unwrap(), 1_000, MINUTE)
            .await
            .unwrap();
        let login = Rules::route(["login", "default"]);
        let vip = Identity::user("42").with_ip(ip("203.0.113.9"));
        let verdict = check(&limiter, path, &vip, &login).await.unwrap();
        assert_eq!(ids(&verdict), ["global", "login", "vip"], "{path:?}");
        for _ in 0..4 {
            assert!(check(&limiter, path, &vip, &login).await.unwrap().allowed());
        }
        assert!(!check(&limiter, path, &vip, &login).await.unwrap().allowed());
    }
}

#[tokio::test]
async fn an_id_marked_secret_is_one_counter_on_every_instance() {
    // Two instances on one store: a secret id is hashed alike by both, with
    // nothing shared between them but the store.
    let clock = FakeClock::at_micros(1_000_000_000);
    let store = Arc::new(MemoryStore::with_clock(clock));
    let make = || DistributedRateLimiter::new(LimiterConfig::new(store.clone()));
    let (a, b) = (make(), make());
    for limiter in [&a, &b] {
        limiter
            .add_rule("api", Target::Every(Facet::User), 3, MINUTE)
            .await
            .unwrap();
    }
    let api = Rules::one("api");
    let who = Identity::user("alice@example.com").secret();
    let mut admitted = 0;
    for i in 0..6 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        admitted += usize::from(limiter.check(&who, &api, 1).await.unwrap().allowed());
    }
    assert_eq!(admitted, 3);
    // Unmarked, the same id is another counter (its key is written in
    // clear): mark an id the same way everywhere.
    let plain = Identity::user("alice@example.com");
    assert!(a.check(&plain, &api, 1).await.unwrap().allowed());
}

#[tokio::test]
async fn targets_name_facets_in_text_and_refuse_what_is_not_one() {
    assert_eq!("ip:*".parse::<Target>().unwrap(), Target::Every(Facet::Ip));
    assert_eq!(
        "key:*".parse::<Target>().unwrap(),
        Target::Every(Facet::Key)
    );
    assert_eq!(
        "service:*".parse::<Target>().unwrap(),
        Target::Every(Facet::Service)
    );
    assert_eq!(Target::Every(Facet::User).to_string(), "user:*");
    for bad in ["ip:203.0.113.9", "robot:*", "key:abc", "*:*", "ip:"] {
        assert!(
            matches!(bad.parse::<Target>(), Err(Error::InvalidTarget { .. })),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_custom_key_is_counted_across_the_users_that_share_it() {
    for path in PATHS {
        let limiter = limiter(path);
        limiter
            .add_rule("per-tenant", Target::Every(Facet::Custom), 3, MINUTE)
            .await
            .unwrap();
        limiter
            .add_rule("default", Target::Each, 100, MINUTE)
            .await
            .unwrap();
        let mut admitted = 0;
        for user in ["a", "b", "c", "d", "e"] {
            let who = Identity::user(user).with_custom("acme");
            admitted += usize::from(
                check(&limiter, path, &who, &Rules::applicable())
                    .await
                    .unwrap()
                    .allowed(),
            );
        }
        assert_eq!(admitted, 3, "{path:?}: the tenant's limit");
        let other = Identity::user("a").with_custom("globex");
        assert!(
            check(&limiter, path, &other, &Rules::applicable())
                .await
                .unwrap()
                .allowed()
        );
    }
    // The custom facet has its own kind in keys: it never meets a user's.
    let rule = ratelimit_core::Rule::new(
        "per-tenant",
        Target::Every(Facet::Custom),
        ratelimit_core::Quota::per_second(1).unwrap(),
    )
    .unwrap();
    let prefix = ratelimit_core::config::KeyPrefix::default();
    let key = prefix.key(&rule, &Identity::custom("acme")).unwrap();
    assert_eq!(key, b"rl:{c=acme}:per-tenant");
    let hidden = prefix
        .key(&rule, &Identity::custom("acme").secret())
        .unwrap();
    assert!(hidden.starts_with(b"rl:{c!") && !hidden.windows(4).any(|w| w == b"acme"));
}
