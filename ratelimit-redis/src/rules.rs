//! [`RedisRules`]: rules shared by every instance through Redis.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use ratelimit_core::{
    DistributedRateLimiter, Error, KeyPrefix, Rule, RuleSnapshot, RuleStore, RuleWrite, RuleWritten,
};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Client, RedisError};
use tokio::task::JoinHandle;

/// Rules kept in Redis and announced on a channel, so that every instance
/// sharing the Redis applies every change.
///
/// - The rules live in one hash (`PREFIX:{rules}:set`, id → record) with a
///   version counter beside it (`PREFIX:{rules}:version`); one script applies
///   each change, bumps the version and publishes it on `PREFIX:rules`, all
///   atomically, so concurrent changes from several instances are ordered by
///   Redis and every instance ends with the same set.
/// - [`watch`](Self::watch) keeps a limiter current: it reloads the rules on
///   every announcement, after every (re)connection (catching up on what it
///   missed while disconnected), and every
///   [`poll_every`](Self::poll_every) as a safety net.
///
/// Rules survive instance restarts (they are loaded at start); they survive
/// a Redis restart only if Redis persists its data.
///
/// ```no_run
/// use std::sync::Arc;
/// use ratelimit_core::{DistributedRateLimiter, KeyPrefix, LimiterConfig};
/// use ratelimit_redis::{RedisRules, RedisStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ratelimit_core::Error> {
/// let url = "redis://127.0.0.1:6379/";
/// let rules = Arc::new(RedisRules::connect(url, &KeyPrefix::default()).await?);
/// let config = LimiterConfig::new(Arc::new(RedisStore::connect(url).await?))
///     .rule_store(rules.clone());
/// let limiter = DistributedRateLimiter::start(config).await?;
/// let _watch = rules.watch(limiter.clone());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisRules {
    /// Where announcements are heard: any node of a cluster hears them all,
    /// so the watcher moves to the next one when one is unreachable.
    subscribe_to: Vec<Client>,
    connection: RulesConnection,
    set_key: String,
    version_key: String,
    channel: String,
    timeout: Duration,
    poll_every: Duration,
}

impl fmt::Debug for RedisRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRules")
            .field("set_key", &self.set_key)
            .field("channel", &self.channel)
            .field("timeout", &self.timeout)
            .field("poll_every", &self.poll_every)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
enum RulesConnection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

const WRITE_SOURCE: &str = include_str!("rules_write.lua");
const LOAD_SOURCE: &str =
    "return {redis.call('GET', KEYS[2]) or '0', redis.call('HGETALL', KEYS[1])}";

impl RedisRules {
    /// Connects to the Redis at `url`, keeping rules under `prefix`.
    pub async fn connect(url: &str, prefix: &KeyPrefix) -> Result<Self, Error> {
        let client = Client::open(url).map_err(store_error)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_max_delay(Duration::from_millis(500));
        let connect = ConnectionManager::new_with_config(client.clone(), config);
        let connection = bounded_connect(connect).await?;
        Ok(Self::with(
            vec![client],
            RulesConnection::Single(connection),
            prefix,
        ))
    }

