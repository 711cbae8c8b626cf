//! Durable admissions: a check that charged is reported only once enough
//! replicas hold its write, confirmed by `WAIT` for many checks at once.
//!
//! `WAIT n timeout` blocks the connection it is sent on until `n` replicas
//! acknowledged every write made *on that connection* before it. So:
//!
//! - Checks run on connections of their own ([`Link`]s), never on the
//!   store's other connections, and never on one that reconnects by itself:
//!   a `WAIT` on a fresh connection would confirm writes made on the old
//!   one without covering them. A link that fails is dropped and a new one
//!   made for the next check.
//! - Group commit ([`Group`]): one `WAIT` confirms every check whose reply
//!   came back on the connection before it was sent.
//! - A check sent while its link is blocked in `WAIT` waits for it; two
//!   links, taken by whichever is not waiting, keep checks flowing.
//! - On a cluster the cluster client owns the connections and reconnects
//!   them by itself, so each check's script travels in one pipeline with
//!   `CLUSTER MYID` and `CLIENT ID`, which name the connection it ran on;
//!   the `WAIT` goes to the slot's primary with the same two, and confirms
//!   only if they name the same connection.
//! - A check whose `WAIT` reports too few replicas fails with
//!   [`Error::Unreplicated`]; one whose `WAIT` does not come back within
//!   the store's timeout fails with [`Error::Timeout`]. Either way the
//!   limiter answers by its failure policy: never an unconfirmed admission.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ratelimit_core::Error;
use redis::aio::ConnectionLike;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{AsyncConnectionConfig, Client, RedisError, Value};
use redis::{ErrorKind, ServerErrorKind};

use ratelimit_core::store::CheckItem;
use redis::Cmd;

use crate::call::{send_script_on, store_error};
use crate::group_commit::{Group, Lead};
use crate::script::{self, Form};

/// Links per server: while one waits for its replicas, checks go to the
/// other.
const LINKS: usize = 2;

/// How a store asks for durable admissions (see the module docs).
pub(crate) struct Durable {
    /// How to reach a standalone server (`None` for Sentinel, whose
    /// primary changes, and for a cluster).
    pub(crate) fixed: Option<Client>,
    replicas: u32,
    /// `WAIT`'s own timeout, in milliseconds (at least 1: 0 would block
    /// for ever).
    wait_ms: u64,
    config: AsyncConnectionConfig,
    links: [Mutex<Option<Arc<Link>>>; LINKS],
    next: AtomicUsize,
    /// A cluster's connections, by the node and client id they name.
    cluster_groups: Mutex<HashMap<ConnectionId, Arc<Group>>>,
}

/// Which connection a cluster check ran on: the node's id and the
/// client id the node gave the connection.
pub(crate) type ConnectionId = (String, i64);

/// Groups kept for a cluster at most (a few per node, as connections are
/// remade); beyond, the map starts over.
const CLUSTER_GROUPS: usize = 256;

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("replicas", &self.replicas)
            .field("wait_ms", &self.wait_ms)
            .finish_non_exhaustive()
    }
}

/// One connection whose writes are confirmed in groups.
pub(crate) struct Link {
    pub(crate) connection: MultiplexedConnection,
    /// The server it reaches, when that can change (Sentinel): a link to a
    /// former primary is not reused.
    server: Option<Arc<str>>,
    group: Arc<Group>,
}

impl Durable {
    /// Admissions confirmed by `replicas` replicas, each `WAIT` bounded by
    /// `wait`; links connect within `connect_timeout`.
    pub(crate) fn new(
        fixed: Option<Client>,
        replicas: u32,
        wait: Duration,
        connect_timeout: Duration,
    ) -> Self {
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        Self {
            fixed,
            replicas,
            wait_ms,
            // No response timeout of the client's own: `WAIT` takes its
            // time, and the store bounds every call.
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(None),
            links: std::array::from_fn(|_| Mutex::new(None)),
            next: AtomicUsize::new(0),
            cluster_groups: Mutex::new(HashMap::new()),
        }
    }

