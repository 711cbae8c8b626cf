//! [`RedisStore`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ratelimit_core::store::{CheckItem, MAX_KEYS_PER_CHECK, Outcome, evaluate, validate_items};
use ratelimit_core::{Error, Store, clock::Clock, store::Decision};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{Client, Cmd, ErrorKind, RedisError, ServerErrorKind};

use smallvec::SmallVec;

use crate::Sentinels;
use crate::durable::{self, Durable};
use crate::lazy::Lazy;
use crate::primary::Primary;
use crate::script::{self, Form};
use crate::topology::Topology;

/// A [`Store`] on Redis — one server or a Redis Cluster — with one script
/// call per check.
///
/// **Standalone.** The connection is a [`ConnectionManager`]: multiplexed
/// (one connection serves every concurrent check) and reconnecting by
/// itself. A check of any number of rules is one atomic script call.
///
/// **Cluster.** Checks route by key. Keys carry a hash tag per caller, so all
/// of one caller's counters share a slot and a check of them is one atomic
/// call. A check whose counters live in several slots (a global rule and a
/// per-user rule, say) is charged slot by slot, from the last item's slot to
/// the first's — the limiter lists global rules first, so a caller's own
/// limits are tested before the shared ones. Each slot's step is atomic and
/// charges only if everything in it conforms; if a later slot denies, what
/// the earlier slots charged is given back. So the fleet never admits more
/// than any rule allows; in the moment between a charge and its refund, a
/// concurrent request may be denied by capacity that is about to come back.
///
/// Every call is bounded by the store's [`timeout`](RedisStoreBuilder::timeout),
/// because the client waits for a reconnect with no deadline of its own.
/// After `NOSCRIPT` (a restarted or flushed server) the script is sent again
/// with `EVAL` to the node that needs it.
///
/// Cloning is cheap; clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    connection: Arc<Lazy<Connection>>,
    /// The node(s) it talks to, when fixed (not with Sentinel).
    fixed_node: Option<Arc<str>>,
    cluster: bool,
    timeout: Duration,
    clock: Option<Arc<dyn Clock>>,
    /// Set when admissions must be acknowledged by replicas.
    durable: Option<Arc<Durable>>,
}

#[derive(Clone)]
enum Connection {
    /// One or more multiplexed connections to one server, used in turn.
    Single(Arc<[ConnectionManager]>, Arc<AtomicUsize>),
    Cluster(ClusterConnection),
    /// Whichever server the sentinels name primary now.
    Sentinel(Arc<Primary>),
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let topology = if self.cluster {
            "cluster"
        } else {
            "standalone"
        };
        f.debug_struct("RedisStore")
            .field("topology", &topology)
            .field("address", &self.connection.address())
            .field("connected", &self.connection.made().is_some())
            .field("timeout", &self.timeout)
            .field("clock", &self.clock)
            .finish()
    }
}

