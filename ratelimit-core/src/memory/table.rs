//! The sharded key → TAT table behind [`MemoryStore`](super::MemoryStore).
//!
//! Each shard is a `hashbrown::HashTable` under a `parking_lot::RwLock`; each
//! entry holds its counter's state (TAT and revision, see [`pack`]) in an
//! `AtomicU64`. The hot path takes a shard's *read*
//! lock and updates the TAT with compare-and-swap, so checks on different keys
//! never wait for each other, and checks on one key only retry their CAS.
//! The write lock is taken only to insert a new key or remove old ones.
//!
//! A check of several keys must change them all or none. It claims each key
//! by setting the entry's [`LOCKED`] bit with a CAS, in key order (so two such
//! checks cannot deadlock), computes, then stores the new TATs, which clears
//! the bits. Nothing ever waits while holding a shard guard: a thread that
//! finds a key claimed drops its guard before backing off, so a queued writer
//! can never be stuck behind it. Claimed entries are never swept, so they stay
//! put between the two phases.
//!
//! The shards are written here rather than taken from a concurrent-map crate
//! because the store needs exactly these operations: one shard swept at a
//! time (amortized sweeping), a shared key count for the cap, and a removal
//! that respects the claim bit.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use hashbrown::HashTable;
use parking_lot::RwLock;
use smallvec::SmallVec;

use crate::Error;
use crate::gcra::Stored;

/// Set on an entry's TAT while a multi-key check has claimed it.
pub(crate) const LOCKED: u64 = 1 << 63;

/// Times are clamped below this so that a TAT, never further ahead of the
/// clock than the largest cap, fits the bits above an entry's revision and
/// never reaches the [`LOCKED`] bit.
pub(crate) const MAX_NOW: u64 = 1 << 52;

/// An entry's word holds a counter's [`Stored`] state: the TAT above the
/// revision's low bits ([`REVISIONS`](crate::gcra::REVISIONS) fit in them).
const REVISION_BITS: u32 = 10;
const REVISION_MASK: u64 = (1 << REVISION_BITS) - 1;
/// The largest TAT a word holds; larger ones (never formed under
/// [`MAX_NOW`]) are saturated to it.
const MAX_TAT: u64 = (LOCKED >> REVISION_BITS) - 1;

/// The word an entry holds for `state`.
pub(crate) fn pack(state: Stored) -> u64 {
    (state.tat.min(MAX_TAT) << REVISION_BITS) | (u64::from(state.revision) & REVISION_MASK)
}

/// The state an entry's word (without its [`LOCKED`] bit) holds; 0, an
/// absent key's word, is TAT 0.
pub(crate) fn unpack(word: u64) -> Stored {
    Stored {
        tat: (word & !LOCKED) >> REVISION_BITS,
        // Masked to ten bits, so it fits.
        revision: u16::try_from(word & REVISION_MASK).unwrap_or(0),
    }
}

/// Keys up to this many bytes are stored inside the entry, saving a heap
/// allocation and a cache miss per lookup; longer ones spill to the heap.
const INLINE_KEY: usize = 32;

struct Entry {
    key: SmallVec<[u8; INLINE_KEY]>,
    tat: AtomicU64,
}

pub(crate) struct Table {
    /// Padded to a cache line each, so threads reading different shards do
    /// not bounce one line between cores through the lock words.
    shards: Box<[CachePadded<RwLock<HashTable<Entry>>>]>,
    mask: usize,
    hasher: ahash::RandomState,
    len: AtomicUsize,
    max_keys: usize,
    inserts: AtomicUsize,
    sweep_every: usize,
    /// The insert count at which the next shard is swept.
    next_sweep: AtomicUsize,
    sweep_cursor: AtomicUsize,
    /// When the last full sweep forced by the cap ran (µs), to bound how
    /// often a flood of new keys can make the store scan everything.
    last_full_sweep: AtomicU64,
    /// The `ratelimit_memory_keys` gauge, kept equal to `len`.
    keys_gauge: metrics::Gauge,
}

/// At the cap, the whole table is swept at most this often (µs).
const FULL_SWEEP_EVERY_MICROS: u64 = 1_000_000;

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("shards", &self.shards.len())
            .field("len", &self.len())
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

/// What an update wants written back.
pub(crate) enum Write {
    /// Leave the entry as it is (and do not create it).
    Keep,
    /// Store this TAT.
    Set(u64),
}

