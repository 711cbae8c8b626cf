//! [`RedisRules`]: rules shared by every instance through Redis.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use ratelimit_core::rule_store::{Following, RuleSnapshot, RuleWrite, RuleWritten, WeakLimiter};
use ratelimit_core::{Error, Rule, RuleStore, config::KeyPrefix};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Client, RedisError};
use tokio::task::JoinHandle;

use crate::Sentinels;
use crate::lazy::{Lazy, redact};
use crate::primary::Primary;

/// Rules kept in Redis and announced on a channel, so that every instance
/// sharing the Redis applies every change.
///
/// - The rules live in one hash (`PREFIX:{rules}:set`, id → record) with a
///   version counter and an epoch beside it (`PREFIX:{rules}:version`,
///   `PREFIX:{rules}:epoch`); one script applies each change, bumps the
///   version and publishes it on `PREFIX:rules`, all atomically, so
///   concurrent changes from several instances are ordered by Redis and
///   every instance ends with the same set.
/// - A limiter started with it follows it ([`RuleStore::follow`]): it
///   reloads the rules on every announcement, after every (re)connection
///   (catching up on what it missed while disconnected), and every
///   [`poll_every`](Self::poll_every) as a safety net — for as long as the
///   limiter lives.
/// - It connects on first use, so a limiter can start while Redis is down.
///
/// Rules survive instance restarts (they are loaded at start), and a Redis
/// that restarts without its data: the instances put back the rules they
/// agreed on (see
/// [`DistributedRateLimiter::refresh_rules`](ratelimit_core::DistributedRateLimiter::refresh_rules)).
///
/// Most applications build it through [`RedisFleet`](crate::RedisFleet),
/// which sets it up with the counter store in one step.
#[derive(Clone)]
pub struct RedisRules {
    /// Where announcements are heard: any node of a cluster hears them all,
    /// so the follower moves to the next one when one is unreachable; with
    /// Sentinel, the primary in use.
    subscribe_to: Vec<Client>,
    connection: Arc<Lazy<RulesConnection>>,
    set_key: String,
    version_key: String,
    epoch_key: String,
    members_key: String,
    channel: String,
    timeout: Duration,
    poll_every: Duration,
}

impl fmt::Debug for RedisRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRules")
            .field("address", &self.connection.address())
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
    Sentinel(Arc<Primary>),
}

impl RulesConnection {
    async fn query(&self, cmd: &redis::Cmd) -> Result<redis::Value, RedisError> {
        match self {
            Self::Single(c) => c.clone().req_packed_command(cmd).await,
            Self::Cluster(c) => c.clone().req_packed_command(cmd).await,
            Self::Sentinel(primary) => {
                let node = primary.node().await?;
                let result = node.connection.clone().req_packed_command(cmd).await;
                let result = result.and_then(|value| value.extract_error());
                if let Err(error) = &result {
                    primary.failed(&node, error);
                }
                result
            }
        }
    }
}

const WRITE_SOURCE: &str = include_str!("rules_write.lua");
const RESTORE_SOURCE: &str = include_str!("rules_restore.lua");
/// Records `ARGV[1]` alive until `ARGV[2]` ms from now (Redis's clock),
/// forgets the instances whose time is up, and counts those left: one
/// sorted set of at most the fleet's instances, one small call a beat.
const BEAT_SOURCE: &str = "local t = redis.call('TIME') \
     local now = t[1] * 1000 + math.floor(t[2] / 1000) \
     redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) \
     redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) \
     redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2])) \
     return redis.call('ZCARD', KEYS[1])";
const LOAD_SOURCE: &str = "return {redis.call('GET', KEYS[2]) or '0', \
     redis.call('GET', KEYS[3]) or '0', redis.call('HGETALL', KEYS[1])}";

impl RedisRules {
    /// Rules in the Redis at `url`, under `prefix`. Connects on first use
    /// (so this fails only for a URL that cannot be parsed).
    pub fn new(url: &str, prefix: &KeyPrefix) -> Result<Self, Error> {
        let client = Client::open(url).map_err(store_error)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(0)
            .set_max_delay(Duration::from_millis(500));
        let connect = client.clone();
        let connection = Lazy::new(redact(url), move || {
            let (client, config) = (connect.clone(), config.clone());
            async move {
                let connection = ConnectionManager::new_with_config(client, config).await?;
                Ok(RulesConnection::Single(connection))
            }
        });
        Ok(Self::with(vec![client], connection, prefix))
    }

