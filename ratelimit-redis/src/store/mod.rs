//! [`RedisStore`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ratelimit_core::store::{CheckItem, MAX_KEYS_PER_CHECK, Outcome, evaluate, validate_items};
use ratelimit_core::{Error, Store, clock::Clock, store::Decision};
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Cmd, ErrorKind, RedisError, ServerErrorKind};

use smallvec::SmallVec;

use crate::Sentinels;
use crate::call::{query_on, store_error};
use crate::durable::{self, Durable, Failure};
use crate::lazy::Lazy;
use crate::primary::Primary;
use crate::script::{self, Form};
use crate::topology::Topology;

mod builder;

pub use builder::RedisStoreBuilder;

/// A [`Store`] on Redis — one server, a primary named by Redis Sentinel,
/// or a Redis Cluster — with one script call per check.
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
/// **Sentinel.** One multiplexed connection to whichever server the
/// sentinels name primary now, followed through failovers (see
/// [`Sentinels`]).
///
/// **Durable admissions** ([`RedisStoreBuilder::durable`]): an admission
/// is reported only once enough replicas acknowledged it.
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
            // Boxed: the common path should not carry its state in every
            // check's future.
            return Box::pin(self.check_durably_within(durable, items, now)).await;
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

    /// [`check_durably`](Self::check_durably), bounded by the timeout.
    #[cold]
    async fn check_durably_within(
        &self,
        durable: &Durable,
        items: &[CheckItem<'_>],
        now: Option<u64>,
    ) -> Result<script::Reply, Error> {
        let command = |form| script::check_command(items, true, now, form);
        let attempt = self.check_durably(durable, items, &command);
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }

    /// A charging script call whose admission counts only once replicas
    /// acknowledge it (see `durable.rs`).
    async fn check_durably(
        &self,
        durable: &Durable,
        items: &[CheckItem<'_>],
        command: &impl Fn(Form) -> Cmd,
    ) -> Result<script::Reply, Error> {
        match self.connection.get().await? {
            Connection::Single(..) => match &durable.fixed {
                Some(client) => durable::check_on_link(durable, client, None, items, command)
                    .await
                    .map_err(Failure::into_error),
                None => Err(Error::Store("durable admissions without a server".into())),
            },
            Connection::Sentinel(primary) => {
                let node = primary.node().await.map_err(store_error)?;
                let result = durable::check_on_link(
                    durable,
                    &node.client,
                    Some(&node.address),
                    items,
                    command,
                )
                .await;
                if let Err(Failure::Redis(error)) = &result {
                    primary.failed(&node, error);
                }
                result.map_err(Failure::into_error)
            }
            Connection::Cluster(connection) => {
                durable::check_in_cluster(durable, connection.clone(), items, command).await
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
