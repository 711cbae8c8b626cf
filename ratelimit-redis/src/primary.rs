//! [`Primary`]: a connection to whichever server the sentinels name
//! primary now, following failovers by itself.
//!
//! redis-rs keeps no connection that follows a Sentinel failover: a
//! `ConnectionManager` reconnects to the address it started with, which
//! after a failover is a dead server or a replica. Here a watcher task asks
//! the sentinels as Redis's guidelines for Sentinel clients describe — each
//! sentinel in turn for `SENTINEL GET-MASTER-ADDR-BY-NAME`, then `ROLE` on
//! the server named, which must say `master` — and publishes the primary it
//! found (address and multiplexed connection) on a `watch` channel; calls
//! read it without a lock held across an await. The watcher looks again
//!
//! - when a call on the current connection fails in a way that means "not
//!   the primary any more" (the connection is gone, or the server answers
//!   `READONLY`, `LOADING` or `MASTERDOWN`): [`Primary::failed`];
//! - when a sentinel announces `+switch-master` for our master (a task
//!   per sentinel listens);
//! - every few seconds, as a safety net for a lost announcement;
//! - and after each failed attempt, with a short backoff.
//!
//! Until it finds one, calls fail at once with the last error, and the
//! limiter answers by its failure policy. The tasks stop when the
//! `Primary` is dropped.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, ServerErrorKind, Value};
use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;

use crate::Sentinels;

/// The primary in use: its address and a connection to it.
pub(crate) struct Node {
    /// `host:port`. A new `Arc` per connection, so that a failure reported
    /// on an older connection never discards a newer one.
    pub(crate) address: Arc<str>,
    pub(crate) connection: MultiplexedConnection,
    /// For connections of other kinds (a subscription) to the same server.
    pub(crate) client: Client,
}

enum State {
    /// Looking for the primary (at first, and after the current one failed):
    /// calls wait, within their own timeout.
    Looking,
    Found(Arc<Node>),
    /// The last attempt failed; the watcher tries again.
    Lost(Arc<str>),
}

/// See the module docs.
pub(crate) struct Primary {
    state: watch::Sender<State>,
    wake: Arc<Notify>,
    sentinels: Sentinels,
    clients: Vec<Client>,
    connect_timeout: Duration,
    /// The watcher and the listeners, started on first use (which is in a
    /// Tokio runtime; making a `Primary` need not be).
    tasks: OnceLock<Vec<AbortHandle>>,
}

/// How long after finding the primary the watcher asks the sentinels again
/// without being told to.
const CONFIRM_EVERY: Duration = Duration::from_secs(5);
/// Backoff between failed attempts: short, since during a failover the
/// sentinels name the new primary within a second or two.
const FIRST_PAUSE: Duration = Duration::from_millis(25);
const LONGEST_PAUSE: Duration = Duration::from_millis(400);

impl Primary {
    /// The primary `sentinels` name, looked for on first use; each
    /// connection attempt is bounded by `connect_timeout`. Fails only for
    /// an empty sentinel list or a URL that cannot be parsed.
    pub(crate) fn new(
        sentinels: &Sentinels,
        connect_timeout: Duration,
    ) -> Result<Arc<Self>, RedisError> {
        Ok(Arc::new(Self {
            state: watch::Sender::new(State::Looking),
            wake: Arc::new(Notify::new()),
            clients: sentinels.clients()?,
            sentinels: sentinels.clone(),
            connect_timeout,
            tasks: OnceLock::new(),
        }))
    }

