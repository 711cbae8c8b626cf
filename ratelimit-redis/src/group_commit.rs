//! [`Group`]: many checks' writes on one connection, confirmed by one
//! `WAIT` (see `durable.rs` for why and where).
//!
//! A check that charged takes a ticket once its reply is back; one `WAIT`
//! sent after that covers it and every ticket taken before. While a `WAIT`
//! is out, further tickets wait for the next one, which the first of them
//! sends. So one `WAIT` confirms a whole group, however many checks run.
//!
//! A check that finds no `WAIT` out may [`lead`](Group::lead) instead: it
//! sends its script and a `WAIT` together, saving a round trip when checks
//! are few. Its `WAIT` confirms its own write and the tickets taken before
//! it was sent — not those taken meanwhile, whose writes may come after
//! it.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};

use ratelimit_core::Error;
use tokio::sync::Notify;

/// The tickets of one connection and what `WAIT` confirmed of them.
#[derive(Default)]
pub(crate) struct Group {
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

enum Standing {
    Confirmed,
    Short(u32),
    /// This ticket's check sends the next `WAIT`, covering tickets up to
    /// the one given.
    Lead(u64),
    Pending,
}

impl Group {
    /// If no `WAIT` is out, the right to send the next one together with
    /// a check's script: it covers the tickets taken so far. The `Lead`
    /// must be settled with what the `WAIT` got; dropped unsettled (the
    /// check gave up), it settles as a failure, so that no ticket waits for
    /// a `WAIT` that never comes back.
    pub(crate) fn lead(self: &Arc<Self>, replicas: u32) -> Option<Lead> {
        let mut commits = self.commits.lock().ok()?;
        if commits.waiting {
            return None;
        }
        commits.waiting = true;
        Some(Lead {
            group: Arc::clone(self),
            covering: commits.taken,
            replicas,
            settled: false,
        })
    }

    /// Whether a `WAIT` is out (checks sent now queue behind it).
    pub(crate) fn is_waiting(&self) -> bool {
        self.commits.lock().map_or(true, |c| c.waiting)
    }

    /// Waits until the write of a check whose reply just came back is
    /// acknowledged by `replicas` replicas. `send_wait` makes one `WAIT` on
    /// the group's connection and resolves to how many replicas
    /// acknowledged (0 for a failure); it runs as a task of its own, so
    /// that a check that gives up does not leave the others without a
    /// `WAIT`.
    pub(crate) async fn confirm<F, Fut>(
        self: &Arc<Self>,
        replicas: u32,
        send_wait: F,
    ) -> Result<(), Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = u32> + Send + 'static,
    {
        let ticket = self.take_ticket();
        loop {
            let mut settled = pin!(self.settled.notified());
            settled.as_mut().enable();
            match self.standing(ticket, replicas) {
                Standing::Confirmed => return Ok(()),
                Standing::Short(acknowledged) => {
                    return Err(Error::Unreplicated {
                        acknowledged,
                        required: replicas,
                    });
                }
                Standing::Lead(covering) => {
                    let wait = send_wait();
                    let group = Arc::clone(self);
                    tokio::spawn(async move {
                        let acknowledged = wait.await;
                        group.settle(covering, acknowledged, replicas);
                    });
                }
                Standing::Pending => {}
            }
            settled.await;
        }
    }

    fn take_ticket(&self) -> u64 {
        let Ok(mut commits) = self.commits.lock() else {
            return u64::MAX;
        };
        commits.taken += 1;
        commits.taken
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

    /// Records what the `WAIT` covering tickets up to `covering` got, and
    /// wakes the checks waiting.
    fn settle(&self, covering: u64, acknowledged: u32, replicas: u32) {
        if let Ok(mut commits) = self.commits.lock() {
            commits.waiting = false;
            if acknowledged >= replicas {
                commits.confirmed = commits.confirmed.max(covering);
            } else {
                commits.failed = commits.failed.max(covering);
                commits.acknowledged = acknowledged;
            }
        }
        self.settled.notify_waiters();
    }
}

/// The right to send a group's next `WAIT` (see [`Group::lead`]).
pub(crate) struct Lead {
    group: Arc<Group>,
    covering: u64,
    replicas: u32,
    settled: bool,
}

impl Lead {
    /// Records what the `WAIT` got: `acknowledged` replicas.
    pub(crate) fn settle(mut self, acknowledged: u32) {
        self.settled = true;
        self.group
            .settle(self.covering, acknowledged, self.replicas);
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        if !self.settled {
            self.group.settle(self.covering, 0, self.replicas);
        }
    }
}