    /// Rules in a Redis Cluster reached through `nodes`. The rule keys share
    /// one hash tag (`{rules}`), so every change stays one atomic script on
    /// one node; announcements reach every node of a cluster, and the
    /// follower listens on the first of `nodes` it can reach. Connects on
    /// first use.
    pub fn new_cluster<S: AsRef<str>>(nodes: &[S], prefix: &KeyPrefix) -> Result<Self, Error> {
        let clients = nodes
            .iter()
            .map(|node| Client::open(node.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(store_error)?;
        let client = ClusterClientBuilder::new(nodes.iter().map(AsRef::as_ref))
            .connection_timeout(Duration::from_secs(1))
            .build()
            .map_err(store_error)?;
        let address = redact(nodes.first().map_or("", AsRef::as_ref));
        let connection = Lazy::new(address, move || {
            let client = client.clone();
            async move {
                Ok(RulesConnection::Cluster(
                    client.get_async_connection().await?,
                ))
            }
        });
        Ok(Self::with(clients, connection, prefix))
    }

    /// Rules in the primary that `sentinels` name, following it through
    /// failovers (see [`Sentinels`]); announcements are heard on the
    /// primary in use. Connects on first use (so this fails only for an
    /// empty sentinel list or a URL that cannot be parsed).
    pub fn new_sentinel(sentinels: &Sentinels, prefix: &KeyPrefix) -> Result<Self, Error> {
        let primary = Primary::new(sentinels, Duration::from_secs(1)).map_err(store_error)?;
        Ok(Self::on_primary(primary, prefix))
    }

    /// Rules in a primary followed already (shared with a fleet's store).
    pub(crate) fn on_primary(primary: Arc<Primary>, prefix: &KeyPrefix) -> Self {
        let connection = Lazy::ready(primary.describe(), RulesConnection::Sentinel(primary));
        Self::with(Vec::new(), connection, prefix)
    }

    /// [`new`](Self::new), then connects now: fails if Redis does not
    /// answer within 2 s.
    pub async fn connect(url: &str, prefix: &KeyPrefix) -> Result<Self, Error> {
        let rules = Self::new(url, prefix)?;
        rules.connected().await
    }

    /// [`new_cluster`](Self::new_cluster), then connects now.
    pub async fn connect_cluster<S: AsRef<str>>(
        nodes: &[S],
        prefix: &KeyPrefix,
    ) -> Result<Self, Error> {
        let rules = Self::new_cluster(nodes, prefix)?;
        rules.connected().await
    }

    async fn connected(self) -> Result<Self, Error> {
        self.connection
            .connect_within(Duration::from_secs(2))
            .await
            .map(|()| self)
    }

    fn with(
        subscribe_to: Vec<Client>,
        connection: Lazy<RulesConnection>,
        prefix: &KeyPrefix,
    ) -> Self {
        let prefix = prefix.as_str();
        Self {
            subscribe_to,
            connection: Arc::new(connection),
            set_key: format!("{prefix}:{{rules}}:set"),
            version_key: format!("{prefix}:{{rules}}:version"),
            epoch_key: format!("{prefix}:{{rules}}:epoch"),
            members_key: format!("{prefix}:{{rules}}:members"),
            channel: format!("{prefix}:rules"),
            timeout: Duration::from_secs(1),
            poll_every: Duration::from_secs(5),
        }
    }

    /// How often a follower reloads even without an announcement (default
    /// 5 s).
    #[must_use]
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll_every = every;
        self
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
            let connection = self.connection.get().await?;
            connection
                .query(&cmd)
                .await
                .and_then(|value| {
                    redis::from_redis_value::<T>(value.extract_error()?).map_err(RedisError::from)
                })
                .map_err(store_error)
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }

    /// Announces the instance `instance` alive for `ttl` and returns how
    /// many instances are alive (this one included): the fleet's size, which
    /// [`RedisFleet`](crate::RedisFleet) keeps in its limiter's
    /// [`FleetSize`](ratelimit_core::config::FleetSize).
    pub async fn heartbeat(&self, instance: &str, ttl: Duration) -> Result<u32, Error> {
        let ttl = ttl.as_millis().max(1).to_string();
        self.eval(BEAT_SOURCE, &[&self.members_key], &[instance, &ttl])
            .await
    }

    /// Puts back (or seeds) every rule at once; see [`RuleWrite::Restore`].
    async fn restore(
        &self,
        seen_version: u64,
        seen_epoch: u64,
        snapshot: &RuleSnapshot,
    ) -> Result<RuleWritten, Error> {
        let mut args = vec![
            seen_version.to_string(),
            seen_epoch.to_string(),
            snapshot.version.to_string(),
            snapshot.epoch.to_string(),
            self.channel.clone(),
        ];
        for rule in &snapshot.rules {
            args.push(rule.id().to_string());
            args.push(rule.to_record());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let status: String = self
            .eval(
                RESTORE_SOURCE,
                &[&self.set_key, &self.version_key, &self.epoch_key],
                &args,
            )
            .await?;
        match status.as_str() {
            "ok" => Ok(RuleWritten {
                version: snapshot.version,
                previous: None,
            }),
            "conflict" => Err(Error::RuleConflict("the rule set".to_owned())),
            other => Err(Error::InvalidResponse(format!(
                "rule restore status {other:?}"
            ))),
        }
    }
}

/// Keeps a limiter's rules current; stops when dropped (with the limiter
/// that holds it).
#[derive(Debug)]
struct Follower(JoinHandle<()>);

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The follower's loop: subscribe to announcements (moving round the
/// nodes, or on the primary in use when there are none), refresh after each
/// (re)subscription, each announcement and each `poll_every`; stop when the
/// limiter is gone.
async fn follow(
    clients: Vec<Client>,
    primary: Arc<Lazy<RulesConnection>>,
    channel: String,
    poll_every: Duration,
    limiter: WeakLimiter,
) {
    // Refreshes, retrying a failure a few times: right after Redis comes
    // back, the first calls may still meet the connection that broke.
    // Returns false when the limiter is gone.
    let refresh = || async {
        let mut pause = Duration::from_millis(25);
        for _ in 0..6 {
            let Some(limiter) = limiter.upgrade() else {
                return false;
            };
            match limiter.refresh_rules().await {
                Ok(_) => return true,
                Err(error) => tracing::debug!(%error, "rule refresh failed"),
            }
            drop(limiter);
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        true
    };
    let mut backoff = Duration::from_millis(50);
    for turn in 0.. {
        let client = match clients.get(turn % clients.len().max(1)) {
            Some(client) => Some(client.clone()),
            None => primary_client(&primary).await,
        };
        if let Some(client) = client
            && let Ok(mut pubsub) = client.get_async_pubsub().await
            && pubsub.subscribe(&channel).await.is_ok()
        {
            backoff = Duration::from_millis(50);
            // Catch up on whatever was announced while disconnected.
            if !refresh().await {
                return;
            }
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
                if !refresh().await {
                    return;
                }
            }
        } else if limiter.upgrade().is_none() {
            return;
        }
        tokio::time::sleep(backoff).await;
        // Short: a Redis that comes back should find its rules back (and
        // the fleet's instances current) within about a second.
        backoff = (backoff * 2).min(Duration::from_millis(400));
    }
}

/// A client for the primary a Sentinel rule store uses, if it has one.
async fn primary_client(connection: &Lazy<RulesConnection>) -> Option<Client> {
    let find = async {
        match connection.get().await.ok()? {
            RulesConnection::Sentinel(primary) => {
                primary.node().await.ok().map(|n| n.client.clone())
            }
            RulesConnection::Single(_) | RulesConnection::Cluster(_) => None,
        }
    };
    tokio::time::timeout(Duration::from_secs(1), find)
        .await
        .ok()
        .flatten()
}

fn store_error(error: RedisError) -> Error {
    Error::Store(Box::new(error))
}

#[async_trait]
impl RuleStore for RedisRules {
    async fn load(&self) -> Result<RuleSnapshot, Error> {
        let (version, epoch, records): (String, String, HashMap<String, String>) = self
            .eval(
                LOAD_SOURCE,
                &[&self.set_key, &self.version_key, &self.epoch_key],
                &[],
            )
            .await?;
        let number = |what: &str, text: &str| {
            text.parse::<u64>()
                .map_err(|_| Error::InvalidResponse(format!("rules {what} {text:?}")))
        };
        let rules = records
            .iter()
            .map(|(id, record)| Rule::from_record(id, record))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RuleSnapshot {
            version: number("version", &version)?,
            epoch: number("epoch", &epoch)?,
            rules,
        })
    }

    fn follow(&self, limiter: WeakLimiter) -> Option<Following> {
        let task = tokio::spawn(follow(
            self.subscribe_to.clone(),
            Arc::clone(&self.connection),
            self.channel.clone(),
            self.poll_every,
            limiter,
        ));
        Some(Following::new(Follower(task)))
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
            RuleWrite::Restore {
                seen_version,
                seen_epoch,
                snapshot,
            } => return self.restore(*seen_version, *seen_epoch, snapshot).await,
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
