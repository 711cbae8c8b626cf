//! A fleet on Redis Sentinel follows a failover by itself: checks move to
//! the promoted replica within moments of the sentinels' switch, and rules
//! changed on the new primary reach every instance. Real processes: a
//! primary, its replica and three sentinels.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;

use ratelimit_core::verdict::Source;
use ratelimit_core::{DistributedRateLimiter, Identity, Quota, Rule, Rules, Target};
use ratelimit_redis::{RedisFleet, RedisStore, Sentinels};
use ratelimit_test_support::{MASTER_NAME, RedisSentinels, wait_until};

fn sentinels(group: &RedisSentinels) -> Sentinels {
    let urls: Vec<String> = group
        .addresses()
        .iter()
        .map(|a| format!("redis://{a}"))
        .collect();
    Sentinels::new(&urls, MASTER_NAME)
}

async fn instance(group: &RedisSentinels, rule: Rule) -> DistributedRateLimiter {
    RedisFleet::sentinel(sentinels(group))
        .timeout(Duration::from_millis(100))
        .poll_every(Duration::from_secs(60))
        .rule(rule)
        .start()
        .await
        .unwrap()
}

fn generous() -> Rule {
    Rule::new("api", Target::Each, Quota::per_second(1_000_000).unwrap()).unwrap()
}

/// Checks served by a store, in time, from several tasks at once.
struct Load {
    stop: Arc<AtomicBool>,
    /// Checks the store answered so far.
    served: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<(Instant, Source)>>>,
}

impl Load {
    fn start(limiter: &DistributedRateLimiter, tasks: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let tasks = (0..tasks)
            .map(|task| {
                let (limiter, stop) = (limiter.clone(), Arc::clone(&stop));
                let served = Arc::clone(&served);
                tokio::spawn(async move {
                    let name = format!("user-{task}");
                    let who = Identity::user(&name);
                    let api = Rules::one("api");
                    let mut seen = Vec::new();
                    // Bounded even if the test forgets to stop it.
                    for _ in 0..2_000_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let started = Instant::now();
                        let verdict = limiter.check(&who, &api, 1).await.unwrap();
                        seen.push((started, verdict.source()));
                        if verdict.source() == Source::Store {
                            served.fetch_add(1, Ordering::Relaxed);
                        } else {
                            // The failure policy answers at once: pace the
                            // asking instead of spinning.
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                    seen
                })
            })
            .collect();
        Self {
            stop,
            served,
            tasks,
        }
    }

    /// Waits until the store has answered `more` checks beyond those
    /// answered so far.
    async fn served_more(&self, more: usize) {
        let from = self.served.load(Ordering::Relaxed);
        wait_until(Duration::from_secs(30), "checks served", || async {
            self.served.load(Ordering::Relaxed) >= from + more
        })
        .await;
    }

    async fn stop(self) -> Vec<(Instant, Source)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.unwrap());
        }
        all.sort_by_key(|(at, _)| *at);
        all
    }
}

/// When the first sentinel announces `+switch-master`.
async fn switch_announced(group: &RedisSentinels) -> tokio::task::JoinHandle<Instant> {
    let mut subscriptions = Vec::new();
    for address in group.addresses() {
        let client = redis::Client::open(format!("redis://{address}")).unwrap();
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub.subscribe("+switch-master").await.unwrap();
        subscriptions.push(pubsub);
    }
    tokio::spawn(async move {
        let streams = subscriptions.iter_mut().map(|p| p.on_message());
        let mut all = futures::stream::select_all(streams);
        all.next().await.expect("the sentinels went away");
        Instant::now()
    })
}

