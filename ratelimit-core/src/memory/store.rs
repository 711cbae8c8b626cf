//! [`MemoryStore`] and its builder.

use std::sync::Arc;

use async_trait::async_trait;
use smallvec::SmallVec;

use super::table::{MAX_NOW, Table, Write, pack, unpack};
use crate::gcra::Stored;
use crate::store::{CheckItem, MAX_KEYS_PER_CHECK, Outcome, Store, evaluate_by, validate_items};
use crate::{Clock, Decision, Error, SystemClock, gcra};

/// An in-process [`Store`]: lock-free checks over a sharded table, bounded in
/// size, cleaning itself.
///
/// - **Concurrency.** A check on one key is a compare-and-swap on that key's
///   TAT under a shard's read lock; there is no global lock and no lock is
///   held across an `.await`. A check of several keys claims them in key
///   order for the few nanoseconds it computes (see the table module docs).
/// - **Expiry.** A key whose TAT has passed is equivalent to an absent one.
///   Every [`sweep_every`](MemoryStoreBuilder::sweep_every) new keys (or,
///   in a large table, every shard's worth of new keys), one shard is swept
///   of such keys, so memory follows the live keys with no background task
///   and a sweep scans about one entry per new key however large the table;
///   [`sweep_expired`](Self::sweep_expired) sweeps all.
/// - **The cap.** At most [`max_keys`](MemoryStoreBuilder::max_keys) keys are
///   held. When a check needs a new key and the store is full, expired keys
///   are reclaimed first: those of the key's shard, then (at most once a
///   second) those of every shard. If none has expired the check fails with
///   [`Error::CapacityExhausted`], which the limiter answers with its
///   [`FailurePolicy`](crate::FailurePolicy). Keys already held keep working
///   at the cap. A flood of distinct keys therefore costs bounded memory, and
///   bounded work per request.
///
/// Cloning is cheap and clones share the same counters.
///
/// ```
/// use std::time::Duration;
/// use ratelimit_core::store::CheckItem;
/// use ratelimit_core::{clock::FakeClock, MemoryStore, Quota};
///
/// let clock = FakeClock::new();
/// let store = MemoryStore::builder().clock(clock.clone()).max_keys(10_000).build();
/// let quota = Quota::per_second(1)?;
/// let item = CheckItem::new(b"k", quota);
/// assert!(store.check_now(&[item])?.allowed);
/// assert!(!store.check_now(&[item])?.allowed);
/// clock.advance(Duration::from_secs(1));
/// assert!(store.check_now(&[item])?.allowed);
/// # Ok::<(), ratelimit_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    table: Table,
    clock: Arc<dyn Clock>,
}

impl MemoryStore {
    /// The default cap on the number of keys.
    pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

    /// A store with the system clock and default settings.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A store reading time from `clock`, with default settings.
    pub fn with_clock(clock: impl Clock) -> Self {
        Self::builder().clock(clock).build()
    }