    /// A link to the server `client` reaches (`server` names it when it
    /// can change): one that is not waiting if there is one, made now if
    /// needed.
    pub(crate) async fn link(
        &self,
        client: &Client,
        server: Option<&Arc<str>>,
    ) -> Result<Arc<Link>, RedisError> {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let (mut waiting, mut empty) = (None, None);
        for i in 0..LINKS {
            let index = (first + i) % LINKS;
            match usable(&self.links[index], server) {
                Some(link) if !link.group.is_waiting() => return Ok(link),
                Some(link) => {
                    waiting.get_or_insert(link);
                }
                None => {
                    empty.get_or_insert(index);
                }
            }
        }
        // Every link is waiting: open another if there is room, else queue
        // behind one.
        let index = match (empty, waiting) {
            (Some(index), _) => index,
            (None, Some(link)) => return Ok(link),
            (None, None) => first % LINKS,
        };
        let connection = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        let link = Arc::new(Link {
            connection,
            server: server.cloned(),
            group: Arc::default(),
        });
        if let Ok(mut slot) = self.links[index].lock() {
            *slot = Some(Arc::clone(&link));
        }
        Ok(link)
    }

    /// Forgets `link` after a failure on it; the next check makes another.
    pub(crate) fn drop_link(&self, link: &Arc<Link>) {
        for slot in &self.links {
            if let Ok(mut slot) = slot.lock()
                && slot.as_ref().is_some_and(|held| Arc::ptr_eq(held, link))
            {
                *slot = None;
            }
        }
    }

    /// Waits until the write of a check whose reply just came back on
    /// `link` is acknowledged by enough replicas.
    pub(crate) async fn confirm(&self, link: &Link) -> Result<(), Error> {
        let (replicas, wait_ms) = (self.replicas, self.wait_ms);
        link.group
            .confirm(replicas, || {
                wait_on(link.connection.clone(), replicas, wait_ms)
            })
            .await
    }

    /// Waits until the write of a cluster check, which ran in `slot` on the
    /// connection `id` names, is acknowledged by enough replicas.
    pub(crate) async fn confirm_on_cluster(
        &self,
        connection: &ClusterConnection,
        slot: Slot,
        id: ConnectionId,
    ) -> Result<(), Error> {
        let group = {
            let Ok(mut groups) = self.cluster_groups.lock() else {
                return Err(Error::Store(
                    "durable admissions: a lock was poisoned".into(),
                ));
            };
            if groups.len() >= CLUSTER_GROUPS && !groups.contains_key(&id) {
                groups.clear();
            }
            Arc::clone(groups.entry(id.clone()).or_default())
        };
        let (replicas, wait_ms) = (self.replicas, self.wait_ms);
        group
            .confirm(replicas, || {
                wait_in_cluster(connection.clone(), slot, id.clone(), replicas, wait_ms)
            })
            .await
    }
}

/// The link in `slot`, if it reaches `server`.
fn usable(slot: &Mutex<Option<Arc<Link>>>, server: Option<&Arc<str>>) -> Option<Arc<Link>> {
    let held = slot.lock().ok()?.clone()?;
    let same = match (&held.server, server) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    };
    same.then_some(held)
}

/// One `WAIT` on `connection`: how many replicas acknowledged (0 for a
/// failure).
async fn wait_on(mut connection: MultiplexedConnection, replicas: u32, wait_ms: u64) -> u32 {
    let mut command = redis::cmd("WAIT");
    command.arg(replicas).arg(wait_ms);
    let sent = command.query_async::<u64>(&mut connection);
    // WAIT returns by its own timeout; this bounds a server that hangs.
    let limit = Duration::from_millis(wait_ms.saturating_add(1_000));
    match tokio::time::timeout(limit, sent).await {
        Ok(Ok(count)) => u32::try_from(count).unwrap_or(u32::MAX),
        Ok(Err(_)) | Err(_) => 0,
    }
}

/// One `WAIT` on the cluster connection to `slot`'s primary: how many
/// replicas acknowledged, or 0 if it failed or went on another connection
/// than the one `id` names.
async fn wait_in_cluster(
    mut connection: ClusterConnection,
    slot: Slot,
    id: ConnectionId,
    replicas: u32,
    wait_ms: u64,
) -> u32 {
    let mut pipe = redis::pipe();
    pipe.cmd("CLUSTER").arg("MYID");
    pipe.cmd("CLIENT").arg("ID");
    pipe.cmd("WAIT").arg(replicas).arg(wait_ms);
    let route = SingleNodeRoutingInfo::SpecificNode(Route::with_slot(slot, SlotAddr::Master));
    let sent = connection.route_pipeline(pipe, 0, 3, route);
    let limit = Duration::from_millis(wait_ms.saturating_add(1_000));
    let Ok(Ok(values)) = tokio::time::timeout(limit, sent).await else {
        return 0;
    };
    let mut values = values.into_iter();
    let (Some(node), Some(client), Some(count)) = (values.next(), values.next(), values.next())
    else {
        return 0;
    };
    match (
        connection_id(node, client),
        redis::from_redis_value::<u64>(count),
    ) {
        (Some(on), Ok(count)) if on == id => u32::try_from(count).unwrap_or(u32::MAX),
        _ => 0,
    }
}

