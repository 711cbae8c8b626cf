//! [`DenyCache`]: denials answered locally, without a store round trip,
//! and exactly as the store would answer them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, counter, gauge};
use smallvec::SmallVec;

use super::verdict::{Source, Verdict, every_rule, local_denial};
use crate::gcra::Stored;
use crate::memory::table::{MAX_NOW, Table, Write, pack, unpack};
use crate::rule_set::Selected;
use crate::{Clock, Decision, SystemClock, gcra, telemetry};

/// Settings of a limiter's local deny cache: denials answered locally,
/// without a store round trip, and exactly as the store would answer them.
/// The settings are how many keys it may remember and the clock it reads.
///
/// Off unless configured with
/// [`LimiterConfig::deny_cache`](crate::LimiterConfig::deny_cache). Worth it
/// in front of a remote store (Redis), where it turns a flood of denied
/// requests into local lookups; in front of the in-memory store it only
/// adds a lookup.
///
/// Under GCRA a key's TAT only moves forward (until its rule changes or an
/// operator resets it). So when the store denies a check because of a key,
/// the instance knows a lower bound of that key's TAT — the TAT the store
/// reported, placed on the instance's own clock as read *before* the store
/// was asked (the store decided later than that, so the bound can only be
/// early, never late). Until the clock passes that bound, any later check of
/// the same key, of the same or a greater cost, would be denied by the store
/// too: the cache answers it in place. A check of a smaller cost, or one
/// whose bound no longer denies it, goes to the store as usual — the cache
/// never admits anything, and never denies what the store would admit.
///
/// The cache is emptied whenever the limiter's rules change (locally or by
/// a reload from the shared rule store) and when a counter is reset
/// ([`DistributedRateLimiter::reset`](crate::DistributedRateLimiter::reset)
/// announces the reset to the fleet through the rule store, so every
/// instance drops its cached denials). Between a change on one instance and
/// the announcement reaching another (milliseconds), the other may still
/// deny from its cache — the same window in which it still applies the old
/// rules.
///
/// A cached denial reports the rules that denied it, with their figures
/// computed from the cached bound: `Retry-After` may read earlier than the
/// store would say (never later), and rules that did not deny are not in
/// the verdict.
///
/// One corner is not identical. A key found beyond its cap (the store's
/// clock stepped back: see [`gcra::booked`](crate::gcra::booked)) is
/// capped by the store when a check visits it. A check answered
/// from the cache visits none of its keys, so when it names such a key
/// together with a cached one (two routes sharing a global rule, say), that
/// key is capped at the next check the store sees instead, so it may wait
/// up to as long as the cached denial lasted before it admits again. It
/// never admits more.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use ratelimit_core::clock::FakeClock;
/// use ratelimit_core::config::DenyCache;
/// use ratelimit_core::verdict::Source;
/// use ratelimit_core::{DistributedRateLimiter, Identity, LimiterConfig, MemoryStore, Rules, Target};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ratelimit_core::Error> {
/// let clock = FakeClock::new();
/// let store = Arc::new(MemoryStore::with_clock(clock.clone()));
/// let limiter = DistributedRateLimiter::new(
///     LimiterConfig::new(store).deny_cache(DenyCache::new(100_000).clock(clock.clone())),
/// );
/// limiter.add_rule("api", Target::Each, 1, Duration::from_secs(1)).await?;
/// let (caller, api) = (Identity::user("7"), Rules::one("api"));
/// assert!(limiter.check(&caller, &api, 1).await?.allowed());
/// assert_eq!(limiter.check(&caller, &api, 1).await?.source(), Source::Store); // denied, remembered
/// assert_eq!(limiter.check(&caller, &api, 1).await?.source(), Source::DenyCache);
/// clock.advance(Duration::from_secs(1));
/// assert!(limiter.check(&caller, &api, 1).await?.allowed());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct DenyCache {
    max_entries: usize,
    clock: Option<Arc<dyn Clock>>,
}

impl DenyCache {
    /// A cache of at most `max_entries` denied keys (it is the in-memory
    /// store's table: about a hundred bytes per key, see
    /// `docs/benchmarks.md`).
    /// When full, new denials are not remembered until expired ones are
    /// swept: they are answered by the store, as without a cache.
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries,
            clock: None,
        }
    }

    /// The clock the cache reads (default: the system clock). Tests pass a
    /// [`FakeClock`](crate::clock::FakeClock), the same one their store reads.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    pub(crate) fn build(self) -> Denials {
        Denials {
            table: Table::new(
                16,
                self.max_entries,
                64,
                gauge!(telemetry::DENY_CACHE_ENTRIES),
            ),
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock::new())),
            hits: counter!(telemetry::DENY_CACHE_HITS),
            generation: AtomicU64::new(0),
        }
    }
}