    /// Starts the watcher and the listeners, once.
    fn start(self: &Arc<Self>) {
        self.tasks.get_or_init(|| {
            // No response timeout of the client's own: every call is
            // bounded by its caller (the store's timeout).
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.connect_timeout))
                .set_response_timeout(None);
            let watcher = tokio::spawn(watch_primary(
                Arc::downgrade(self),
                Arc::clone(&self.wake),
                self.clients.clone(),
                self.sentinels.clone(),
                config,
                self.connect_timeout,
            ));
            let mut tasks = vec![watcher.abort_handle()];
            // Every sentinel is heard: the leader of a failover announces
            // it first, the others only once they learn of it.
            for sentinel in &self.clients {
                let listener = tokio::spawn(listen(
                    Arc::clone(&self.wake),
                    sentinel.clone(),
                    self.sentinels.master.clone(),
                ));
                tasks.push(listener.abort_handle());
            }
            tasks
        });
    }

    /// What the primary is called, for messages.
    pub(crate) fn describe(&self) -> String {
        self.sentinels.describe()
    }

    /// The primary in use, if one is found.
    #[inline]
    pub(crate) fn found(&self) -> Option<Arc<Node>> {
        match &*self.state.borrow() {
            State::Found(node) => Some(Arc::clone(node)),
            State::Looking | State::Lost(_) => None,
        }
    }

    /// The primary in use: [`found`](Self::found) at once, else after
    /// waiting while it is being looked for (the caller bounds the wait).
    pub(crate) async fn node(self: &Arc<Self>) -> Result<Arc<Node>, RedisError> {
        match self.found() {
            Some(node) => Ok(node),
            // Boxed: callers' futures should not carry the wait's state.
            None => Box::pin(self.look()).await,
        }
    }

    #[cold]
    async fn look(self: &Arc<Self>) -> Result<Arc<Node>, RedisError> {
        self.start();
        let mut state = self.state.subscribe();
        let found = state
            .wait_for(|state| !matches!(state, State::Looking))
            .await
            .map_err(|_| lost("the sentinel watcher stopped"))?;
        match &*found {
            State::Found(node) => Ok(Arc::clone(node)),
            State::Lost(error) => Err(lost(error)),
            State::Looking => Err(lost("still looking")),
        }
    }

    /// The primary's address, if one is in use.
    pub(crate) fn address(&self) -> Option<Arc<str>> {
        match &*self.state.borrow() {
            State::Found(node) => Some(Arc::clone(&node.address)),
            State::Looking | State::Lost(_) => None,
        }
    }

    /// Reports that a call on `node` failed with `error`: if the error
    /// means that `node` is no longer the primary (or no longer reachable),
    /// calls wait for the next one and the watcher looks for it now.
    pub(crate) fn failed(&self, node: &Node, error: &RedisError) {
        if !means_another_primary(error) {
            return;
        }
        let forgot = self.state.send_if_modified(|state| match state {
            State::Found(current) if Arc::ptr_eq(&current.address, &node.address) => {
                *state = State::Looking;
                true
            }
            _ => false,
        });
        if forgot {
            tracing::warn!(primary = %node.address, %error, "Redis primary lost; asking the sentinels");
            self.wake.notify_one();
        }
    }
}

impl std::fmt::Debug for Primary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Primary")
            .field("sentinels", &self.sentinels)
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        for task in self.tasks.get().into_iter().flatten() {
            task.abort();
        }
    }
}

/// Whether a call's error means the server it went to is not (or no longer
/// reachably) the primary.
fn means_another_primary(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::ReadOnly
                    | ServerErrorKind::BusyLoading
                    | ServerErrorKind::MasterDown
            )
        )
}

fn lost(detail: impl AsRef<str>) -> RedisError {
    RedisError::from((
        ErrorKind::Io,
        "no Redis primary",
        detail.as_ref().to_owned(),
    ))
}

/// The watcher: find the primary, publish it, wait for a reason to look
/// again; for as long as the [`Primary`] lives.
async fn watch_primary(
    primary: Weak<Primary>,
    wake: Arc<Notify>,
    sentinel_clients: Vec<Client>,
    sentinels: Sentinels,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
) {
    let mut asked = Asked::new(sentinel_clients, config);
    let mut pause = FIRST_PAUSE;
    loop {
        let current = primary.upgrade().and_then(|p| p.address());
        // Each connection is bounded; the whole attempt is bounded too, for
        // a server that accepts and never answers.
        let limit = connect_timeout * 2;
        let attempt = tokio::time::timeout(limit, asked.find(&sentinels, current)).await;
        let Some(shared) = primary.upgrade() else {
            return;
        };
        let next_look = match attempt {
            Ok(Ok(found)) => {
                if let Some(node) = found {
                    tracing::info!(primary = %node.address, master = %sentinels.master, "using the Redis primary the sentinels name");
                    shared.state.send_replace(State::Found(Arc::new(node)));
                }
                pause = FIRST_PAUSE;
                CONFIRM_EVERY
            }
            Ok(Err(error)) => {
                let message = format!("cannot reach {}: {error}", sentinels.describe());
                shared.state.send_replace(State::Lost(message.into()));
                next_pause(&mut pause)
            }
            Err(_) => {
                let message = format!(
                    "cannot reach {}: no answer within {limit:?}",
                    sentinels.describe(),
                );
                shared.state.send_replace(State::Lost(message.into()));
                next_pause(&mut pause)
            }
        };
        drop(shared);
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(next_look) => {}
        }
    }
}

/// The sentinels, with a connection kept to each that answered.
struct Asked {
    sentinels: Vec<(Client, Option<MultiplexedConnection>)>,
    config: AsyncConnectionConfig,
}

impl Asked {
    fn new(clients: Vec<Client>, config: AsyncConnectionConfig) -> Self {
        Self {
            sentinels: clients.into_iter().map(|c| (c, None)).collect(),
            config,
        }
    }

