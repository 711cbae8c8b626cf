//! The [`Store`] trait — where counters live, and the atomic check — and
//! what a store implementer needs besides: the items of a check
//! ([`CheckItem`]), its answer ([`Outcome`]), the one evaluation every store
//! settles a check with ([`evaluate`]) and the validation every store
//! applies first ([`validate_items`]). Users of a limiter need only
//! [`Store`], re-exported at the crate root.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use smallvec::SmallVec;

pub use crate::decision::Decision;
pub use crate::error::BoxError;
pub use crate::memory::MemoryStoreBuilder;

use crate::gcra::{Lineage, Stored};
use crate::{Error, Quota};

/// The most keys one check may name.
pub const MAX_KEYS_PER_CHECK: usize = 16;

/// One rule's part of a check: a counter's key, its quota and the request's
/// cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckItem<'a> {
    /// The counter's storage key (see [`KeyPrefix::key`](crate::KeyPrefix::key)).
    pub key: &'a [u8],
    /// The quota to test the counter against.
    pub quota: Quota,
    /// The request's cost, 1 to the quota's burst.
    pub cost: u32,
    /// A shadow item never blocks the request: it is charged when the
    /// request is admitted and it conforms, and its decision is reported.
    pub shadow: bool,
    /// Units wanted beyond `cost`, for the caller to spend later on its own
    /// (see [`gcra::extra_units`](crate::gcra::extra_units)); 0 for a plain
    /// check. When the check is admitted, the item is charged for as many of
    /// them as the key can give, and its decision reports how many in
    /// [`Decision::reserved`]. Ignored for shadow items.
    pub reserve: u32,
    /// Which quota the rule's counters were charged under before (see
    /// [`Lineage`]): how a store reads a counter charged before the rule's
    /// last change.
    pub lineage: Lineage,
}

impl<'a> CheckItem<'a> {
    /// An enforced item of cost 1.
    pub fn new(key: &'a [u8], quota: Quota) -> Self {
        Self {
            key,
            quota,
            cost: 1,
            shadow: false,
            reserve: 0,
            lineage: Lineage::ORIGINAL,
        }
    }
}

/// A store's answer to a check: the overall verdict and one decision per item,
/// in the order of the items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Whether every enforced item admitted the request (and so every
    /// enforced item, and every conforming shadow item, was charged).
    pub allowed: bool,
    /// One decision per item, in order.
    pub decisions: SmallVec<[Decision; 2]>,
}