/// When the first check served by a store began after `killed`.
fn first_served_after(seen: &[(Instant, Source)], killed: Instant) -> Duration {
    seen.iter()
        .find(|(at, source)| *at > killed && *source == Source::Store)
        .map(|(at, _)| at.duration_since(killed))
        .expect("no check served after the kill")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_follow_a_killed_primary_to_its_replica() {
    let mut group = RedisSentinels::start();
    let replica = group.servers[1].port();
    // One instance as configured by default, one without a circuit
    // breaker: the second shows when the store itself serves again, the
    // first adds the breaker's probe interval (500 ms at most).
    let limiter = instance(&group, generous()).await;
    let unguarded = RedisFleet::sentinel(sentinels(&group))
        .timeout(Duration::from_millis(100))
        .rule(generous())
        .configure(|config| config.without_circuit_breaker())
        .start()
        .await
        .unwrap();
    for instance in [&limiter, &unguarded] {
        wait_until(Duration::from_secs(5), "checks served", || async {
            instance.health().await.store.is_ok()
        })
        .await;
    }
    assert_eq!(
        limiter.health().await.node,
        Some(format!("127.0.0.1:{}", group.servers[0].port()))
    );

    let switch = switch_announced(&group).await;
    let loads = [Load::start(&limiter, 6), Load::start(&unguarded, 2)];
    for load in &loads {
        load.served_more(200).await; // traffic before the kill
    }
    group.servers[0].kill();
    let killed = Instant::now();
    let switched = tokio::time::timeout(Duration::from_secs(30), switch)
        .await
        .unwrap_or_else(|_| panic!("no failover\n{}", group.logs()))
        .unwrap()
        .duration_since(killed);
    assert_eq!(group.master().map(|a| a.port()), Some(replica));
    wait_until(
        Duration::from_secs(10),
        "a check served after the kill",
        || async {
            let verdict = limiter
                .check(&Identity::user("probe"), &Rules::one("api"), 1)
                .await;
            verdict.unwrap().source() == Source::Store
        },
    )
    .await;
    for load in &loads {
        load.served_more(100).await; // traffic after it
    }
    let [guarded_load, unguarded_load] = loads;
    let (seen, seen_unguarded) = (guarded_load.stop().await, unguarded_load.stop().await);

    let first = first_served_after(&seen, killed);
    let first_unguarded = first_served_after(&seen_unguarded, killed);
    let before = seen.iter().filter(|(at, _)| *at < killed).count();
    let by_policy = seen.iter().filter(|(_, s)| *s != Source::Store).count();
    eprintln!(
        "sentinels announced the switch {switched:?} after the kill; first check served by the \
         new primary {first_unguarded:?} after the kill without a circuit breaker ({:?} after the \
         switch), {first:?} with the default breaker ({:?} after the switch); {before} checks \
         before the kill, {by_policy} answered by the failure policy meanwhile",
        first_unguarded.saturating_sub(switched),
        first.saturating_sub(switched),
    );
    assert!(before > 0, "no traffic before the kill");
    for served in [first, first_unguarded] {
        assert!(
            served <= switched + Duration::from_secs(2),
            "checks reached the new primary {served:?} after the kill, the switch was at {switched:?}"
        );
    }
    assert!(
        group.servers[1].script_calls() > 0,
        "the promoted replica served no check"
    );
    assert_eq!(
        limiter.health().await.node,
        Some(format!("127.0.0.1:{replica}"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_changes_on_the_new_primary_reach_every_instance() {
    let mut group = RedisSentinels::start();
    let replica = group.servers[1].port();
    let rule = Rule::new("api", Target::Each, Quota::per_minute(10).unwrap()).unwrap();
    let a = instance(&group, rule.clone()).await;
    let b = instance(&group, rule).await;
    for limiter in [&a, &b] {
        wait_until(Duration::from_secs(5), "rules synced", || async {
            limiter.health().await.is_healthy()
        })
        .await;
    }

    group.servers[0].kill();
    let killed = Instant::now();
    wait_until(
        Duration::from_secs(30),
        "both instances on the new primary",
        || async {
            let mut both = true;
            for limiter in [&a, &b] {
                let health = limiter.health().await;
                both &= health.store.is_ok() && health.node == Some(format!("127.0.0.1:{replica}"));
            }
            both
        },
    )
    .await;
    let moved = killed.elapsed();

    a.update_rule("api", 20, Duration::from_secs(60))
        .await
        .unwrap();
    let wider = Quota::per_minute(20).unwrap();
    let reached = wait_until(
        Duration::from_secs(5),
        "the change reaches the other instance",
        || async { b.rules().get("api").map(|r| r.quota().limit()) == Some(wider.limit()) },
    )
    .await;
    eprintln!(
        "both instances on the new primary {moved:?} after the kill; a rule change reached the other instance in {reached:?}"
    );
    // Announcements, not the 60 s poll, carried it.
    assert!(reached < Duration::from_secs(3));

    // The new primary enforces the changed rule for both instances together.
    let who = Identity::user("shared");
    let api = Rules::one("api");
    let mut admitted = 0;
    for i in 0..40 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        admitted += usize::from(limiter.check(&who, &api, 1).await.unwrap().allowed());
    }
    assert_eq!(admitted, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_built_now_finds_the_primary_or_says_why_not() {
    let group = RedisSentinels::start();
    let store = RedisStore::sentinel_builder(sentinels(&group))
        .build()
        .await
        .unwrap();
    assert_eq!(
        store.node(),
        Some(format!("127.0.0.1:{}", group.servers[0].port()))
    );

    let unknown = Sentinels::new(
        &[format!("redis://{}", group.addresses()[0])],
        "no-such-master",
    );
    let error = RedisStore::sentinel_builder(unknown)
        .connection_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no-such-master"), "{error}");

    assert!(
        RedisStore::sentinel_builder(Sentinels::new::<&str>(&[], "x"))
            .build_lazy()
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_primary_is_left_for_the_promoted_one_and_counts_carry_over() {
    let group = RedisSentinels::start();
    let (primary, replica) = (group.servers[0].port(), group.servers[1].port());
    let rule = Rule::new("api", Target::Each, Quota::per_minute(10).unwrap()).unwrap();
    let limiter = instance(&group, rule).await;
    let who = Identity::user("steady");
    let api = Rules::one("api");
    let mut admitted = 0;
    for _ in 0..5 {
        admitted += usize::from(limiter.check(&who, &api, 1).await.unwrap().allowed());
    }
    assert_eq!(admitted, 5);
    assert_eq!(
        limiter.health().await.node,
        Some(format!("127.0.0.1:{primary}"))
    );

    // The old primary keeps running (the sentinels make it a replica of
    // the new one): the instance leaves it for the promoted replica.
    assert_eq!(group.failover(), "OK");
    let moved = wait_until(
        Duration::from_secs(20),
        "the instance on the promoted replica",
        || async { limiter.health().await.node == Some(format!("127.0.0.1:{replica}")) },
    )
    .await;

    // The five admitted before the switch still count on the new primary.
    let mut after = Vec::new();
    for _ in 0..10 {
        let verdict = limiter.check(&who, &api, 1).await.unwrap();
        after.push((verdict.allowed(), verdict.source()));
    }
    let admitted_after = after.iter().filter(|(allowed, _)| *allowed).count();
    eprintln!(
        "the instance moved {moved:?} after SENTINEL FAILOVER; {admitted_after} of 10 admitted after"
    );
    assert!(
        after.iter().all(|(_, source)| *source == Source::Store),
        "{after:?}"
    );
    assert_eq!(admitted_after, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_down_at_start_leave_the_failure_policy_answering() {
    // Nothing listens on these ports.
    let nowhere: Vec<String> = (0..2)
        .map(|_| format!("redis://127.0.0.1:{}", ratelimit_test_support::free_port()))
        .collect();
    let limiter = RedisFleet::sentinel(Sentinels::new(&nowhere, MASTER_NAME))
        .timeout(Duration::from_millis(100))
        .rule(generous())
        .configure(|config| {
            config.failure_policy(ratelimit_core::config::FailurePolicy::FailClosed)
        })
        .start()
        .await
        .unwrap();
    let verdict = limiter
        .check(&Identity::user("early"), &Rules::one("api"), 1)
        .await
        .unwrap();
    assert!(!verdict.allowed());
    assert_eq!(verdict.source(), Source::FailClosed);
    assert!(verdict.store_error().is_some());
    let health = limiter.health().await;
    assert!(health.store.is_err());
    assert_eq!(health.node, None);
    assert!(
        health.store.unwrap_err().to_string().contains(MASTER_NAME),
        "the error names what cannot be found"
    );
}

/// The primary's user and password go with every connection to it: the
/// checks run as that user, and a wrong password is refused with a clear
/// error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primarys_user_and_password_are_passed_through() {
    let group = RedisSentinels::start();
    for server in &group.servers {
        let reply = server.cli(&[
            "ACL", "SETUSER", "limiter", "on", ">s3cret", "~*", "&*", "+@all",
        ]);
        assert_eq!(reply, "OK");
    }
    let limiter = RedisFleet::sentinel(sentinels(&group).master_auth(Some("limiter"), "s3cret"))
        .timeout(Duration::from_millis(200))
        .rule(generous())
        .start()
        .await
        .unwrap();
    wait_until(Duration::from_secs(5), "checks served", || async {
        let verdict = limiter
            .check(&Identity::user("a"), &Rules::one("api"), 1)
            .await;
        verdict.unwrap().source() == Source::Store
    })
    .await;
    assert!(
        group.servers[0]
            .cli(&["CLIENT", "LIST"])
            .contains("user=limiter")
    );

    let wrong =
        RedisStore::sentinel_builder(sentinels(&group).master_auth(Some("limiter"), "nope"))
            .connection_timeout(Duration::from_millis(500))
            .build()
            .await
            .unwrap_err()
            .to_string();
    assert!(wrong.contains("authentication failed"), "{wrong}");
    assert!(
        !wrong.contains("nope"),
        "the password stays out of messages: {wrong}"
    );
}
