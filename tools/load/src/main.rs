//! The load tool: N concurrent tasks over M limiter instances against a
//! Redis, for a bounded time; prints checks/s, latency percentiles, the
//! allowed count against what the rules permit, and the server's commands and
//! CPU per check.
//!
//! ```text
//! cargo run --release -p ratelimit-load -- --spawn-redis --tasks 16
//! cargo run --release -p ratelimit-load -- --spawn-redis --tasks 16 --mode raw
//! cargo run --release -p ratelimit-load -- --spawn-cluster --instances 3 --limit 1 --deny-cache 100000
//! cargo run --release -p ratelimit-load -- --spawn-redis --tasks 16 --durable-replicas 1
//! ```
//!
//! `tools/load/fleet.sh` runs the README's whole table of scenarios.
//!
//! Modes: `limiter` (the whole `DistributedRateLimiter` check), `store`
//! (`RedisStore::check` with prepared keys) and `raw` (`EVALSHA` of the same
//! script over the same kind of connection, with no decoding: the ceiling).
//!
//! Traffic goes only to loopback unless `--allow-remote` is given.
#![allow(clippy::print_stdout)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use ratelimit_core::store::CheckItem;
use ratelimit_core::{
    DistributedRateLimiter, Error, Identity, LimiterConfig, Quota, Rule, Rules, Store, Target,
    config::DenyCache, config::KeyPrefix, verdict::Source,
};
use ratelimit_redis::RedisStore;
use ratelimit_redis::script::{self, Form};
use ratelimit_test_support::{RedisCluster, RedisServer};
use redis::aio::ConnectionManager;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// `DistributedRateLimiter::check` of the rules, named.
    Limiter,
    /// `RedisStore::check` with prepared keys.
    Store,
    /// `EVALSHA` of the same script, reply not decoded: the ceiling.
    Raw,
}

#[derive(Debug, Parser)]
#[command(about = "Drive a Redis-backed limiter and report throughput and latency")]
struct Args {
    /// The Redis to load (loopback only unless --allow-remote).
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// Start a private redis-server on a free loopback port instead.
    #[arg(long)]
    spawn_redis: bool,
    /// Start a private Redis Cluster of 3 masters on free loopback ports
    /// instead (limiter and store modes).
    #[arg(long)]
    spawn_cluster: bool,
    /// Allow a Redis URL that is not on loopback.
    #[arg(long)]
    allow_remote: bool,
    /// What each check calls.
    #[arg(long, value_enum, default_value_t = Mode::Limiter)]
    mode: Mode,
    /// Limiter instances, each with its own connection.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// Concurrent tasks, spread over the instances.
    #[arg(long, default_value_t = 16)]
    tasks: usize,
    /// Distinct callers.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Rules per check (1 to 8), all per caller, so one slot and one call.
    #[arg(long, default_value_t = 1)]
    rules: usize,
    /// Make the rules global: one counter per rule shared by every caller
    /// (the hot-key case).
    #[arg(long)]
    global: bool,
    /// Each rule's limit per window per caller (small: mostly denied).
    #[arg(long, default_value_t = 1_000_000)]
    limit: u32,
    /// Each rule's window (default one hour: nothing rests during a run).
    #[arg(long, default_value_t = 3_600_000)]
    window_ms: u64,
    /// Hot-key mode: each instance reserves up to this many units per
    /// store call (`Rule::with_batch`; limiter mode; 0: off).
    #[arg(long, default_value_t = 0)]
    batch: u32,
    /// Before the run, charge every caller's counters to their full burst
    /// (pipelined SETs of their TATs), so that every check is denied from
    /// the start (standalone only).
    #[arg(long)]
    prefill: bool,
    /// Multiplexed connections per instance (limiter and store modes).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// How long to run.
    #[arg(long, default_value_t = 3_000)]
    duration_ms: u64,
    /// Give each limiter instance a local deny cache of this many keys
    /// (limiter mode; 0: none).
    #[arg(long, default_value_t = 0)]
    deny_cache: usize,
    /// Durable admissions: each admission waits for this many replicas
    /// (limiter and store modes; 0: off). With --spawn-redis or
    /// --spawn-cluster, starts that many replicas per primary.
    #[arg(long, default_value_t = 0)]
    durable_replicas: u32,
    /// Replicas per primary to start with --spawn-redis or --spawn-cluster
    /// (default: --durable-replicas), so that a run without the mode can
    /// pay for replication too.
    #[arg(long)]
    replicas: Option<u32>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (_server, _cluster, _replicas);
    let replicas = usize::try_from(args.replicas.unwrap_or(args.durable_replicas))?;
    let urls: Vec<String> = if args.spawn_cluster {
        if args.mode == Mode::Raw {
            return Err("--mode raw runs on a single server".into());
        }
        let cluster = RedisCluster::start(3, replicas);
        let urls = cluster.urls();
        _cluster = cluster;
        urls
    } else if args.spawn_redis {
        let server = RedisServer::start();
        let url = server.url();
        _replicas = spawn_replicas(&server, replicas)?;
        _server = server;
        vec![url]
    } else if let Some(url) = &args.redis_url {
        vec![url.clone()]
    } else {
        return Err("give --redis-url URL, --spawn-redis or --spawn-cluster".into());
    };
    for url in &urls {
        if !args.allow_remote && !is_loopback(url) {
            return Err(format!("{url} is not on loopback (use --allow-remote)").into());
        }
    }
    let url = urls.first().cloned().unwrap_or_default();
    let rules = args.rules.clamp(1, 8);
    let rule_ids: Vec<String> = (0..rules).map(|i| format!("r{i}")).collect();
    let quota = Quota::new(args.limit, Duration::from_millis(args.window_ms))?;

