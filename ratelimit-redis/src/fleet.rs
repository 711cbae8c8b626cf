//! [`RedisFleet`]: a limiter for a fleet of app servers sharing one Redis,
//! set up in one step.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ratelimit_core::config::{FleetSize, KeyPrefix};
use ratelimit_core::rule_store::WeakLimiter;
use ratelimit_core::{DistributedRateLimiter, Error, LimiterConfig, Rule, clock::Clock};

use crate::primary::Primary;
use crate::topology::Topology;
use crate::{RedisRules, RedisStoreBuilder, Sentinels};

/// A [`DistributedRateLimiter`] whose counters and rules live in one Redis
/// (or Redis Cluster), shared by every instance that starts one on it.
///
/// One URL, one key prefix and one timeout for both; the rules given here
/// are *seeds*: they fill a Redis that holds no rules yet and are in force
/// until Redis first answers, and never overwrite (or add to) the rules a
/// fleet already has. The limiter follows the fleet's rule changes for as
/// long as it lives — there is nothing else to keep.
///
/// [`start`](Self::start) never waits for Redis: an instance started while
/// Redis is down answers by its failure policy, and when Redis comes up it
/// connects, loads (or seeds) the fleet's rules and checks there, without a
/// restart.
///
/// ```no_run
/// use std::time::Duration;
/// use ratelimit_core::{config::DenyCache, config::FailurePolicy, Quota, Rule, Target};
/// use ratelimit_redis::RedisFleet;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ratelimit_core::Error> {
/// let limiter = RedisFleet::new("redis://127.0.0.1:6379/")
///     .timeout(Duration::from_millis(50))
///     .rule(Rule::new("api", Target::Each, Quota::per_second(100)?)?)
///     .configure(|config| {
///         config
///             .failure_policy(FailurePolicy::FailOpen)
///             .deny_cache(DenyCache::new(100_000))
///     })
///     .start()
///     .await?;
/// let allowed = limiter.is_allowed("user:42", "api").await;
/// # let _ = allowed;
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct RedisFleet {
    topology: Topology,
    prefix: KeyPrefix,
    timeout: Duration,
    poll_every: Duration,
    seeds: Vec<Rule>,
    clock: Option<Arc<dyn Clock>>,
    fleet_share: bool,
    durable_replicas: u32,
    configure: Option<Box<dyn FnOnce(LimiterConfig) -> LimiterConfig + Send>>,
}

impl fmt::Debug for RedisFleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFleet")
            .field("topology", &self.topology)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("seeds", &self.seeds.len())
            .finish_non_exhaustive()
    }
}

impl RedisFleet {
    /// A fleet on the Redis at `url` (`redis://` or `rediss://`; user and
    /// password in the URL are passed through).
    pub fn new(url: &str) -> Self {
        Self::with(Topology::Single(url.to_owned()))
    }

    /// A fleet on a Redis Cluster, reached through `nodes` (any reachable
    /// subset of its nodes).
    pub fn cluster<S: AsRef<str>>(nodes: &[S]) -> Self {
        Self::with(Topology::cluster(nodes))
    }

    /// A fleet on the primary that `sentinels` name, following it through
    /// failovers: counters and rules move to the new primary by themselves
    /// (see [`Sentinels`]).
    ///
    /// ```no_run
    /// use ratelimit_core::{config::FailurePolicy, Quota, Rule, Target};
    /// use ratelimit_redis::{RedisFleet, Sentinels};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ratelimit_core::Error> {
    /// let sentinels = Sentinels::new(
    ///     &["redis://10.0.0.5:26379", "redis://10.0.0.6:26379", "redis://10.0.0.7:26379"],
    ///     "ratelimit",
    /// );
    /// let limiter = RedisFleet::sentinel(sentinels)
    ///     // An admission counts once a replica holds it; refuse the rest.
    ///     .durable_replicas(1)
    ///     .rule(
    ///         Rule::new("api", Target::Each, Quota::per_second(100)?)?
    ///             .with_failure_policy(FailurePolicy::FailClosed),
    ///     )
    ///     .start()
    ///     .await?;
    /// println!("using {:?}", limiter.health().await.node);
    /// # Ok(())
    /// # }
    /// ```
    pub fn sentinel(sentinels: Sentinels) -> Self {
        Self::with(Topology::Sentinel(sentinels))
    }

    fn with(topology: Topology) -> Self {
        Self {
            topology,
            prefix: KeyPrefix::default(),
            timeout: LimiterConfig::DEFAULT_TIMEOUT,
            poll_every: Duration::from_secs(5),
            seeds: Vec::new(),
            clock: None,
            fleet_share: true,
            durable_replicas: 0,
            configure: None,
        }
    }

    /// The prefix of every key, counters and rules alike (default `rl`):
    /// fleets with different prefixes share a Redis without meeting.
    pub fn prefix(mut self, prefix: KeyPrefix) -> Self {
        self.prefix = prefix;
        self
    }

    /// The bound on every Redis call (default 50 ms): a check that takes
    /// longer is answered by the failure policy.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A seed rule (see the type docs).
    pub fn rule(mut self, rule: Rule) -> Self {
        self.seeds.push(rule);
        self
    }

    /// Seed rules (see the type docs).
    pub fn rules(mut self, rules: impl IntoIterator<Item = Rule>) -> Self {
        self.seeds.extend(rules);
        self
    }