impl RedisStore {
    /// Connects to one server at `url` (`redis://`; user and password in the
    /// URL are passed through) with default settings.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::builder(url).build().await
    }

    /// Configures a store on one server.
    pub fn builder(url: &str) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Topology::Single(url.to_owned()))
    }

    /// Configures a store on a Redis Cluster, discovered from `nodes` (any
    /// reachable subset of its nodes).
    pub fn cluster_builder<S: AsRef<str>>(nodes: &[S]) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Topology::cluster(nodes))
    }

    /// Configures a store on the primary that `sentinels` name, following
    /// it through failovers (see [`Sentinels`]).
    pub fn sentinel_builder(sentinels: Sentinels) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Topology::Sentinel(sentinels))
    }

    fn now(&self) -> Option<u64> {
        self.clock.as_ref().map(|clock| clock.now_micros())
    }

    /// Where the store connects (its URL, its cluster's first node, or its
    /// sentinels and master name; without passwords).
    pub fn address(&self) -> &str {
        self.connection.address()
    }

    /// The server that answers this store's calls now (`host:port`): the
    /// one server, or the primary the sentinels named last; for a cluster,
    /// the nodes it was given. `None` while a Sentinel store looks for its
    /// primary.
    pub fn node(&self) -> Option<String> {
        match (&self.fixed_node, self.connection.made()) {
            (Some(node), _) => Some(node.to_string()),
            (None, Some(Connection::Sentinel(primary))) => primary.address().map(|a| a.to_string()),
            (None, _) => None,
        }
    }

    /// Sends a script command, bounded by the timeout; after `NOSCRIPT`,
    /// sends it again with the script's source.
    async fn call<T: redis::FromRedisValue>(
        &self,
        command: impl Fn(Form) -> Cmd,
    ) -> Result<T, Error> {
        let Some(connection) = self.connection.made() else {
            return Box::pin(self.call_unconnected(command)).await;
        };
        match tokio::time::timeout(self.timeout, send_script(connection, &command)).await {
            Ok(result) => result.map_err(store_error),
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }

    /// [`call`](Self::call) before the connection is made: makes it
    /// first, within the same timeout.
    #[cold]
    async fn call_unconnected<T: redis::FromRedisValue>(
        &self,
        command: impl Fn(Form) -> Cmd,
    ) -> Result<T, Error> {
        let attempt = async {
            let connection = self.connection.get().await?;
            send_script(connection, &command).await.map_err(store_error)
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }

    /// One script call for items that share a slot.
    async fn check_slot(
        &self,
        items: &[CheckItem<'_>],
        charge: bool,
    ) -> Result<script::Reply, Error> {
        let now = self.now();
        if charge && let Some(durable) = &self.durable {
            let command = |form| script::check_command(items, true, now, form);
            let attempt = self.check_durably(durable, items, &command);
            return match tokio::time::timeout(self.timeout, attempt).await {
                Ok(result) => result,
                Err(_) => Err(Error::Timeout(self.timeout)),
            };
        }
        let reply: redis::Value = self
            .call(|form| script::check_command(items, charge, now, form))
            .await?;
        script::parse(&reply, items.len())
    }

    async fn run(&self, items: &[CheckItem<'_>], charge: bool) -> Result<Outcome, Error> {
        validate_items(items)?;
        if items.is_empty() {
            return Ok(evaluate(items, &[], 0, charge).outcome);
        }
        if self.cluster && spans_slots(items) {
            // Boxed: its state is large, and the common path should not
            // carry it in every check's future.
            return Box::pin(self.run_across_slots(items, charge)).await;
        }
        let reply = self.check_slot(items, charge).await?;
        Ok(reply.outcome(items, charge))
    }

    /// A check whose items live in several cluster slots: see the type docs.
    async fn run_across_slots(
        &self,
        items: &[CheckItem<'_>],
        charge: bool,
    ) -> Result<Outcome, Error> {
        let slots = group_by_slot(items);
        let mut replies: SmallVec<[(Part<'_>, script::Reply); 4]> = SmallVec::new();
        let mut charged: SmallVec<[Part<'_>; 4]> = SmallVec::new();
        let mut allowed = true;
        for slot in slots.iter().rev() {
            let part: Part<'_> = slot.iter().filter_map(|&i| items.get(i).copied()).collect();
            // Once a slot has denied, the remaining ones are only looked at.
            let charge_here = charge && allowed;
            let reply = match self.check_slot(&part, charge_here).await {
                Ok(reply) => reply,
                Err(error) => {
                    self.refund(&charged).await;
                    return Err(error);
                }
            };
            let outcome = reply.outcome(&part, charge_here);
            if !outcome.allowed {
                allowed = false;
            } else if charge_here {
                // What the script charged here: the conforming items, with
                // the units they reserved.
                let conforming = part.iter().zip(&outcome.decisions);
                charged.push(
                    conforming
                        .filter(|(_, d)| d.allowed())
                        .map(|(item, d)| CheckItem {
                            cost: item.cost.saturating_add(d.reserved()),
                            ..*item
                        })
                        .collect(),
                );
            }
            replies.push((part, reply));
        }
        if !allowed {
            self.refund(&charged).await;
        }

        // Decisions as the counters stand now: charged if the check was
        // admitted, as they were before it otherwise.
        let charged_now = charge && allowed;
        let mut decisions: SmallVec<[Option<Decision>; MAX_KEYS_PER_CHECK]> =
            SmallVec::from_elem(None, items.len());
        for (slot, (part, reply)) in slots.iter().rev().zip(&replies) {
            let outcome = reply.outcome(part, charged_now);
            for (&i, decision) in slot.iter().zip(outcome.decisions) {
                if let Some(entry) = decisions.get_mut(i) {
                    *entry = Some(decision);
                }
            }
        }
        let decisions: SmallVec<[Decision; 2]> = decisions.into_iter().flatten().collect();
        if decisions.len() != items.len() {
            return Err(Error::InvalidResponse("a slot went unanswered".into()));
        }
        Ok(Outcome { allowed, decisions })
    }

    /// A charging script call whose admission counts only once replicas
    /// acknowledge it (see `durable.rs`).
    #[cold]
    async fn check_durably(
        &self,
        durable: &Durable,
        items: &[CheckItem<'_>],
        command: &impl Fn(Form) -> Cmd,
    ) -> Result<script::Reply, Error> {
        match self.connection.get().await? {
            Connection::Single(..) => match &durable.fixed {
                Some(client) => check_on_link(durable, client, None, items, command)
                    .await
                    .map_err(Failure::into_error),
                None => Err(Error::Store("durable admissions without a server".into())),
            },
            Connection::Sentinel(primary) => {
                let node = primary.node().await.map_err(store_error)?;
                let result =
                    check_on_link(durable, &node.client, Some(&node.address), items, command).await;
                if let Err(Failure::Redis(error)) = &result {
                    primary.failed(&node, error);
                }
                result.map_err(Failure::into_error)
            }
            Connection::Cluster(connection) => {
                check_with_wait(durable, connection.clone(), items, command).await
            }
        }
    }

    /// Gives back what the slots in `charged` were charged. Best effort: a
    /// refund that fails leaves those counters charged (stricter, never
    /// looser).
    async fn refund(&self, charged: &[Part<'_>]) {
        let now = self.now();
        for part in charged {
            let _: Result<u64, Error> = self
                .call(|form| script::refund_command(part, now, form))
                .await;
        }
    }
}

/// The items of one check that share a cluster slot.
type Part<'a> = SmallVec<[CheckItem<'a>; MAX_KEYS_PER_CHECK]>;

/// Sends a script command on `connection`; after `NOSCRIPT`, sends it again
/// with the script's source.
async fn send_script<T: redis::FromRedisValue>(
    connection: &Connection,
    command: &impl Fn(Form) -> Cmd,
) -> Result<T, RedisError> {
    match query(connection, &command(Form::Sha)).await {
        Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            query(connection, &command(Form::Source)).await
        }
        result => result,
    }
}

/// Sends `cmd` on `connection` (on a standalone server, on its connections
/// in turn).
async fn query<T: redis::FromRedisValue>(
    connection: &Connection,
    cmd: &Cmd,
) -> Result<T, RedisError> {
    match connection {
        Connection::Single(connections, next) => {
            let i = next.fetch_add(1, Ordering::Relaxed) % connections.len().max(1);
            match connections.get(i) {
                Some(connection) => query_on(connection.clone(), cmd).await,
                None => Err(RedisError::from((ErrorKind::Client, "no connection"))),
            }
        }
        Connection::Cluster(connection) => query_on(connection.clone(), cmd).await,
        Connection::Sentinel(primary) => {
            let node = primary.node().await?;
            let result = query_on(node.connection.clone(), cmd).await;
            if let Err(error) = &result {
                primary.failed(&node, error);
            }
            result
        }
    }
}

async fn query_on<T: redis::FromRedisValue>(
    mut connection: impl ConnectionLike,
    cmd: &Cmd,
) -> Result<T, RedisError> {
    // Server errors arrive as values: turn them into errors first, so that
    // NOSCRIPT is seen as such.
    let value = connection.req_packed_command(cmd).await?.extract_error()?;
    redis::from_redis_value(value).map_err(RedisError::from)
}

/// Why a durable check failed: on the way to Redis, or after.
enum Failure {
    Redis(RedisError),
    Other(Error),
}

impl Failure {
    fn into_error(self) -> Error {
        match self {
            Self::Redis(error) => store_error(error),
            Self::Other(error) => error,
        }
    }
}

/// A durable check on one of `durable`'s links to `client`'s server,
/// confirmed with the link's group commit.
async fn check_on_link(
    durable: &Durable,
    client: &Client,
    server: Option<&Arc<str>>,
    items: &[CheckItem<'_>],
    command: &impl Fn(Form) -> Cmd,
) -> Result<script::Reply, Failure> {
    let link = durable.link(client, server).await.map_err(Failure::Redis)?;
    let value: redis::Value = match send_script_on(&link.connection, command).await {
        Ok(value) => value,
        Err(error) => {
            durable.drop_link(&link);
            return Err(Failure::Redis(error));
        }
    };
    let reply = script::parse(&value, items.len()).map_err(Failure::Other)?;
    if reply.outcome(items, true).allowed {
        durable.confirm(&link).await.map_err(Failure::Other)?;
    }
    Ok(reply)
}

/// A durable check on a cluster: the script in one pipeline with
/// `CLUSTER MYID` and `CLIENT ID`, which name the connection it ran on,
/// then the group commit of that connection (see `durable.rs`).
async fn check_with_wait(
    durable: &Durable,
    connection: ClusterConnection,
    items: &[CheckItem<'_>],
    command: &impl Fn(Form) -> Cmd,
) -> Result<script::Reply, Error> {
    // Routed by the check's slot: the client would route `CLIENT ID` to a
    // random primary and refuse the pipeline as crossing slots.
    let slot = items
        .first()
        .map_or(Slot::for_key(b""), |item| Slot::for_key(item.key));
    let send = |form| {
        let mut pipe = redis::pipe();
        pipe.cmd("CLUSTER").arg("MYID");
        pipe.cmd("CLIENT").arg("ID");
        pipe.add_command(command(form));
        let mut connection = connection.clone();
        let route = SingleNodeRoutingInfo::SpecificNode(Route::with_slot(slot, SlotAddr::Master));
        async move { connection.route_pipeline(pipe, 0, 3, route).await }
    };
    let mut values = send(Form::Sha).await.map_err(store_error)?;
    let no_script = matches!(values.get(2), Some(redis::Value::ServerError(e))
        if e.kind() == Some(ServerErrorKind::NoScript));
    if no_script {
        values = send(Form::Source).await.map_err(store_error)?;
    }
    let mut values = values.into_iter();
    let (Some(node), Some(client), Some(value)) = (values.next(), values.next(), values.next())
    else {
        return Err(Error::InvalidResponse("a pipeline answered short".into()));
    };
    let value = value.extract_error().map_err(store_error)?;
    let reply = script::parse(&value, items.len())?;
    if reply.outcome(items, true).allowed {
        let id = durable::connection_id(node, client)
            .ok_or_else(|| Error::InvalidResponse("no connection id".into()))?;
        durable.confirm_on_cluster(&connection, slot, id).await?;
    }
    Ok(reply)
}

/// Sends a script command on `connection`; after `NOSCRIPT`, sends it
/// again with the script's source.
async fn send_script_on<T: redis::FromRedisValue, C: ConnectionLike + Clone>(
    connection: &C,
    command: &impl Fn(Form) -> Cmd,
) -> Result<T, RedisError> {
    match query_on(connection.clone(), &command(Form::Sha)).await {
        Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            query_on(connection.clone(), &command(Form::Source)).await
        }
        result => result,
    }
}

/// Whether the items' keys live in more than one cluster slot.
fn spans_slots(items: &[CheckItem<'_>]) -> bool {
    let mut slots = items.iter().map(|item| Slot::for_key(item.key));
    let first = slots.next();
    slots.any(|slot| Some(slot) != first)
}

/// Item indices grouped by cluster slot, in order of first appearance.
fn group_by_slot(items: &[CheckItem<'_>]) -> SmallVec<[SmallVec<[usize; MAX_KEYS_PER_CHECK]>; 4]> {
    let mut groups: SmallVec<[(Slot, SmallVec<[usize; MAX_KEYS_PER_CHECK]>); 4]> = SmallVec::new();
    for (i, item) in items.iter().enumerate() {
        let slot = Slot::for_key(item.key);
        match groups.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, group)) => group.push(i),
            None => groups.push((slot, SmallVec::from_elem(i, 1))),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

fn store_error(error: RedisError) -> Error {
    if matches!(
        error.kind(),
        ErrorKind::UnexpectedReturnType | ErrorKind::Parse
    ) {
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

    fn call_timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    fn node(&self) -> Option<String> {
        RedisStore::node(self)
    }

    async fn reset(&self, keys: &[&[u8]]) -> Result<(), Error> {
        // One DEL per key: on a cluster the keys may live in different slots.
        for key in keys {
            let mut del = redis::cmd("DEL");
            del.arg(*key);
            let call = async {
                let connection = self.connection.get().await?;
                query::<()>(connection, &del).await.map_err(store_error)
            };
            match tokio::time::timeout(self.timeout, call).await {
                Ok(result) => result?,
                Err(_) => return Err(Error::Timeout(self.timeout)),
            }
        }
        Ok(())
    }
}

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
        let mut fixed_node = None;
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
            let fixed = match &self.topology {
                Topology::Single(url) => Client::open(url.as_str()).ok(),
                _ => None,
            };
            // Half the call's timeout, so that a short count comes back as
            // such (`Unreplicated`) rather than as the call's timeout.
            Arc::new(Durable::new(
                fixed,
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