/// The cache itself: storage key → a lower bound of the key's TAT, in µs of
/// the cache's clock.
#[derive(Debug)]
pub(crate) struct Denials {
    table: Table,
    clock: Arc<dyn Clock>,
    hits: Counter,
    /// Grows with every [`clear`](Self::clear), so an answer the store gave
    /// before a clear is not remembered after it.
    generation: AtomicU64,
}

/// When a check asked the store, for [`Denials::remember`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asked {
    at: u64,
    generation: u64,
}

impl Denials {
    fn now(&self) -> u64 {
        self.clock.now_micros().min(MAX_NOW)
    }

    /// Read just before a check asks the store.
    pub(crate) fn ask(&self) -> Asked {
        Asked {
            generation: self.generation.load(Ordering::Acquire),
            at: self.now(),
        }
    }

    /// The verdict of a check of `cost` over `selected` (storage keys
    /// `keys`, in the same order) if a cached bound already denies it. It
    /// lists every enforced rule, as the store's would: each denying rule by
    /// its bound, the others as the cache knows them (by their bound, or
    /// rested when it holds none).
    pub(crate) fn answer<'k>(
        &self,
        selected: &Selected<'_, '_>,
        keys: impl Iterator<Item = &'k [u8]> + Clone,
        cost: u32,
    ) -> Option<Verdict> {
        let mut now = None;
        // Most checks find no bound: this pass costs them one lookup a key.
        let mut decided: SmallVec<[Option<Decision>; 2]> = SmallVec::new();
        let mut denied = false;
        for ((rule, _), key) in selected.iter().zip(keys) {
            let bound = if rule.is_shadow() {
                0
            } else {
                unpack(self.table.get(key)).tat
            };
            if bound == 0 {
                decided.push(None);
                continue;
            }
            let now = *now.get_or_insert_with(|| self.now());
            let quota = rule.quota();
            // Bounds are remembered under the rules in force (a change
            // clears them), so they are of the rule's current revision.
            let lineage = rule.lineage();
            let stored = Stored {
                tat: bound,
                revision: lineage.revision(),
            };
            let tat = gcra::booked(quota, &lineage, stored, now).tat;
            let test = gcra::test(quota, Some(tat), now, cost);
            denied |= !test.conforms;
            let retry = test.retry_after_micros;
            decided.push(Some(Decision::from_state(
                quota,
                test.conforms,
                tat,
                now,
                retry,
            )));
        }
        if !denied {
            return None;
        }
        self.hits.increment(1);
        let decisions = every_rule(selected, |i| decided.get(i).copied().flatten());
        Some(local_denial(Source::DenyCache, decisions))
    }

    /// Remembers what the store said of every key of `verdict`, a denial:
    /// the store's answer to a check that read [`ask`](Self::ask) just
    /// before asking it. Each key's bound is its TAT then, a lower bound of
    /// its TAT from now on: the denying keys answer the next checks, and
    /// the others let those answers report them as the store did.
    pub(crate) fn remember<'k>(
        &self,
        verdict: &Verdict,
        keys: &(impl Iterator<Item = &'k [u8]> + Clone),
        asked: Asked,
    ) {
        if verdict.allowed || verdict.source != Source::Store {
            return;
        }
        let Asked {
            at: asked,
            generation,
        } = asked;
        let enforced = || {
            verdict
                .decisions
                .iter()
                .zip(keys.clone())
                .filter(|(d, _)| !d.shadow)
        };
        for (decision, key) in enforced() {
            let ahead =
                u64::try_from(decision.decision.reset_after().as_micros()).unwrap_or(u64::MAX);
            let bound = asked.saturating_add(ahead).min(MAX_NOW);
            if bound <= asked {
                continue;
            }
            // A full cache just does not remember: the store answers.
            let _ = self.table.update(key, asked, |current| {
                let tat = current.map_or(bound, |word| unpack(word).tat.max(bound));
                ((), Write::Set(pack(Stored { tat, revision: 0 })))
            });
        }
        // A clear (a reset) since the store was asked: the answer may be from
        // before it. Whatever the clear did not already remove goes now.
        if self.generation.load(Ordering::Acquire) != generation {
            for (_, key) in enforced() {
                self.table.remove(key);
            }
        }
    }

    /// Forgets everything (the rules changed, or a counter was reset).
    pub(crate) fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.table.clear();
    }
}