    /// How often the limiter reloads the fleet's rules even without an
    /// announcement (default 5 s), a safety net for lost announcements.
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll_every = every;
        self
    }

    /// Reads time from `clock` instead of Redis's `TIME` (for counters and
    /// hot-key batches alike); for tests with a
    /// [`FakeClock`](ratelimit_core::clock::FakeClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Whether the local fallback enforces the fleet's share of each quota
    /// (default `true`): every instance writes a heartbeat to Redis each
    /// second ([`RedisRules::heartbeat`]) and keeps the count of instances
    /// seen alive, and while Redis is down a rule with
    /// [`FailurePolicy::LocalFallback`](ratelimit_core::config::FailurePolicy::LocalFallback)
    /// admits on each instance its quota divided by that count — the fleet
    /// together stays within the rule when traffic is spread evenly. With
    /// `false` each instance enforces the whole quota: more lenient, N
    /// times the rule for N instances.
    pub fn fleet_share(mut self, on: bool) -> Self {
        self.fleet_share = on;
        self
    }

    /// Durable admissions: an admission counts only once `replicas`
    /// replicas acknowledged it, so that a failover does not forget it
    /// (0, the default, for none). An admission not acknowledged in time
    /// is answered by the rule's failure policy; with `FailClosed` the
    /// fleet then stays within its rules across a failover that promotes
    /// an acknowledging replica. See [`RedisStoreBuilder::durable`] for
    /// what it guarantees and what it does not.
    pub fn durable_replicas(mut self, replicas: u32) -> Self {
        self.durable_replicas = replicas;
        self
    }

    /// Everything else about the limiter — failure policy, deny cache,
    /// circuit breaker — set on its [`LimiterConfig`] (whose store, rule
    /// store, key prefix, timeout and seed rules this builder has already
    /// set).
    pub fn configure(
        mut self,
        configure: impl FnOnce(LimiterConfig) -> LimiterConfig + Send + 'static,
    ) -> Self {
        self.configure = Some(Box::new(configure));
        self
    }

    /// The limiter, following the fleet's rules. Fails only for what no
    /// retry can fix (a URL that cannot be parsed); never waits for Redis.
    pub async fn start(self) -> Result<DistributedRateLimiter, Error> {
        // With Sentinel, counters and rules follow one primary together.
        let topology = match self.topology {
            Topology::Sentinel(sentinels) => Topology::Followed(
                Primary::new(&sentinels, Duration::from_secs(1)).map_err(store_error)?,
            ),
            topology => topology,
        };
        let store = RedisStoreBuilder::new(topology.clone());
        let store = match &self.clock {
            Some(clock) => store.clock(Arc::clone(clock)),
            None => store,
        };
        let store = store
            .timeout(self.timeout)
            .durable(self.durable_replicas)
            .build_lazy()?;
        let rules = match &topology {
            Topology::Single(url) => RedisRules::new(url, &self.prefix)?,
            Topology::Cluster(nodes) => RedisRules::new_cluster(nodes, &self.prefix)?,
            Topology::Sentinel(sentinels) => RedisRules::new_sentinel(sentinels, &self.prefix)?,
            Topology::Followed(primary) => {
                RedisRules::on_primary(Arc::clone(primary), &self.prefix)
            }
        };
        let rules = rules.poll_every(self.poll_every);
        let fleet = self.fleet_share.then(FleetSize::new);
        let mut config = LimiterConfig::new(Arc::new(store))
            .key_prefix(self.prefix)
            .timeout(self.timeout)
            .rule_store(Arc::new(rules.clone()));
        if let Some(fleet) = &fleet {
            config = config.fleet_size(fleet.clone());
        }
        if let Some(clock) = self.clock {
            config = config.clock(clock);
        }
        let mut config = self.seeds.into_iter().fold(config, LimiterConfig::rule);
        if let Some(configure) = self.configure {
            config = configure(config);
        }
        let limiter = DistributedRateLimiter::start(config).await?;
        if let Some(fleet) = fleet {
            tokio::spawn(beat(rules, fleet, WeakLimiter::new(&limiter)));
        }
        Ok(limiter)
    }
}

/// How often an instance announces itself, and how long an announcement
/// counts: an instance stopped (or cut off) drops out of the count within
/// three beats.
const BEAT_EVERY: Duration = Duration::from_secs(1);
const BEAT_TTL: Duration = Duration::from_secs(3);

/// Announces this instance every [`BEAT_EVERY`] and keeps `fleet` at the
/// count Redis returns, for as long as the limiter lives. While Redis does
/// not answer, the last count stands: it is the fleet the outage began with.
async fn beat(rules: RedisRules, fleet: FleetSize, limiter: WeakLimiter) {
    let instance = format!("{:016x}", rand_id());
    let mut every = tokio::time::interval(BEAT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if limiter.upgrade().is_none() {
            return;
        }
        if let Ok(alive) = rules.heartbeat(&instance, BEAT_TTL).await {
            fleet.set(alive);
        }
    }
}

/// A random instance id: the process's own random hasher seed, mixed with
/// the time, so that instances started together differ.
fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

fn store_error(error: redis::RedisError) -> Error {
    Error::Store(Box::new(error))
}