    /// The primary, asking each sentinel in turn; `None` if it is
    /// `current`, whose connection stays in use. The error is the last
    /// sentinel's or server's.
    async fn find(
        &mut self,
        sentinels: &Sentinels,
        current: Option<Arc<str>>,
    ) -> Result<Option<Node>, RedisError> {
        let mut last = RedisError::from((ErrorKind::Io, "no sentinel answered"));
        for i in 0..self.sentinels.len() {
            let (host, port) = match self.ask(i, &sentinels.master).await {
                Ok(Some(address)) => address,
                Ok(None) => {
                    last = RedisError::from((
                        ErrorKind::MasterNameNotFoundBySentinel,
                        "the sentinels do not know the master",
                        sentinels.master.clone(),
                    ));
                    continue;
                }
                Err(error) => {
                    last = error;
                    continue;
                }
            };
            let address: Arc<str> = format!("{host}:{port}").into();
            if current.as_deref() == Some(&*address) {
                return Ok(None);
            }
            match self.connect(sentinels, host, port).await {
                Ok((connection, client)) => {
                    // The sentinel that knew goes first next time.
                    self.sentinels.swap(0, i);
                    return Ok(Some(Node {
                        address,
                        connection,
                        client,
                    }));
                }
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// Where sentinel `i` says the primary is.
    async fn ask(&mut self, i: usize, master: &str) -> Result<Option<(String, u16)>, RedisError> {
        let Some((client, cached)) = self.sentinels.get_mut(i) else {
            return Ok(None);
        };
        let mut connection = match cached {
            Some(connection) => connection.clone(),
            None => {
                client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await?
            }
        };
        let reply: Result<Option<(String, u16)>, RedisError> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(master)
            .query_async(&mut connection)
            .await;
        *cached = reply.is_ok().then_some(connection);
        reply
    }

    /// A connection to the server at `host:port`, if it says it is the
    /// primary.
    async fn connect(
        &self,
        sentinels: &Sentinels,
        host: String,
        port: u16,
    ) -> Result<(MultiplexedConnection, Client), RedisError> {
        let client = sentinels.node_client(host, port)?;
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut connection).await?;
        let is_master = match role.first() {
            Some(Value::BulkString(role)) => role.as_slice() == b"master",
            Some(Value::SimpleString(role)) => role == "master",
            _ => false,
        };
        match is_master {
            true => Ok((connection, client)),
            _ => Err(RedisError::from((
                ErrorKind::Server(ServerErrorKind::ReadOnly),
                "the server the sentinels name is not the primary (yet)",
            ))),
        }
    }
}

fn next_pause(pause: &mut Duration) -> Duration {
    let this = *pause;
    *pause = (*pause * 2).min(LONGEST_PAUSE);
    this
}

/// Listens for `sentinel`'s `+switch-master` announcements about
/// `master` and wakes the watcher on each (and after each resubscription,
/// for an announcement it may have missed meanwhile).
async fn listen(wake: Arc<Notify>, sentinel: Client, master: String) {
    let mut pause = FIRST_PAUSE;
    let mut resubscribed = false;
    loop {
        if let Ok(mut pubsub) = sentinel.get_async_pubsub().await
            && pubsub.subscribe("+switch-master").await.is_ok()
        {
            pause = FIRST_PAUSE;
            if resubscribed {
                wake.notify_one();
            }
            resubscribed = true;
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                // "<master> <old ip> <old port> <new ip> <new port>"
                let payload: String = message.get_payload().unwrap_or_default();
                if payload.split(' ').next() == Some(master.as_str()) {
                    wake.notify_one();
                }
            }
        }
        tokio::time::sleep(next_pause(&mut pause)).await;
    }
}

#[cfg(test)]
mod tests {
    use redis::{ErrorKind, RedisError, ServerErrorKind};

    use super::means_another_primary;

    #[test]
    fn replies_that_mean_the_primary_moved() {
        for kind in [
            ServerErrorKind::ReadOnly,
            ServerErrorKind::BusyLoading,
            ServerErrorKind::MasterDown,
        ] {
            let error = RedisError::from((ErrorKind::Server(kind), "from the server"));
            assert!(means_another_primary(&error), "{error}");
        }
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(means_another_primary(&io));
        // A script error or NOSCRIPT is the script's business, not the
        // primary's.
        for kind in [ServerErrorKind::ResponseError, ServerErrorKind::NoScript] {
            let error = RedisError::from((ErrorKind::Server(kind), "from the server"));
            assert!(!means_another_primary(&error), "{error}");
        }
    }
}
