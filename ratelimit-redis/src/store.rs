//! [`RedisStore`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ratelimit_core::{CheckItem, Clock, Error, Outcome, Store, evaluate, validate_items};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ErrorKind, RedisError};

use crate::script;

/// A [`Store`] on a Redis server: one script call per check.
///
/// The connection is a [`ConnectionManager`]: multiplexed (one connection
/// serves every concurrent check) and reconnecting by itself. Every call is
/// bounded by the store's [`timeout`](RedisStoreBuilder::timeout), because
/// the client waits for a reconnect with no deadline of its own.
///
/// Cloning is cheap; clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    timeout: Duration,
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("timeout", &self.timeout)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://`, `rediss://` for TLS when the redis
    /// crate's TLS feature is on; user and password in the URL are passed
    /// through) with default settings.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::builder(url).build().await
    }

    /// Configures a store for `url`.
    pub fn builder(url: &str) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.to_owned(),
            timeout: RedisStoreBuilder::DEFAULT_TIMEOUT,
            connection_timeout: Duration::from_secs(1),
            clock: None,
        }
    }

    async fn run(&self, items: &[CheckItem<'_>], charge: bool) -> Result<Outcome, Error> {
        validate_items(items)?;
        if items.is_empty() {
            return Ok(evaluate(items, &[], 0, charge).outcome);
        }
        let now = self.clock.as_ref().map(|clock| clock.now_micros());
        let invocation = script::invocation(items, charge, now);
        let mut connection = self.connection.clone();
        let reply: Vec<u64> = self
            .bounded(invocation.invoke_async(&mut connection))
            .await?;
        script::decode(items, &reply, charge)
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

fn store_error(error: RedisError) -> Error {
    if error.kind() == ErrorKind::UnexpectedReturnType {
        Error::InvalidResponse(error.to_string())
    } else {
        Error::Store(Box::new(error))
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn check(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        self.run(items, true).await
    }

    async fn peek(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        self.run(items, false).await
    }

    async fn reset(&self, keys: &[&[u8]]) -> Result<(), Error> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection.clone();
        let mut del = redis::cmd("DEL");
        for key in keys {
            del.arg(*key);
        }
        self.bounded(del.query_async::<()>(&mut connection)).await
    }
}

/// Configures a [`RedisStore`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    url: String,
    timeout: Duration,
    connection_timeout: Duration,
    clock: Option<Arc<dyn Clock>>,
}

impl RedisStoreBuilder {
    /// The default bound on one store call.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

    /// The bound on one store call (default 50 ms). A call that exceeds it
    /// fails with [`Error::Timeout`], which the limiter answers with its
    /// failure policy.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long to wait for a connection, at start and on each reconnect
    /// (default 1 s).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Read time from `clock` instead of the server's `TIME`. Every app server
    /// must then agree on the time; meant for tests with a
    /// [`FakeClock`](ratelimit_core::FakeClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Connects. Fails with [`Error::Store`] if the URL is invalid or the
    /// server cannot be reached within the connection timeout.
    pub async fn build(self) -> Result<RedisStore, Error> {
        let client = Client::open(self.url.as_str()).map_err(store_error)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connection_timeout))
            .set_max_delay(Duration::from_millis(500));
        let connect = ConnectionManager::new_with_config(client, config);
        let connection = match tokio::time::timeout(self.connection_timeout, connect).await {
            Ok(result) => result.map_err(store_error)?,
            Err(_) => return Err(Error::Timeout(self.connection_timeout)),
        };
        Ok(RedisStore {
            connection,
            timeout: self.timeout,
            clock: self.clock,
        })
    }
}