    /// Connects to a Redis Cluster through `nodes`. The rule keys share one
    /// hash tag (`{rules}`), so every change stays one atomic script on one
    /// node; announcements reach every node of a cluster, and the watcher
    /// listens on the first of `nodes` it can reach.
    pub async fn connect_cluster<S: AsRef<str>>(
        nodes: &[S],
        prefix: &KeyPrefix,
    ) -> Result<Self, Error> {
        let clients = nodes
            .iter()
            .map(|node| Client::open(node.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(store_error)?;
        let client = ClusterClientBuilder::new(nodes.iter().map(AsRef::as_ref))
            .connection_timeout(Duration::from_secs(1))
            .build()
            .map_err(store_error)?;
        let connection = bounded_connect(client.get_async_connection()).await?;
        Ok(Self::with(
            clients,
            RulesConnection::Cluster(connection),
            prefix,
        ))
    }

    fn with(subscribe_to: Vec<Client>, connection: RulesConnection, prefix: &KeyPrefix) -> Self {
        let prefix = prefix.as_str();
        Self {
            subscribe_to,
            connection,
            set_key: format!("{prefix}:{{rules}}:set"),
            version_key: format!("{prefix}:{{rules}}:version"),
            channel: format!("{prefix}:rules"),
            timeout: Duration::from_secs(1),
            poll_every: Duration::from_secs(5),
        }
    }

    /// How often [`watch`](Self::watch) reloads even without an announcement
    /// (default 5 s).
    #[must_use]
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll_every = every;
        self
    }

    /// Keeps `limiter` current with the shared rules until the returned
    /// handle is dropped. Spawns a Tokio task.
    pub fn watch(&self, limiter: DistributedRateLimiter) -> RuleWatch {
        let clients = self.subscribe_to.clone();
        let channel = self.channel.clone();
        let poll_every = self.poll_every;
        RuleWatch(tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            for client in clients.iter().cycle() {
                if let Ok(mut pubsub) = client.get_async_pubsub().await
                    && pubsub.subscribe(&channel).await.is_ok()
                {
                    backoff = Duration::from_millis(50);
                    // Catch up on whatever was announced while disconnected.
                    let _ = limiter.refresh_rules().await;
                    let mut messages = pubsub.on_message();
                    loop {
                        tokio::select! {
                            message = messages.next() => {
                                if message.is_none() {
                                    break; // connection lost: reconnect
                                }
                            }
                            () = tokio::time::sleep(poll_every) => {}
                        }
                        let _ = limiter.refresh_rules().await;
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }))
    }

    /// Runs a rules script with `EVAL` (rule changes are rare: no script
    /// cache to depend on, on any node), bounded by the timeout.
    async fn eval<T: redis::FromRedisValue>(
        &self,
        source: &str,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, Error> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(source).arg(keys.len()).arg(keys).arg(args);
        let call = async {
            let value = match &self.connection {
                RulesConnection::Single(c) => c.clone().req_packed_command(&cmd).await,
                RulesConnection::Cluster(c) => c.clone().req_packed_command(&cmd).await,
            }?;
            redis::from_redis_value::<T>(value.extract_error()?).map_err(RedisError::from)
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(store_error),
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }
}

/// Keeps a limiter's rules current; stops when dropped.
#[derive(Debug)]
pub struct RuleWatch(JoinHandle<()>);

impl Drop for RuleWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn bounded_connect<T>(
    connect: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, Error> {
    let limit = Duration::from_secs(2);
    match tokio::time::timeout(limit, connect).await {
        Ok(result) => result.map_err(store_error),
        Err(_) => Err(Error::Timeout(limit)),
    }
}

fn store_error(error: RedisError) -> Error {
    Error::Store(Box::new(error))
}

#[async_trait]
impl RuleStore for RedisRules {
    async fn load(&self) -> Result<RuleSnapshot, Error> {
        let (version, records): (String, HashMap<String, String>) = self
            .eval(LOAD_SOURCE, &[&self.set_key, &self.version_key], &[])
            .await?;
        let version = version
            .parse()
            .map_err(|_| Error::InvalidResponse(format!("rules version {version:?}")))?;
        let rules = records
            .iter()
            .map(|(id, record)| Rule::from_record(id, record))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RuleSnapshot { version, rules })
    }

    async fn write(&self, change: RuleWrite) -> Result<RuleWritten, Error> {
        let (op, id, record, expected) = match &change {
            RuleWrite::Insert(rule) => (
                "insert",
                rule.id().as_str(),
                rule.to_record(),
                String::new(),
            ),
            RuleWrite::Upsert(rule) => (
                "upsert",
                rule.id().as_str(),
                rule.to_record(),
                String::new(),
            ),
            RuleWrite::Replace { expected, new } => {
                if expected.id() != new.id() {
                    return Err(Error::RuleConflict(new.id().to_string()));
                }
                (
                    "replace",
                    new.id().as_str(),
                    new.to_record(),
                    expected.to_record(),
                )
            }
            RuleWrite::Remove(id) => ("remove", id.as_str(), String::new(), String::new()),
            RuleWrite::Touch => ("touch", "", String::new(), String::new()),
        };
        let (status, version, previous): (String, u64, String) = self
            .eval(
                WRITE_SOURCE,
                &[&self.set_key, &self.version_key],
                &[op, id, &record, &expected, &self.channel],
            )
            .await?;
        let previous = if previous.is_empty() {
            None
        } else {
            Some(Rule::from_record(id, &previous)?)
        };
        match status.as_str() {
            "ok" => Ok(RuleWritten { version, previous }),
            "exists" => Err(Error::RuleExists(id.to_owned())),
            "missing" => Err(Error::UnknownRule(id.to_owned())),
            "conflict" => Err(Error::RuleConflict(id.to_owned())),
            other => Err(Error::InvalidResponse(format!(
                "rule write status {other:?}"
            ))),
        }
    }
}