/// The connection `CLUSTER MYID` and `CLIENT ID` replied about.
fn connection_id(node: Value, client: Value) -> Option<ConnectionId> {
    let node: String = redis::from_redis_value(node).ok()?;
    let client: i64 = redis::from_redis_value(client).ok()?;
    Some((node, client))
}

/// Why a durable check failed: on the way to Redis, or after.
pub(crate) enum Failure {
    Redis(RedisError),
    Other(Error),
}

impl Failure {
    pub(crate) fn into_error(self) -> Error {
        match self {
            Self::Redis(error) => store_error(error),
            Self::Other(error) => error,
        }
    }
}

/// A durable check on one of `durable`'s links to `client`'s server,
/// confirmed with the link's group commit.
pub(crate) async fn check_on_link(
    durable: &Durable,
    client: &Client,
    server: Option<&Arc<str>>,
    items: &[CheckItem<'_>],
    command: &impl Fn(Form) -> Cmd,
) -> Result<script::Reply, Failure> {
    let link = durable.link(client, server).await.map_err(Failure::Redis)?;
    if let Some(lead) = link.group.lead(durable.replicas) {
        // Boxed: only checks that find their link idle take this path.
        if let Some(done) = Box::pin(lead_on_link(durable, &link, lead, items, command)).await {
            return done;
        }
    }
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

/// A check that leads its link's group: its script and a `WAIT` in one
/// pipeline. `None` when the script was not cached (`NOSCRIPT`): the
/// `WAIT` still settles the group, and the check goes the usual way.
#[cold]
async fn lead_on_link(
    durable: &Durable,
    link: &Arc<Link>,
    lead: Lead,
    items: &[CheckItem<'_>],
    command: &impl Fn(Form) -> Cmd,
) -> Option<Result<script::Reply, Failure>> {
    let mut pipe = redis::pipe();
    pipe.add_command(command(Form::Sha))
        .cmd("WAIT")
        .arg(durable.replicas)
        .arg(durable.wait_ms);
    let mut connection = link.connection.clone();
    let values = match connection.req_packed_commands(&pipe, 0, 2).await {
        Ok(values) => values,
        Err(error) => {
            drop(lead);
            durable.drop_link(link);
            return Some(Err(Failure::Redis(error)));
        }
    };
    let mut values = values.into_iter();
    let (Some(value), Some(count)) = (values.next(), values.next()) else {
        return Some(Err(Failure::Other(Error::InvalidResponse(
            "a pipeline answered short".into(),
        ))));
    };
    let acknowledged = redis::from_redis_value::<u64>(count)
        .map_or(0, |count| u32::try_from(count).unwrap_or(u32::MAX));
    lead.settle(acknowledged);
    let value = match value.extract_error() {
        Ok(value) => value,
        Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => return None,
        Err(error) => return Some(Err(Failure::Redis(error))),
    };
    let reply = match script::parse(&value, items.len()) {
        Ok(reply) => reply,
        Err(error) => return Some(Err(Failure::Other(error))),
    };
    if reply.outcome(items, true).allowed && acknowledged < durable.replicas {
        return Some(Err(Failure::Other(Error::Unreplicated {
            acknowledged,
            required: durable.replicas,
        })));
    }
    Some(Ok(reply))
}

/// A durable check on a cluster: the script in one pipeline with
/// `CLUSTER MYID` and `CLIENT ID`, which name the connection it ran on,
/// then the group commit of that connection (see `durable.rs`).
pub(crate) async fn check_in_cluster(
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
        let id = connection_id(node, client)
            .ok_or_else(|| Error::InvalidResponse("no connection id".into()))?;
        durable.confirm_on_cluster(&connection, slot, id).await?;
    }
    Ok(reply)
}