impl Table {
    pub(crate) fn new(
        shards: usize,
        max_keys: usize,
        sweep_every: usize,
        keys_gauge: metrics::Gauge,
    ) -> Self {
        let shards = shards.clamp(1, 1 << 16).next_power_of_two();
        Self {
            shards: (0..shards)
                .map(|_| CachePadded::new(RwLock::new(HashTable::new())))
                .collect(),
            mask: shards.wrapping_sub(1),
            hasher: ahash::RandomState::new(),
            len: AtomicUsize::new(0),
            max_keys,
            inserts: AtomicUsize::new(0),
            sweep_every: sweep_every.max(1),
            next_sweep: AtomicUsize::new(sweep_every.max(1)),
            sweep_cursor: AtomicUsize::new(0),
            last_full_sweep: AtomicU64::new(0),
            keys_gauge,
        }
    }

    /// Moves the key-count gauge to the count now.
    fn report_len(&self) {
        #[allow(clippy::cast_precision_loss)] // exact below 2^53 keys
        self.keys_gauge.set(self.len() as f64);
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard_index(&self, hash: u64) -> usize {
        // hashbrown uses the low bits (bucket) and the top 7 (tag); take the
        // shard from the bits in between.
        (hash >> 40) as usize & self.mask
    }

    fn shard(&self, index: usize) -> &RwLock<HashTable<Entry>> {
        // index is masked, and shards.len() == mask + 1.
        &self.shards[index & self.mask]
    }

    /// Reads a key's TAT (0 when absent), ignoring any claim.
    pub(crate) fn get(&self, key: &[u8]) -> u64 {
        let hash = self.hash(key);
        let guard = self.shard(self.shard_index(hash)).read();
        guard
            .find(hash, |e| *e.key == *key)
            .map_or(0, |e| e.tat.load(Ordering::Acquire) & !LOCKED)
    }

    /// Applies `f` to a key's TAT (`None` when absent) with compare-and-swap,
    /// creating the entry when `f` asks to store a TAT for an absent key.
    /// `f` may run several times; its last result is returned.
    pub(crate) fn update<R>(
        &self,
        key: &[u8],
        now: u64,
        mut f: impl FnMut(Option<u64>) -> (R, Write),
    ) -> Result<R, Error> {
        let hash = self.hash(key);
        let index = self.shard_index(hash);
        let shard = self.shard(index);
        let mut backoff = Backoff::default();
        loop {
            {
                let guard = shard.read();
                if let Some(entry) = guard.find(hash, |e| *e.key == *key) {
                    let mut current = entry.tat.load(Ordering::Acquire);
                    while current & LOCKED == 0 {
                        let (result, write) = f(Some(current));
                        let Write::Set(new) = write else {
                            return Ok(result);
                        };
                        match entry.tat.compare_exchange_weak(
                            current,
                            new,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        ) {
                            Ok(_) => return Ok(result),
                            Err(actual) => current = actual,
                        }
                    }
                    // Claimed by a multi-key check: back off without the guard.
                } else {
                    drop(guard);
                    let (result, write) = f(None);
                    let Write::Set(new) = write else {
                        return Ok(result);
                    };
                    if self.insert(hash, index, key, new, now)? {
                        return Ok(result);
                    }
                    // Another thread inserted the key first: start over.
                    continue;
                }
            }
            backoff.snooze();
        }
    }

    /// Claims a key for a multi-key check and returns its TAT (0 when it was
    /// absent; the entry is then created, claimed, with TAT 0).
    pub(crate) fn claim(&self, key: &[u8], now: u64) -> Result<u64, Error> {
        let hash = self.hash(key);
        let index = self.shard_index(hash);
        let shard = self.shard(index);
        let mut backoff = Backoff::default();
        loop {
            {
                let guard = shard.read();
                match guard.find(hash, |e| *e.key == *key) {
                    Some(entry) => {
                        let current = entry.tat.load(Ordering::Acquire);
                        if current & LOCKED == 0
                            && entry
                                .tat
                                .compare_exchange(
                                    current,
                                    current | LOCKED,
                                    Ordering::AcqRel,
                                    Ordering::Acquire,
                                )
                                .is_ok()
                        {
                            return Ok(current);
                        }
                    }
                    None => {
                        drop(guard);
                        if self.insert(hash, index, key, LOCKED, now)? {
                            return Ok(0);
                        }
                        continue;
                    }
                }
            }
            backoff.snooze();
        }
    }

    /// Stores `tat` into a key this thread has claimed, releasing the claim.
    pub(crate) fn release(&self, key: &[u8], tat: u64) {
        let hash = self.hash(key);
        let guard = self.shard(self.shard_index(hash)).read();
        // A claimed entry is never removed, so it is there.
        if let Some(entry) = guard.find(hash, |e| *e.key == *key) {
            entry.tat.store(tat & !LOCKED, Ordering::Release);
        }
    }

    /// Removes a key (waiting for any claim on it to end). Returns whether it
    /// was present.
    pub(crate) fn remove(&self, key: &[u8]) -> bool {
        let hash = self.hash(key);
        let shard = self.shard(self.shard_index(hash));
        let mut backoff = Backoff::default();
        loop {
            {
                let mut guard = shard.write();
                match guard.find_entry(hash, |e| *e.key == *key) {
                    Err(_) => return false,
                    Ok(entry) if entry.get().tat.load(Ordering::Acquire) & LOCKED == 0 => {
                        entry.remove();
                        self.len.fetch_sub(1, Ordering::Relaxed);
                        self.report_len();
                        return true;
                    }
                    Ok(_) => {}
                }
            }
            backoff.snooze();
        }
    }

    /// Removes every key that no check has claimed.
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            self.sweep_table(&mut shard.write(), u64::MAX);
        }
    }

    /// Inserts a new key. Returns `Ok(false)` if the key appeared meanwhile.
    fn insert(
        &self,
        hash: u64,
        index: usize,
        key: &[u8],
        tat: u64,
        now: u64,
    ) -> Result<bool, Error> {
        let shard = self.shard(index);
        let mut swept_all = false;
        loop {
            let mut guard = shard.write();
            if guard.find(hash, |e| *e.key == *key).is_some() {
                return Ok(false);
            }
            if !self.reserve() {
                // Full: reclaim what has expired here, under the lock we hold.
                self.sweep_table(&mut guard, now);
                if !self.reserve() {
                    drop(guard);
                    // Then everywhere, but at most once a second, so a flood
                    // of new keys at the cap cannot make every request scan
                    // the whole table.
                    if swept_all || !self.may_sweep_all(now) {
                        return Err(Error::CapacityExhausted(self.max_keys));
                    }
                    self.sweep_all(now);
                    swept_all = true;
                    continue;
                }
            }
            let hasher = &self.hasher;
            guard.insert_unique(
                hash,
                Entry {
                    key: SmallVec::from_slice(key),
                    tat: AtomicU64::new(tat),
                },
                |e| hasher.hash_one(&*e.key),
            );
            drop(guard);
            self.report_len();
            let inserted = self.inserts.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            let due = self.next_sweep.load(Ordering::Relaxed);
            // One shard per `sweep_every` new keys, or per shard's worth of
            // keys when shards are larger: sweeping then scans about one
            // entry per insert however big the table grows, and a full
            // rotation — every expired key reclaimed — takes about one
            // table's worth of new keys.
            if inserted >= due {
                let gap = self.sweep_every.max(self.len() / self.shards.len());
                if self
                    .next_sweep
                    .compare_exchange(
                        due,
                        inserted.wrapping_add(gap),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    self.sweep_next(now);
                }
            }
            return Ok(true);
        }
    }

    /// Takes one slot of the key budget, if any is left.
    fn reserve(&self) -> bool {
        self.len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |len| {
                (len < self.max_keys).then(|| len.wrapping_add(1))
            })
            .is_ok()
    }

    /// Whether a full sweep may run now (and if so, records it).
    fn may_sweep_all(&self, now: u64) -> bool {
        let last = self.last_full_sweep.load(Ordering::Acquire);
        (last == 0 || now >= last.saturating_add(FULL_SWEEP_EVERY_MICROS))
            && self
                .last_full_sweep
                .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Sweeps the next shard in round-robin order.
    fn sweep_next(&self, now: u64) -> usize {
        let index = self.sweep_cursor.fetch_add(1, Ordering::Relaxed);
        let mut guard = self.shard(index).write();
        self.sweep_table(&mut guard, now)
    }

    /// Sweeps every shard; returns how many keys were removed.
    pub(crate) fn sweep_all(&self, now: u64) -> usize {
        self.shards
            .iter()
            .map(|shard| self.sweep_table(&mut shard.write(), now))
            .sum()
    }

    /// Removes the entries of one shard whose TAT is not in the future (they
    /// are equivalent to absent keys) and that no check has claimed.
    fn sweep_table(&self, table: &mut HashTable<Entry>, now: u64) -> usize {
        let before = table.len();
        table.retain(|e| {
            let word = *e.tat.get_mut();
            word & LOCKED != 0 || unpack(word).tat > now
        });
        let removed = before.saturating_sub(table.len());
        if removed > 0 {
            self.len.fetch_sub(removed, Ordering::Relaxed);
            self.report_len();
        }
        removed
    }
}

/// Spin briefly, then yield the thread: claims last nanoseconds.
#[derive(Default)]
struct Backoff {
    step: u32,
}

impl Backoff {
    fn snooze(&mut self) {
        if self.step < 6 {
            for _ in 0..(1u32 << self.step) {
                std::hint::spin_loop();
            }
            self.step = self.step.saturating_add(1);
        } else {
            std::thread::yield_now();
        }
    }
}