    let mut admins = Vec::new();
    for url in &urls {
        admins.push(ConnectionManager::new(redis::Client::open(url.as_str())?).await?);
    }
    if args.prefill {
        let (Some(admin), false) = (admins.first_mut(), args.spawn_cluster) else {
            return Err("--prefill runs on a single server".into());
        };
        let target = if args.global {
            Target::Global
        } else {
            Target::Each
        };
        let rules: Vec<Rule> = rule_ids
            .iter()
            .map(|id| Rule::new(id, target.clone(), quota))
            .collect::<Result<_, _>>()?;
        prefill(admin, &rules, args.keys.max(1), quota).await?;
    }
    let before = server_stats(&mut admins).await?;
    let client_cpu_before = own_cpu_seconds();

    let started = Instant::now();
    let deadline = started + Duration::from_millis(args.duration_ms);
    let mut tasks = Vec::new();
    for instance in 0..args.instances.max(1) {
        let driver = Driver::new(&args, &urls, &rule_ids, quota).await?;
        for t in (instance..args.tasks).step_by(args.instances.max(1)) {
            let driver = driver.clone();
            let keys = args.keys.max(1);
            tasks.push(tokio::spawn(
                async move { driver.run(t, keys, deadline).await },
            ));
        }
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut checks, mut allowed, mut failed) = (0u64, 0u64, 0u64);
    for task in tasks {
        let result = task.await??;
        histogram.add(&result.histogram)?;
        checks += result.checks;
        allowed += result.allowed;
        failed += result.failed;
    }
    let after = server_stats(&mut admins).await?;
    let client_cpu_us = (own_cpu_seconds() - client_cpu_before) * 1e6;
    let seconds = Duration::from_millis(args.duration_ms).as_secs_f64();
    let commands = after.commands.saturating_sub(before.commands);
    let cpu_us = (after.cpu_seconds - before.cpu_seconds) * 1e6;
    let counters = if args.global { 1 } else { args.keys as u64 };
    // Each counter's burst, plus what its rate adds while the run lasts.
    let run_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let refills = run_us / quota.interval_micros();
    let permitted = counters.saturating_mul(u64::from(quota.burst()).saturating_add(refills));
    let bytes = match admins.first_mut() {
        Some(admin) if !args.spawn_cluster => memory_per_key(admin, &url).await?,
        _ => None,
    };
    println!(
        "mode={:?} redis={} instances={} tasks={} keys={} rules={}{} checks={} checks/s={:.0} \
         p50={}us p99={}us p999={}us allowed={} permitted<={} failed={} \
         redis_cmds/s={:.0} (incl. calls inside scripts) redis_cmds/check={:.3} \
         redis_cpu_us/check={:.2} client_cpu_us/check={:.2} memory_usage_bytes/key={} \
         deny_cache={} batch={} connections={} durable_replicas={}",
        args.mode,
        if args.spawn_cluster {
            "cluster"
        } else {
            "standalone"
        },
        args.instances,
        args.tasks,
        args.keys,
        rules,
        if args.global { " (global)" } else { "" },
        checks,
        checks as f64 / seconds,
        histogram.value_at_quantile(0.50),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        allowed,
        permitted,
        failed,
        commands as f64 / seconds,
        commands as f64 / checks.max(1) as f64,
        if checks > 0 {
            cpu_us / checks as f64
        } else {
            0.0
        },
        client_cpu_us / checks.max(1) as f64,
        bytes.map_or_else(|| "-".to_owned(), |b| b.to_string()),
        args.deny_cache,
        args.batch,
        args.connections,
        args.durable_replicas,
    );
    if allowed > permitted {
        return Err(format!("admitted {allowed} > permitted {permitted}").into());
    }
    Ok(())
}

