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
//! - Group commit: a check that charged takes a ticket on its link once its
//!   reply is back; one `WAIT` sent after that covers it and every ticket
//!   taken before. While a `WAIT` is out, further tickets wait for the next
//!   one, which the first of them sends. So one `WAIT` confirms a whole
//!   group, however many checks run.
//! - A check sent while its link is blocked in `WAIT` waits for it; two
//!   links, taken by whichever is not waiting, keep checks flowing.
//! - A check whose `WAIT` reports too few replicas fails with
//!   [`Error::Unreplicated`]; one whose `WAIT` does not come back within
//!   the store's timeout fails with [`Error::Timeout`]. Either way the
//!   limiter answers by its failure policy: never an unconfirmed admission.

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ratelimit_core::Error;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError};
use tokio::sync::Notify;

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
}

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
    commits: Mutex<Commits>,
    settled: Notify,
}

/// Tickets are numbered from 1 in the order their replies came back.
#[derive(Default)]
struct Commits {
    /// The last ticket taken.
    taken: u64,
    /// Every ticket up to this one is acknowledged.
    confirmed: u64,
    /// A `WAIT` covering every ticket up to this one fell short.
    failed: u64,
    /// What the last short `WAIT` got.
    acknowledged: u32,
    /// Whether a `WAIT` is out.
    waiting: bool,
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
        }
    }

    /// Replicas that must acknowledge each admission.
    pub(crate) fn replicas(&self) -> u32 {
        self.replicas
    }

    /// `WAIT`'s timeout, in milliseconds.
    pub(crate) fn wait_ms(&self) -> u64 {
        self.wait_ms
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
        let mut chosen = None;
        for i in 0..LINKS {
            let slot = &self.links[(first + i) % LINKS];
            let Some(link) = usable(slot, server) else {
                chosen.get_or_insert((first + i) % LINKS);
                continue;
            };
            if !link.is_waiting() {
                return Ok(link);
            }
            chosen.get_or_insert((first + i) % LINKS);
        }
        let index = chosen.unwrap_or(first % LINKS);
        if let Some(link) = usable(&self.links[index], server) {
            return Ok(link);
        }
        let connection = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        let link = Arc::new(Link {
            connection,
            server: server.cloned(),
            commits: Mutex::new(Commits::default()),
            settled: Notify::new(),
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
    pub(crate) async fn confirm(&self, link: &Arc<Link>) -> Result<(), Error> {
        let ticket = link.take_ticket();
        loop {
            let mut settled = pin!(link.settled.notified());
            settled.as_mut().enable();
            match link.standing(ticket, self.replicas) {
                Standing::Confirmed => return Ok(()),
                Standing::Short(acknowledged) => {
                    return Err(Error::Unreplicated {
                        acknowledged,
                        required: self.replicas,
                    });
                }
                Standing::Lead(covering) => {
                    tokio::spawn(wait(
                        Arc::clone(link),
                        covering,
                        self.replicas,
                        self.wait_ms,
                    ));
                }
                Standing::Pending => {}
            }
            settled.await;
        }
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

enum Standing {
    Confirmed,
    Short(u32),
    /// This ticket's check sends the next `WAIT`, covering tickets up to
    /// the one given.
    Lead(u64),
    Pending,
}

impl Link {
    fn take_ticket(&self) -> u64 {
        let Ok(mut commits) = self.commits.lock() else {
            return u64::MAX;
        };
        commits.taken += 1;
        commits.taken
    }

    fn is_waiting(&self) -> bool {
        self.commits.lock().map_or(true, |c| c.waiting)
    }

    fn standing(&self, ticket: u64, replicas: u32) -> Standing {
        let Ok(mut commits) = self.commits.lock() else {
            return Standing::Short(0);
        };
        if commits.confirmed >= ticket {
            Standing::Confirmed
        } else if commits.failed >= ticket {
            Standing::Short(commits.acknowledged.min(replicas))
        } else if commits.waiting {
            Standing::Pending
        } else {
            commits.waiting = true;
            Standing::Lead(commits.taken)
        }
    }
}

/// Sends one `WAIT` on `link`, records what it confirmed and wakes the
/// checks waiting. A task of its own, so that a check that gives up (its
/// timeout) does not leave the others without a `WAIT`.
async fn wait(link: Arc<Link>, covering: u64, replicas: u32, wait_ms: u64) {
    let mut connection = link.connection.clone();
    let mut command = redis::cmd("WAIT");
    command.arg(replicas).arg(wait_ms);
    let sent = command.query_async::<u64>(&mut connection);
    // WAIT returns by its own timeout; this bounds a server that hangs.
    let limit = Duration::from_millis(wait_ms.saturating_add(1_000));
    let acknowledged = match tokio::time::timeout(limit, sent).await {
        Ok(Ok(count)) => u32::try_from(count).unwrap_or(u32::MAX),
        Ok(Err(_)) | Err(_) => 0,
    };
    if let Ok(mut commits) = link.commits.lock() {
        commits.waiting = false;
        if acknowledged >= replicas {
            commits.confirmed = commits.confirmed.max(covering);
        } else {
            commits.failed = commits.failed.max(covering);
            commits.acknowledged = acknowledged;
        }
    }
    link.settled.notify_waiters();
}
