//! [`RedisRules`]: rules shared by every instance through Redis.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use ratelimit_core::{
    DistributedRateLimiter, Error, KeyPrefix, Rule, RuleSnapshot, RuleStore, RuleWrite, RuleWritten,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Script};
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
    client: Client,
    connection: ConnectionManager,
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

fn write_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("rules_write.lua")))
}

fn load_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| {
        Script::new("return {redis.call('GET', KEYS[2]) or '0', redis.call('HGETALL', KEYS[1])}")
    })
}

impl RedisRules {
    /// Connects to the Redis at `url`, keeping rules under `prefix`.
    pub async fn connect(url: &str, prefix: &KeyPrefix) -> Result<Self, Error> {
        let client = Client::open(url).map_err(store_error)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_max_delay(Duration::from_millis(500));
        let connect = ConnectionManager::new_with_config(client.clone(), config);
        let connection = match tokio::time::timeout(Duration::from_secs(2), connect).await {
            Ok(result) => result.map_err(store_error)?,
            Err(_) => return Err(Error::Timeout(Duration::from_secs(2))),
        };
        let prefix = prefix.as_str();
        Ok(Self {
            client,
            connection,
            set_key: format!("{prefix}:{{rules}}:set"),
            version_key: format!("{prefix}:{{rules}}:version"),
            channel: format!("{prefix}:rules"),
            timeout: Duration::from_secs(1),
            poll_every: Duration::from_secs(5),
        })
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
        let client = self.client.clone();
        let channel = self.channel.clone();
        let poll_every = self.poll_every;
        RuleWatch(tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            loop {
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

    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, Error> {
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

fn store_error(error: RedisError) -> Error {
    Error::Store(Box::new(error))
}

#[async_trait]
impl RuleStore for RedisRules {
    async fn load(&self) -> Result<RuleSnapshot, Error> {
        let mut connection = self.connection.clone();
        let mut invocation = load_script().key(&self.set_key);
        invocation.key(&self.version_key);
        let (version, records): (String, HashMap<String, String>) = self
            .bounded(invocation.invoke_async(&mut connection))
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
        };
        let mut invocation = write_script().key(&self.set_key);
        invocation
            .key(&self.version_key)
            .arg(op)
            .arg(id)
            .arg(record)
            .arg(expected)
            .arg(&self.channel);
        let mut connection = self.connection.clone();
        let (status, version, previous): (String, u64, String) = self
            .bounded(invocation.invoke_async(&mut connection))
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