/// `count` replicas of `primary`, once each is in sync.
fn spawn_replicas(
    primary: &RedisServer,
    count: usize,
) -> Result<Vec<RedisServer>, Box<dyn std::error::Error>> {
    let port = primary.port().to_string();
    let replicas: Vec<RedisServer> = (0..count)
        .map(|_| RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    for replica in &replicas {
        while !replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
        {
            if Instant::now() > deadline {
                return Err("a replica did not sync within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(replicas)
}

#[derive(Clone)]
enum Driver {
    Limiter(DistributedRateLimiter, Rules),
    Store(RedisStore, Arc<Vec<Rule>>, Quota),
    Raw(ConnectionManager, Arc<Vec<Rule>>, Quota),
}

struct TaskResult {
    histogram: Histogram<u64>,
    checks: u64,
    allowed: u64,
    failed: u64,
}

impl Driver {
    async fn new(
        args: &Args,
        urls: &[String],
        rules: &[String],
        quota: Quota,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let connections = args.connections;
        let url = urls.first().map(String::as_str).unwrap_or_default();
        let builder = || {
            let builder = if args.spawn_cluster {
                RedisStore::cluster_builder(urls)
            } else {
                RedisStore::builder(url)
            };
            builder.durable(args.durable_replicas)
        };
        let target = if args.global {
            Target::Global
        } else {
            Target::Each
        };
        let limits: Vec<Rule> = rules
            .iter()
            .map(|id| Rule::new(id, target.clone(), quota))
            .collect::<Result<_, _>>()?;
        Ok(match args.mode {
            Mode::Limiter => {
                let store = builder()
                    .timeout(Duration::from_secs(1))
                    .connections(connections)
                    .build()
                    .await?;
                let mut config =
                    LimiterConfig::new(Arc::new(store)).timeout(Duration::from_secs(1));
                if args.deny_cache > 0 {
                    config = config.deny_cache(DenyCache::new(args.deny_cache));
                }
                let limiter = DistributedRateLimiter::new(config);
                for rule in limits {
                    limiter.insert_rule(rule.with_batch(args.batch)).await?;
                }
                Self::Limiter(limiter, Rules::named(rules.iter().cloned()))
            }
            Mode::Store => {
                let store = builder()
                    .timeout(Duration::from_secs(1))
                    .connections(connections)
                    .build()
                    .await?;
                Self::Store(store, Arc::new(limits), quota)
            }
            Mode::Raw => {
                let connection = ConnectionManager::new(redis::Client::open(url)?).await?;
                let mut load = connection.clone();
                let _: String = script::gcra_script().load_async(&mut load).await?;
                Self::Raw(connection, Arc::new(limits), quota)
            }
        })
    }

    async fn run(self, task: usize, keys: usize, deadline: Instant) -> Result<TaskResult, Error> {
        let mut result = TaskResult {
            histogram: Histogram::new_with_bounds(1, 60_000_000, 3)
                .map_err(|e| Error::Store(e.into()))?,
            checks: 0,
            allowed: 0,
            failed: 0,
        };
        let prefix = KeyPrefix::default();
        let mut n = task.wrapping_mul(7_919);
        while Instant::now() < deadline {
            n = n.wrapping_add(1);
            let id = (n % keys).to_string();
            let caller = Identity::user(&id);
            let started = Instant::now();
            let allowed = match &self {
                Self::Limiter(limiter, rules) => limiter.check(&caller, rules, 1).await.map(|v| {
                    matches!(
                        v.source(),
                        Source::Store | Source::DenyCache | Source::Batch
                    )
                    .then_some(v.allowed())
                }),
                Self::Store(store, rules, quota) => {
                    let keys = keys_of(&prefix, rules, &caller);
                    let items = items_of(&keys, *quota);
                    store.check(&items).await.map(|o| Some(o.allowed))
                }
                Self::Raw(connection, rules, quota) => {
                    let keys = keys_of(&prefix, rules, &caller);
                    let items = items_of(&keys, *quota);
                    let cmd = script::check_command(&items, true, None, Form::Sha);
                    let mut connection = connection.clone();
                    cmd.query_async::<redis::Value>(&mut connection)
                        .await
                        .map(|_| None)
                        .map_err(|e| Error::Store(Box::new(e)))
                }
            };
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let _ = result.histogram.record(micros.max(1));
            result.checks += 1;
            // `None`: the failure policy answered, not the store.
            match allowed {
                Ok(Some(true)) => result.allowed += 1,
                Ok(Some(false)) => {}
                Ok(None) | Err(_) => result.failed += 1,
            }
        }
        Ok(result)
    }
}

/// The storage keys of `rules` for `caller`, as the limiter builds them.
fn keys_of(prefix: &KeyPrefix, rules: &[Rule], caller: &Identity<'_>) -> Vec<Vec<u8>> {
    rules
        .iter()
        .filter_map(|rule| prefix.key(rule, caller))
        .collect()
}

/// Writes the TAT of a counter that has just spent its whole burst into
/// every caller's counters, 10,000 callers per pipeline.
async fn prefill(
    connection: &mut ConnectionManager,
    rules: &[Rule],
    keys: usize,
    quota: Quota,
) -> Result<(), redis::RedisError> {
    let (seconds, micros): (u64, u64) = redis::cmd("TIME").query_async(connection).await?;
    let tat = seconds * 1_000_000 + micros + quota.tolerance_micros();
    let px = quota.tolerance_micros().div_ceil(1_000);
    let prefix = KeyPrefix::default();
    for start in (0..keys).step_by(10_000) {
        let mut pipe = redis::pipe();
        for id in start..(start + 10_000).min(keys) {
            let id = id.to_string();
            for key in keys_of(&prefix, rules, &Identity::user(&id)) {
                pipe.cmd("SET").arg(key).arg(tat).arg("PX").arg(px).ignore();
            }
        }
        pipe.query_async::<()>(connection).await?;
    }
    Ok(())
}

fn items_of(keys: &[Vec<u8>], quota: Quota) -> Vec<CheckItem<'_>> {
    keys.iter().map(|key| CheckItem::new(key, quota)).collect()
}

/// This process's CPU time (user + system) from `/proc/self/stat`, in
/// seconds (0 where there is no such file).
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the whole line, in clock
    // ticks of 1/100 s on Linux.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

struct ServerStats {
    commands: u64,
    cpu_seconds: f64,
}

/// Summed over every node.
async fn server_stats(nodes: &mut [ConnectionManager]) -> Result<ServerStats, redis::RedisError> {
    let mut total = ServerStats {
        commands: 0,
        cpu_seconds: 0.0,
    };
    for node in nodes {
        let stats = node_stats(node).await?;
        total.commands += stats.commands;
        total.cpu_seconds += stats.cpu_seconds;
    }
    Ok(total)
}

async fn node_stats(connection: &mut ConnectionManager) -> Result<ServerStats, redis::RedisError> {
    let info: String = redis::cmd("INFO")
        .arg("everything")
        .query_async(connection)
        .await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .unwrap_or("0")
            .trim()
            .to_owned()
    };
    Ok(ServerStats {
        commands: field("total_commands_processed").parse().unwrap_or(0),
        cpu_seconds: field("used_cpu_sys").parse::<f64>().unwrap_or(0.0)
            + field("used_cpu_user").parse::<f64>().unwrap_or(0.0),
    })
}

/// `MEMORY USAGE` of a limiter key, averaged over 100 fresh keys written with
/// a one-hour quota (so they are still there to be measured).
async fn memory_per_key(
    connection: &mut ConnectionManager,
    url: &str,
) -> Result<Option<u64>, Box<dyn std::error::Error>> {
    let store = RedisStore::connect(url).await?;
    let prefix = KeyPrefix::default();
    let quota = Quota::new(1, Duration::from_secs(3_600))?;
    let rule = Rule::new("memory-probe", Target::Each, quota)?;
    let (mut total, mut found) = (0u64, 0u64);
    for i in 0..100 {
        let id = format!("user-{i:06}");
        let key = prefix.key(&rule, &Identity::user(&id)).unwrap_or_default();
        store.check(&[CheckItem::new(&key, quota)]).await?;
        let bytes: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&key)
            .query_async(connection)
            .await?;
        if let Some(bytes) = bytes {
            total += bytes;
            found += 1;
        }
        let _: () = redis::cmd("DEL").arg(&key).query_async(connection).await?;
    }
    Ok((found > 0).then(|| total / found))
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let host_port = rest.split('/').next().unwrap_or("");
    let host_port = host_port.rsplit('@').next().unwrap_or(host_port);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