/// Where counters live. Implementations: [`MemoryStore`](crate::MemoryStore)
/// here, `RedisStore` in `ratelimit-redis`.
///
/// The contract every implementation keeps:
///
/// - **Atomic, all-or-nothing.** [`check`](Self::check) tests every item at one
///   instant of the store's own clock. If every enforced item conforms, all
///   of them are charged (and each conforming shadow item); otherwise nothing
///   is charged. No interleaving of concurrent checks can admit more than GCRA
///   allows for any key.
/// - **The store's clock.** Time is the store's own (the in-memory store's
///   injected [`Clock`](crate::Clock), Redis's `TIME`), so callers with
///   skewed clocks agree.
/// - **Validation.** Items are validated with [`validate_items`]: distinct
///   keys, at most [`MAX_KEYS_PER_CHECK`], each cost within its quota.
///   An empty check is allowed and charges nothing.
///
/// The trait is object safe: limiters hold an `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + Debug + 'static {
    /// Tests and (when every enforced item conforms) charges the items,
    /// atomically.
    async fn check(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error>;

    /// What [`check`](Self::check) would answer now, without charging anything.
    async fn peek(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error>;

    /// Forgets the counters under `keys`, so they start fresh.
    async fn reset(&self, keys: &[&[u8]]) -> Result<(), Error>;

    /// [`check`](Self::check) answered in place, without a future, by a
    /// store that needs no I/O to answer (its counters live in this
    /// process, as the in-memory store's do). `None`, the default, means
    /// "await `check`"; a store returning `None` must not have charged
    /// anything. A store that answers here must answer exactly as `check`
    /// would.
    fn try_check_now(&self, items: &[CheckItem<'_>]) -> Option<Result<Outcome, Error>> {
        let _ = items;
        None
    }

    /// The bound this store itself puts on each of its calls, failing a
    /// call that takes longer with [`Error::Timeout`]; `None`, the default,
    /// for a store that does not bound its calls. A limiter whose own
    /// timeout is no shorter leaves the bounding of store calls to the
    /// store, so a check arms one timer, not two.
    fn call_timeout(&self) -> Option<std::time::Duration> {
        None
    }

    /// The server answering this store's calls now (an address such as
    /// `10.0.0.5:6379`), for health reports; `None`, the default, for a
    /// store in this process or one that does not know yet.
    fn node(&self) -> Option<String> {
        None
    }
}

#[async_trait]
impl<S: Store + ?Sized> Store for Arc<S> {
    async fn check(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        (**self).check(items).await
    }

    async fn peek(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        (**self).peek(items).await
    }

    async fn reset(&self, keys: &[&[u8]]) -> Result<(), Error> {
        (**self).reset(keys).await
    }

    fn try_check_now(&self, items: &[CheckItem<'_>]) -> Option<Result<Outcome, Error>> {
        (**self).try_check_now(items)
    }

    fn call_timeout(&self) -> Option<std::time::Duration> {
        (**self).call_timeout()
    }

    fn node(&self) -> Option<String> {
        (**self).node()
    }
}

/// Checks what every store requires of a check's items: at most
/// [`MAX_KEYS_PER_CHECK`] items, distinct keys, and costs their quotas can
/// admit. Stores call this first so they refuse the same inputs alike.
pub fn validate_items(items: &[CheckItem<'_>]) -> Result<(), Error> {
    if items.len() > MAX_KEYS_PER_CHECK {
        return Err(Error::TooManyKeys {
            count: items.len(),
            max: MAX_KEYS_PER_CHECK,
        });
    }
    for (i, item) in items.iter().enumerate() {
        item.quota.check_cost(item.cost)?;
        if items.iter().skip(i + 1).any(|other| other.key == item.key) {
            return Err(Error::DuplicateKey);
        }
    }
    Ok(())
}

/// A whole check evaluated at one instant: see [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The verdict and the per-item decisions.
    pub outcome: Outcome,
    /// The TAT each key stands at afterwards, in item order, under the
    /// item's current [`Lineage::revision`].
    pub tats: SmallVec<[u64; MAX_KEYS_PER_CHECK]>,
    /// Bit `i` set: item `i` must be written (the check charged it, or
    /// found its state [capped](crate::gcra::Booked::capped)); clear: the
    /// stored state stays as it is.
    pub written: u32,
}

impl Evaluation {
    /// What item `i`'s key must hold afterwards: `Some(tat)` to write,
    /// `None` to leave the stored state as it is.
    pub fn write(&self, i: usize) -> Option<u64> {
        if self.written & item_bit(i) != 0 {
            self.tats.get(i).copied()
        } else {
            None
        }
    }
}

/// Item `i`'s bit in [`Evaluation::written`] (0 beyond 32 items: a check
/// has at most [`MAX_KEYS_PER_CHECK`]).
fn item_bit(i: usize) -> u32 {
    u32::try_from(i)
        .ok()
        .and_then(|i| 1_u32.checked_shl(i))
        .unwrap_or(0)
}

/// Evaluates a check of `items` whose keys hold `stored` at `now`: each
/// stored state is read with [`gcra::booked`](crate::gcra::booked) and
/// tested with [`gcra::test`](crate::gcra::test); the check is admitted
/// when every enforced item conforms; if it is admitted and `charge` is
/// set, each conforming item is charged (a reserving enforced item also for
/// its [`gcra::extra_units`](crate::gcra::extra_units)).
///
/// Every store settles a check with this one function (the Redis script
/// mirrors it line for line, held equal by a differential test), so stores
/// cannot disagree about what a check means.
pub fn evaluate(items: &[CheckItem<'_>], stored: &[Stored], now: u64, charge: bool) -> Evaluation {
    evaluate_by(
        items,
        |i| stored.get(i).copied().unwrap_or_default(),
        now,
        charge,
    )
}

/// [`evaluate`] with each item's stored state read by `stored(i)`, for
/// stores that hold states in another form.
#[inline]
pub(crate) fn evaluate_by(
    items: &[CheckItem<'_>],
    stored: impl Fn(usize) -> Stored,
    now: u64,
    charge: bool,
) -> Evaluation {
    // A booked TAT that is not capped is either below `now` (then the
    // decision reads the same with `now`) or the test's base, so each
    // item's base is recovered from its test and only the capped bits are
    // kept aside.
    let mut capped = 0_u32;
    let tests: SmallVec<[crate::gcra::Test; MAX_KEYS_PER_CHECK]> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let read = crate::gcra::booked(&item.quota, &item.lineage, stored(i), now);
            if read.capped {
                capped |= item_bit(i);
            }
            crate::gcra::test(&item.quota, Some(read.tat), now, item.cost)
        })
        .collect();
    let allowed = items
        .iter()
        .zip(&tests)
        .all(|(item, test)| item.shadow || test.conforms);
    let mut decisions = SmallVec::with_capacity(items.len());
    let mut tats = SmallVec::with_capacity(items.len());
    let mut written = capped;
    for (i, (item, test)) in items.iter().zip(&tests).enumerate() {
        let mut reserved = 0;
        let increment = item
            .quota
            .interval_micros()
            .saturating_mul(u64::from(item.cost));
        let tat = if charge && allowed && test.conforms {
            if item.reserve > 0 && !item.shadow {
                reserved =
                    crate::gcra::extra_units(&item.quota, test.charged_tat, now, item.reserve);
            }
            written |= item_bit(i);
            crate::gcra::with_extra_units(&item.quota, test.charged_tat, reserved)
        } else {
            test.charged_tat.saturating_sub(increment)
        };
        tats.push(tat);
        decisions.push(
            Decision::from_state(
                &item.quota,
                test.conforms,
                tat,
                now,
                test.retry_after_micros,
            )
            .with_reserved(reserved),
        );
    }
    Evaluation {
        outcome: Outcome { allowed, decisions },
        tats,
        written,
    }
}
