//! Durable admissions: an admission counts only once a replica holds it.
//! Without them a failover forgets what the primary had not replicated and
//! the fleet admits it again; with them (and fail-closed) it does not.
//! Real processes: a primary and its replica, under three sentinels or in
//! a cluster.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ratelimit_core::config::FailurePolicy;
use ratelimit_core::verdict::{Source, Verdict};
use ratelimit_core::{DistributedRateLimiter, Error, Identity, Quota, Rule, Rules, Target};
use ratelimit_redis::{RedisFleet, Sentinels};
use ratelimit_test_support::{MASTER_NAME, RedisCluster, RedisSentinels, RedisServer, wait_until};

/// 20 an hour per caller: nothing comes back within a test.
fn rule() -> Rule {
    hourly(20, Target::Each)
}

async fn asks(limiter: &DistributedRateLimiter, user: &str, times: usize) -> Vec<Verdict> {
    let (who, api) = (Identity::user(user), Rules::one("api"));
    let mut verdicts = Vec::new();
    for _ in 0..times {
        verdicts.push(limiter.check(&who, &api, 1).await.unwrap());
    }
    verdicts
}

fn admitted(verdicts: &[Verdict]) -> usize {
    verdicts.iter().filter(|v| v.allowed()).count()
}

fn primary_and_replica() -> (RedisServer, RedisServer) {
    let primary = RedisServer::start();
    let port = primary.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !replica
        .cli(&["INFO", "replication"])
        .contains("master_link_status:up")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the replica did not sync"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (primary, replica)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_waits_for_its_replica() {
    let (primary, replica) = primary_and_replica();
    // WAIT gets half the timeout, and the server ends a WAIT at its own
    // pace (every 100 ms at the default `hz`): a second leaves room for a
    // short count to come back as such.
    let limiter = RedisFleet::new(&primary.url())
        .timeout(Duration::from_secs(1))
        .durable_replicas(1)
        .rule(rule())
        .configure(|config| config.without_circuit_breaker())
        .start()
        .await
        .unwrap();
    let first = asks(&limiter, "u", 3).await;
    assert_eq!(admitted(&first), 3);
    assert!(first.iter().all(|v| v.source() == Source::Store));

    // The replica frozen: nothing it could acknowledge, nothing admitted.
    replica.pause();
    let frozen = asks(&limiter, "u", 3).await;
    replica.resume();
    assert_eq!(admitted(&frozen), 0);
    for verdict in &frozen {
        assert_eq!(verdict.source(), Source::FailClosed);
        assert_eq!(
            verdict.store_error(),
            Some(&Error::Unreplicated {
                acknowledged: 0,
                required: 1
            }),
        );
    }

    // Back: admitted again. The three refused were charged on the primary
    // (stricter, never looser): 20 - 3 - 3 left.
    let after = asks(&limiter, "u", 20).await;
    assert_eq!(admitted(&after), 14);
    assert!(after.iter().all(|v| v.source() == Source::Store));

    // More replicas than there are: never admitted, and the error says so.
    let greedy = RedisFleet::new(&primary.url())
        .timeout(Duration::from_secs(1))
        .durable_replicas(2)
        .rule(rule())
        .start()
        .await
        .unwrap();
    let verdict = &asks(&greedy, "v", 1).await[0];
    assert!(!verdict.allowed());
    assert_eq!(
        verdict.store_error(),
        Some(&Error::Unreplicated {
            acknowledged: 1,
            required: 2
        }),
    );
}

/// A rule of `limit` an hour on `target`, failing closed.
fn hourly(limit: u32, target: Target) -> Rule {
    Rule::new(
        "api",
        target,
        Quota::new(limit, Duration::from_secs(3600)).unwrap(),
    )
    .unwrap()
    .with_failure_policy(FailurePolicy::FailClosed)
}

/// 16 tasks, each asking 15 times for the callers `caller(task, i)` names,
/// all at once; every verdict.
async fn concurrently(
    limiter: &DistributedRateLimiter,
    caller: fn(usize, usize) -> String,
) -> Vec<Verdict> {
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let mut verdicts = Vec::new();
                for i in 0..15 {
                    verdicts.extend(asks(&limiter, &caller(task, i), 1).await);
                }
                verdicts
            })
        })
        .collect();
    let mut verdicts = Vec::new();
    for task in tasks {
        verdicts.extend(task.await.unwrap());
    }
    assert_eq!(verdicts.len(), 240);
    assert!(
        verdicts.iter().all(|v| v.source() == Source::Store),
        "none failed"
    );
    verdicts
}