    /// Configures a store.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder::default()
    }

    /// How many keys are held now (including expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.inner.table.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every expired key now; returns how many were removed.
    pub fn sweep_expired(&self) -> usize {
        self.inner.table.sweep_all(self.now())
    }

    fn now(&self) -> u64 {
        self.inner.clock.now_micros().min(MAX_NOW)
    }

    /// [`Store::check`] without the future: the same atomic check, run now on
    /// this thread.
    pub fn check_now(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        validate_items(items)?;
        match items {
            [] => Ok(Outcome {
                allowed: true,
                decisions: SmallVec::new(),
            }),
            [item] => self.check_one(item),
            _ => self.check_many(items),
        }
    }

    /// [`Store::peek`] without the future.
    pub fn peek_now(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        validate_items(items)?;
        let now = self.now();
        let read = |i: usize| {
            items.get(i).map_or_else(Stored::default, |item| {
                unpack(self.inner.table.get(item.key))
            })
        };
        Ok(evaluate_by(items, read, now, false).outcome)
    }

    /// [`Store::reset`] without the future.
    pub fn reset_now(&self, keys: &[&[u8]]) {
        for key in keys {
            self.inner.table.remove(key);
        }
    }

    fn check_one(&self, item: &CheckItem<'_>) -> Result<Outcome, Error> {
        let now = self.now();
        let quota = &item.quota;
        // The closure returns only the small test result; the decision is
        // built once, after the CAS loop.
        let want = if item.shadow { 0 } else { item.reserve };
        let revision = item.lineage.revision();
        let (test, tat, reserved) = self.inner.table.update(item.key, now, |word| {
            let read = word.map(|word| gcra::booked(quota, &item.lineage, unpack(word), now));
            let test = gcra::test(quota, read.map(|r| r.tat), now, item.cost);
            if test.conforms {
                let reserved = gcra::extra_units(quota, test.charged_tat, now, want);
                let charged = gcra::with_extra_units(quota, test.charged_tat, reserved);
                let word = pack(Stored {
                    tat: charged,
                    revision,
                });
                ((test, charged, reserved), Write::Set(word))
            } else {
                // Only a capped state is written back on a denial (see
                // gcra::booked).
                let tat = read.map_or(0, |r| r.tat);
                let write = match read {
                    Some(read) if read.capped => Write::Set(pack(Stored { tat, revision })),
                    _ => Write::Keep,
                };
                ((test, tat, 0), write)
            }
        })?;
        let decision =
            Decision::from_state(quota, test.conforms, tat, now, test.retry_after_micros)
                .with_reserved(reserved);
        let mut decisions = SmallVec::new();
        decisions.push(decision);
        Ok(Outcome {
            allowed: test.conforms || item.shadow,
            decisions,
        })
    }

    fn check_many(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        let table = &self.inner.table;
        // Fixed arrays: the items were validated (at most
        // `MAX_KEYS_PER_CHECK`), and filling an array is cheaper than growing
        // a vector to the same length.
        let n = items.len().min(MAX_KEYS_PER_CHECK);
        // Claim in key order so that two multi-key checks cannot deadlock.
        let mut order = [0_usize; MAX_KEYS_PER_CHECK];
        for (i, slot) in order.iter_mut().enumerate() {
            *slot = i;
        }
        let order = &mut order[..n];
        order.sort_unstable_by_key(|&i| items.get(i).map(|item| item.key));

        let mut words = [0_u64; MAX_KEYS_PER_CHECK];
        let words = &mut words[..n];
        let before = self.now();
        for (claimed, &i) in order.iter().enumerate() {
            let (Some(item), Some(slot)) = (items.get(i), words.get_mut(i)) else {
                continue;
            };
            match table.claim(item.key, before) {
                Ok(word) => *slot = word,
                Err(error) => {
                    // Give back what was claimed, unchanged.
                    for &j in order.iter().take(claimed) {
                        if let (Some(item), Some(&word)) = (items.get(j), words.get(j)) {
                            table.release(item.key, word);
                        }
                    }
                    return Err(error);
                }
            }
        }

        // Every key is ours: read the time once and decide for all of them.
        let now = self.now();
        let read = |i: usize| {
            words
                .get(i)
                .map_or_else(Stored::default, |&word| unpack(word))
        };
        let evaluation = evaluate_by(items, read, now, true);
        for (i, (item, &word)) in items.iter().zip(words.iter()).enumerate() {
            let word = match evaluation.write(i) {
                Some(tat) => pack(Stored {
                    tat,
                    revision: item.lineage.revision(),
                }),
                None => word,
            };
            table.release(item.key, word);
        }
        Ok(evaluation.outcome)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn check(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        self.check_now(items)
    }

    async fn peek(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        self.peek_now(items)
    }

    async fn reset(&self, keys: &[&[u8]]) -> Result<(), Error> {
        self.reset_now(keys);
        Ok(())
    }

    fn try_check_now(&self, items: &[CheckItem<'_>]) -> Option<Result<Outcome, Error>> {
        Some(self.check_now(items))
    }
}

/// Configures a [`MemoryStore`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryStoreBuilder {
    clock: Option<Arc<dyn Clock>>,
    max_keys: usize,
    shards: usize,
    sweep_every: usize,
    metrics_label: &'static str,
}

impl Default for MemoryStoreBuilder {
    fn default() -> Self {
        Self {
            clock: None,
            max_keys: MemoryStore::DEFAULT_MAX_KEYS,
            shards: std::thread::available_parallelism()
                .map_or(4, usize::from)
                .saturating_mul(16),
            sweep_every: 1024,
            metrics_label: "memory",
        }
    }
}

impl MemoryStoreBuilder {
    /// The clock to read time from (default: [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The most keys held at once (default [`MemoryStore::DEFAULT_MAX_KEYS`]).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// The number of shards, rounded up to a power of two (default: 16 per
    /// core). More shards mean less contention on inserts and smaller sweeps.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// Sweep one shard of expired keys every this many new keys (default
    /// 1024), or every shard's worth of new keys when shards hold more.
    pub fn sweep_every(mut self, new_keys: usize) -> Self {
        self.sweep_every = new_keys;
        self
    }

    /// The `store` label of this store's key-count gauge
    /// ([`telemetry::MEMORY_KEYS`](crate::telemetry::MEMORY_KEYS); default
    /// `memory`, and `fallback` for a limiter's own fallback store). The
    /// gauge is registered with the metrics recorder installed at `build`.
    pub fn metrics_label(mut self, label: &'static str) -> Self {
        self.metrics_label = label;
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore {
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock::new()));
        MemoryStore {
            inner: Arc::new(Inner {
                table: Table::new(
                    self.shards,
                    self.max_keys,
                    self.sweep_every,
                    crate::telemetry::memory_keys(self.metrics_label),
                ),
                clock,
            }),
        }
    }
}
