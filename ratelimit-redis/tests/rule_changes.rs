//! A rule change keeps each caller's count on Redis, as in memory: one and
//! three instances sharing one Redis (counters and rules), with the deny
//! cache and hot-key batches on. The instances read time from one fake
//! clock; they poll, with a bound, only for Redis to announce a change.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use ratelimit_core::{
    DistributedRateLimiter, LimiterConfig, Quota, Rule, Target, clock::FakeClock,
    config::DenyCache, config::KeyPrefix,
};
use ratelimit_redis::{RedisRules, RedisStore};
use ratelimit_test_support::{RedisServer, wait_until};

const MINUTE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Setup {
    Plain,
    DenyCache,
    Batches(u32),
}

struct Instance {
    limiter: DistributedRateLimiter,
}

async fn instance(server: &RedisServer, clock: &FakeClock, setup: Setup) -> Instance {
    let rules = Arc::new(
        RedisRules::connect(&server.url(), &KeyPrefix::default())
            .await
            .unwrap()
            .poll_every(Duration::from_secs(30)),
    );
    let store = RedisStore::builder(&server.url())
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let mut rule = Rule::new("api", Target::Each, Quota::new(10, MINUTE).unwrap()).unwrap();
    let mut config = LimiterConfig::new(Arc::new(store))
        .timeout(Duration::from_millis(500))
        .clock(clock.clone())
        .rule_store(rules.clone());
    match setup {
        Setup::Plain => {}
        Setup::DenyCache => {
            config = config.deny_cache(DenyCache::new(1_000).clock(clock.clone()));
        }
        Setup::Batches(units) => rule = rule.with_batch(units),
    }
    let limiter = DistributedRateLimiter::start(config.rule(rule))
        .await
        .unwrap();
    Instance { limiter }
}

/// Sends `n` requests of one caller round-robin over `instances`; returns
/// how many were admitted.
async fn admitted(instances: &[Instance], caller: &str, n: usize) -> usize {
    let mut count = 0;
    for i in 0..n {
        let instance = &instances[i % instances.len()];
        count += usize::from(instance.limiter.is_allowed(caller, "api").await);
    }
    count
}

/// Changes the rule through the first instance and waits (bounded) until
/// every instance has it.
async fn change(instances: &[Instance], limit: u32) {
    instances[0]
        .limiter
        .update_rule("api", limit, MINUTE)
        .await
        .unwrap();
    wait_until(Duration::from_secs(5), "the change everywhere", || async {
        instances.iter().all(|i| {
            i.limiter
                .rules()
                .get("api")
                .cloned()
                .unwrap()
                .quota()
                .limit()
                == limit
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowered_and_raised_mid_window_keep_each_callers_count() {
    for fleet in [1, 3] {
        for setup in [Setup::Plain, Setup::DenyCache, Setup::Batches(4)] {
            let server = RedisServer::start();
            let clock = FakeClock::at_micros(1_700_000_000_000_000);
            let mut instances = Vec::new();
            for _ in 0..fleet {
                instances.push(instance(&server, &clock, setup).await);
            }
            let case = format!("{fleet} instance(s), {setup:?}");

            // Lowered: 5 used of 10 per minute is 5 used of 5.
            assert_eq!(admitted(&instances, "user:a", 5).await, 5, "{case}");
            assert_eq!(admitted(&instances, "user:b", 3).await, 3, "{case}");
            change(&instances, 5).await;
            assert_eq!(admitted(&instances, "user:a", 9).await, 0, "{case}");
            let b = admitted(&instances, "user:b", 9).await;
            if setup == Setup::Batches(4) {
                // Units an instance reserved and had not spent at the change
                // stay charged: fewer, never more.
                assert!(b <= 2, "{case}: {b}");
            } else {
                assert_eq!(b, 2, "{case}");
            }

            // Raised: a fresh caller uses 5 of 5, then gets exactly 5 more.
            assert_eq!(admitted(&instances, "user:c", 9).await, 5, "{case}");
            change(&instances, 10).await;
            let c = admitted(&instances, "user:c", 12).await;
            if setup == Setup::Batches(4) {
                // Each instance may be left holding up to a batch unspent.
                assert!(c <= 5 && c + 4 * fleet >= 5, "{case}: {c}");
            } else {
                assert_eq!(c, 5, "{case}");
            }
        }
    }
}

/// A counter stays within 100 bytes in Redis with its revision beside the
/// TAT (a negative integer, so Redis keeps it as an integer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_stays_small_after_a_change() {
    let server = RedisServer::start();
    let clock = FakeClock::at_micros(1_700_000_000_000_000);
    let instances = vec![instance(&server, &clock, Setup::Plain).await];
    assert!(instances[0].limiter.is_allowed("user:42", "api").await);
    change(&instances, 5).await;
    assert!(instances[0].limiter.is_allowed("user:42", "api").await);
    let key = "rl:{u=42}:api";
    let value = server.cli(&["GET", key]);
    assert!(
        value.trim().starts_with('-') && value.trim().ends_with("001"),
        "{value}"
    );
    assert_eq!(server.cli(&["OBJECT", "ENCODING", key]).trim(), "int");
    let bytes: u64 = server
        .cli(&["MEMORY", "USAGE", key])
        .trim()
        .parse()
        .unwrap();
    eprintln!("MEMORY USAGE {key}: {bytes} bytes");
    assert!(bytes <= 100, "{bytes}");
}

/// A refund (a cluster check denied in another slot gives back what this
/// slot charged) keeps the counter's revision, whichever way it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_keeps_the_counters_revision() {
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let now = 1_700_000_000_000_000_u64;
    let quota = Quota::new(10, MINUTE).unwrap(); // T = 6 s
    for (stored, expected) in [
        (
            format!("{}", now + 30_000_000),
            format!("{}", now + 24_000_000),
        ),
        (
            format!("-{}007", now + 30_000_000),
            format!("-{}007", now + 24_000_000),
        ),
    ] {
        server.cli(&["SET", "refund:k", &stored, "PX", "60000"]);
        let item = ratelimit_core::store::CheckItem::new(b"refund:k", quota);
        let command = ratelimit_redis::script::refund_command(
            &[item],
            Some(now),
            ratelimit_redis::script::Form::Source,
        );
        let _: redis::Value = command.query_async(&mut connection).await.unwrap();
        assert_eq!(server.cli(&["GET", "refund:k"]).trim(), expected);
    }
}