/// Many concurrent checks share each `WAIT` and all count exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_admissions_are_confirmed_together() {
    let (primary, _replica) = primary_and_replica();
    let limiter = RedisFleet::new(&primary.url())
        .timeout(Duration::from_millis(500))
        .durable_replicas(1)
        .rule(hourly(200, Target::Global))
        .start()
        .await
        .unwrap();
    let verdicts = concurrently(&limiter, |task, _| format!("t{task}")).await;
    assert_eq!(admitted(&verdicts), 200);
    let stats = primary.cli(&["INFO", "commandstats"]);
    let calls = |name: &str| {
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{name}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let waits = calls("wait");
    eprintln!("240 concurrent checks, 200 admitted, confirmed by {waits} WAITs");
    // Fewer WAITs than admissions: they were confirmed in groups.
    assert!(waits > 0 && waits < 200, "{waits} WAITs");
}

/// On a cluster too: concurrent checks over many slots, each confirmed by
/// the group commit of the connection it ran on, all count exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_admissions_on_a_cluster_are_confirmed() {
    let cluster = RedisCluster::start(3, 1);
    let limiter = RedisFleet::cluster(&cluster.urls())
        .timeout(Duration::from_millis(500))
        .durable_replicas(1)
        .rule(hourly(10, Target::Each))
        .start()
        .await
        .unwrap();
    // 8 callers, 30 asks each: 10 admitted each.
    let verdicts = concurrently(&limiter, |task, i| format!("c{}", (task + i) % 8)).await;
    assert_eq!(admitted(&verdicts), 80);
}

/// Charges and refusals of one caller across a failover, as the issue
/// describes it.
#[derive(Debug, Default)]
struct Across {
    before: usize,
    frozen: usize,
    after: usize,
}

impl Across {
    fn total(&self) -> usize {
        self.before + self.frozen + self.after
    }

    /// Prints the figures of one run (reported in docs/benchmarks.md).
    fn report(self, topology: &str, durable: bool) -> Self {
        eprintln!(
            "{topology}, durable admissions {}: {self:?}, {} admitted for a limit of 20",
            if durable { "on" } else { "off" },
            self.total()
        );
        self
    }
}

/// Waits until the caller's counter answers again (on the new primary),
/// looking without charging.
async fn until_counter_answers(limiter: &DistributedRateLimiter) {
    wait_until(
        Duration::from_secs(30),
        "the caller's counter answers",
        || async {
            let (who, api) = (Identity::user("caller"), Rules::one("api"));
            limiter.peek(&who, &api).await.is_ok()
        },
    )
    .await;
}

/// [`until_counter_answers`], then until a check of another caller is
/// answered by the store (the circuit breaker closed).
async fn until_served(limiter: &DistributedRateLimiter) {
    until_counter_answers(limiter).await;
    wait_until(Duration::from_secs(30), "checks served again", || async {
        let verdict = &asks(limiter, "probe", 1).await[0];
        verdict.source() == Source::Store
    })
    .await;
}

/// Waits until `primary` has a replica in sync again.
async fn until_replicated(primary: &RedisServer) {
    wait_until(Duration::from_secs(30), "a replica back", || async {
        let info = primary.cli(&["INFO", "replication"]);
        info.contains("connected_slaves:1") && info.contains("state=online")
    })
    .await;
}

/// The failover the mode is for, through Sentinel: the caller uses half its
/// limit; the replica freezes (SIGSTOP) and loses its link, while the
/// caller keeps asking; the primary dies (SIGKILL); the replica comes back
/// and is promoted; the caller keeps asking. The limit is 20.
async fn across_a_sentinel_failover(durable: bool) -> Across {
    let mut group = RedisSentinels::start();
    let urls: Vec<String> = group
        .addresses()
        .iter()
        .map(|a| format!("redis://{a}"))
        .collect();
    let replica = group.servers[1].port();
    let limiter = RedisFleet::sentinel(Sentinels::new(&urls, MASTER_NAME))
        .timeout(Duration::from_millis(400))
        .durable_replicas(u32::from(durable))
        .rule(rule())
        .start()
        .await
        .unwrap();
    wait_until(Duration::from_secs(5), "healthy", || async {
        limiter.health().await.is_healthy()
    })
    .await;

    let mut across = Across {
        before: admitted(&asks(&limiter, "caller", 10).await),
        ..Across::default()
    };
    assert_eq!(
        group.servers[0].cli(&["WAIT", "1", "1000"]),
        "1",
        "replicated"
    );
    // Frozen, and cut off: what the primary writes now reaches no replica
    // (a frozen process's socket would still buffer it).
    group.servers[1].pause();
    group.servers[0].cli(&["CLIENT", "KILL", "TYPE", "replica"]);
    across.frozen = admitted(&asks(&limiter, "caller", 20).await);
    group.servers[0].kill();
    group.servers[1].resume();
    wait_until(
        Duration::from_secs(30),
        "the replica promoted and in use",
        || async { limiter.health().await.node == Some(format!("127.0.0.1:{replica}")) },
    )
    .await;
    if durable {
        // The new primary has no replica left to acknowledge: nothing is
        // admitted until one is back.
        let alone = asks(&limiter, "caller", 3).await;
        assert_eq!(admitted(&alone), 0);
        group.servers[0].restart();
        group.servers[0].cli(&["REPLICAOF", "127.0.0.1", &replica.to_string()]);
        until_replicated(&group.servers[1]).await;
    }
    until_served(&limiter).await;
    across.after = admitted(&asks(&limiter, "caller", 30).await);
    across.report("Sentinel", durable)
}

