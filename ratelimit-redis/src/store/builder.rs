//! [`RedisStoreBuilder`]: how a [`RedisStore`] connects.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use ratelimit_core::{Error, clock::Clock};
use redis::Client;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;

use super::{Connection, RedisStore};
use crate::call::store_error;
use crate::durable::Durable;
use crate::lazy::Lazy;
use crate::primary::Primary;
use crate::topology::Topology;

/// Configures a [`RedisStore`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    topology: Topology,
    timeout: Duration,
    connection_timeout: Duration,
    connections: usize,
    clock: Option<Arc<dyn Clock>>,
    durable_replicas: u32,
}

impl RedisStoreBuilder {
    /// The default bound on one store call.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

    pub(crate) fn new(topology: Topology) -> Self {
        Self {
            topology,
            timeout: Self::DEFAULT_TIMEOUT,
            connection_timeout: Duration::from_secs(1),
            connections: 1,
            clock: None,
            durable_replicas: 0,
        }
    }

    /// Durable admissions: a check that admits is reported only once
    /// `replicas` replicas acknowledged its write (`WAIT`, given half the
    /// store's [`timeout`](Self::timeout)); otherwise it fails
    /// ([`Error::Unreplicated`], or [`Error::Timeout`]) and the limiter
    /// answers by the rule's failure policy — fail closed to never admit
    /// what a failover could forget. 0 (the default) turns it off.
    ///
    /// What it guarantees, and what it does not: an admission is reported
    /// only after `replicas` replicas have its write, so a failover that
    /// promotes one of them keeps it. `WAIT` is not consensus: a failover
    /// that promotes a replica which had not acknowledged, or the loss of
    /// the primary and every acknowledging replica at once, still loses
    /// admissions. With Sentinel and one replica, `replicas = 1` covers
    /// the usual failover.
    ///
    /// Admissions are confirmed in groups: on one server, checks run on
    /// two connections of their own, and one `WAIT` confirms every check
    /// that came back before it. On a cluster each check sends its script
    /// and a `WAIT` together, to the slot's primary.
    pub fn durable(mut self, replicas: u32) -> Self {
        self.durable_replicas = replicas;
        self
    }

    /// How many multiplexed connections to open to a standalone server
    /// (default 1), used in turn. One connection already carries any number
    /// of concurrent checks; more spread the client's work over more tasks.
    /// Ignored for a cluster (its client keeps one connection per node).
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections.max(1);
        self
    }

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
    /// [`FakeClock`](ratelimit_core::clock::FakeClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Connects now. Fails with [`Error::Store`] if a URL is invalid, or
    /// if the server (or cluster) cannot be reached within the connection
    /// timeout (the error names the address); see
    /// [`build_lazy`](Self::build_lazy) for a store that may start while
    /// Redis is down.
    pub async fn build(self) -> Result<RedisStore, Error> {
        let limit = self.connection_timeout;
        let store = self.build_lazy()?;
        store.connection.connect_within(limit).await?;
        if let Some(Connection::Sentinel(primary)) = store.connection.made() {
            // Made already: the primary is found on first use.
            match tokio::time::timeout(limit, primary.node()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(store_error(error)),
                Err(_) => {
                    return Err(Error::Store(
                        format!("cannot find {} within {limit:?}", store.address()).into(),
                    ));
                }
            }
        }
        Ok(store)
    }

    /// A store that connects on first use, and again on each use after a
    /// failed attempt, so that an application can start while Redis is down:
    /// until Redis answers, each call fails within the
    /// [`timeout`](Self::timeout) with an error naming the address, which
    /// the limiter answers with its failure policy. Fails only for a URL
    /// that cannot be parsed (or an empty list of sentinels).
    pub fn build_lazy(self) -> Result<RedisStore, Error> {
        let address = self.topology.describe();
        let connect_timeout = self.connection_timeout;
        // The one server's client, when there is one: durable links to it
        // are made from it too.
        let mut fixed_node = None;
        let mut single = None;
        let connection = match &self.topology {
            Topology::Cluster(nodes) => {
                let client = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(self.connection_timeout)
                    .response_timeout(self.timeout)
                    .build()
                    .map_err(store_error)?;
                fixed_node = Some(format!("cluster {}", self.topology.describe()).into());
                Lazy::new(address, move || {
                    let client = client.clone();
                    async move { Ok(Connection::Cluster(client.get_async_connection().await?)) }
                })
            }
            Topology::Single(url) => {
                let client = Client::open(url.as_str()).map_err(store_error)?;
                fixed_node = Some(client.get_connection_info().addr().to_string().into());
                single = Some(client.clone());
                // No retries within a call: a Redis that refuses connections
                // is reported at once (and answered by the failure policy)
                // rather than retried until the call's timeout; later calls
                // try again.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_number_of_retries(0)
                    .set_max_delay(Duration::from_millis(500));
                let count = self.connections.max(1);
                Lazy::new(address, move || {
                    let (client, config) = (client.clone(), config.clone());
                    async move {
                        let mut connections = Vec::with_capacity(count);
                        for _ in 0..count {
                            connections.push(
                                ConnectionManager::new_with_config(client.clone(), config.clone())
                                    .await?,
                            );
                        }
                        Ok(Connection::Single(
                            connections.into(),
                            Arc::new(AtomicUsize::new(0)),
                        ))
                    }
                })
            }
            Topology::Sentinel(sentinels) => {
                let primary = Primary::new(sentinels, connect_timeout).map_err(store_error)?;
                Lazy::ready(address, Connection::Sentinel(primary))
            }
            Topology::Followed(primary) => {
                Lazy::ready(address, Connection::Sentinel(Arc::clone(primary)))
            }
        };
        let durable = (self.durable_replicas > 0).then(|| {
            // Half the call's timeout, so that a short count comes back as
            // such (`Unreplicated`) rather than as the call's timeout.
            Arc::new(Durable::new(
                single,
                self.durable_replicas,
                self.timeout / 2,
                connect_timeout,
            ))
        });
        Ok(RedisStore {
            connection: Arc::new(connection),
            fixed_node,
            durable,
            cluster: self.topology.is_cluster(),
            timeout: self.timeout,
            clock: self.clock,
        })
    }
}