/// Without the mode the failover forgets what was admitted while the
/// replica was cut off, and the fleet admits it again.
fn assert_without_the_mode(without: &Across) {
    assert_eq!((without.before, without.frozen), (10, 10));
    assert_eq!(
        without.after, 10,
        "the failover forgot the 10 admitted while cut off"
    );
}

/// With the mode nothing is admitted while the replica is cut off, and the
/// fleet stays within the limit. The refusals while alone were charged on
/// the new primary (stricter, never looser), so a few fewer may come after.
fn assert_with_the_mode(with: &Across) {
    assert_eq!((with.before, with.frozen), (10, 0));
    assert!(with.total() <= 20, "{with:?}");
    assert!(
        with.after >= 5,
        "admitted again once a replica is back: {with:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_sentinel_failover_durable_admissions_keep_the_limit() {
    let without = across_a_sentinel_failover(false).await;
    assert_without_the_mode(&without);
    let with = across_a_sentinel_failover(true).await;
    assert_with_the_mode(&with);
}

/// The same on a cluster (3 primaries, a replica each): the caller's
/// primary dies and its replica takes over.
async fn across_a_cluster_failover(durable: bool) -> Across {
    let mut cluster = RedisCluster::start(3, 1);
    let limiter = RedisFleet::cluster(&cluster.urls())
        .timeout(Duration::from_millis(400))
        .durable_replicas(u32::from(durable))
        .rule(rule())
        .start()
        .await
        .unwrap();
    let mut across = Across {
        before: admitted(&asks(&limiter, "caller", 10).await),
        ..Across::default()
    };
    // The caller's primary holds its counter; its replica follows it.
    let holds_counter = |node: &RedisServer| {
        node.cli(&["KEYS", "*"])
            .lines()
            .any(|key| !key.is_empty() && !key.contains("{rules}"))
    };
    let primary = (0..cluster.nodes().len())
        .find(|&i| {
            let node = &cluster.nodes()[i];
            node.cli(&["ROLE"]).starts_with("master") && holds_counter(node)
        })
        .expect("the caller's primary");
    let primary_port = cluster.nodes()[primary].port();
    let replica = (0..cluster.nodes().len())
        .find(|&i| {
            cluster.nodes()[i]
                .cli(&["INFO", "replication"])
                .contains(&format!("master_port:{primary_port}"))
        })
        .expect("the caller's replica");
    assert_eq!(cluster.nodes()[primary].cli(&["WAIT", "1", "1000"]), "1");

    cluster.nodes()[replica].pause();
    cluster.nodes()[primary].cli(&["CLIENT", "KILL", "TYPE", "replica"]);
    across.frozen = admitted(&asks(&limiter, "caller", 20).await);
    cluster.node(primary).kill();
    cluster.nodes()[replica].resume();
    cluster.wait_until_ok(|i| i != primary);
    if durable {
        // The promoted replica has no replica of its own: nothing of the
        // caller's is admitted until one is back.
        until_counter_answers(&limiter).await;
        let alone = asks(&limiter, "caller", 3).await;
        assert_eq!(admitted(&alone), 0);
        let promoted = cluster.nodes()[replica].port().to_string();
        let promoted_id = cluster.nodes()[replica].cli(&["CLUSTER", "MYID"]);
        let node = cluster.node(primary);
        node.restart();
        node.cli(&["CLUSTER", "MEET", "127.0.0.1", &promoted]);
        wait_until(
            Duration::from_secs(10),
            "the restarted node meets the cluster",
            || async { node.cli(&["CLUSTER", "REPLICATE", &promoted_id]) == "OK" },
        )
        .await;
        until_replicated(&cluster.nodes()[replica]).await;
    }
    until_served(&limiter).await;
    across.after = admitted(&asks(&limiter, "caller", 30).await);
    across.report("cluster", durable)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_cluster_failover_durable_admissions_keep_the_limit() {
    let without = across_a_cluster_failover(false).await;
    assert_without_the_mode(&without);
    let with = across_a_cluster_failover(true).await;
    assert_with_the_mode(&with);
}
