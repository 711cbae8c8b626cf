//! [`Decision`]: what one rule says about one request.

use std::time::Duration;

use crate::{Quota, gcra};

/// What one rule says about one request: whether it fits, and the numbers a
/// client needs to behave (these feed the `RateLimit` HTTP headers).
///
/// A store builds it with [`Decision::from_state`] from the key's TAT after
/// the check; that one function serves every store, so they report alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    limit: u32,
    window_micros: u64,
    interval_micros: u64,
    /// The quota's burst (its tolerance is `burst × interval`): a `u32`
    /// here keeps the decision at 48 bytes, and verdicts carry several.
    burst: u32,
    retry_after_micros: u64,
    /// How far the key's TAT is ahead of the clock.
    reset_after_micros: u64,
    /// Units reserved beyond the request's cost.
    reserved: u32,
}

impl Decision {
    /// The decision for a key whose TAT is `tat` at `now` after the check
    /// (the charged TAT when the request was admitted and charged, the
    /// unchanged one otherwise).
    pub fn from_state(
        quota: &Quota,
        allowed: bool,
        tat: u64,
        now: u64,
        retry_after_micros: u64,
    ) -> Self {
        Self {
            allowed,
            limit: quota.limit(),
            window_micros: quota.window_micros(),
            interval_micros: quota.interval_micros(),
            burst: quota.burst(),
            retry_after_micros: if allowed { 0 } else { retry_after_micros },
            reset_after_micros: gcra::reset_after_micros(tat, now),
            reserved: 0,
        }
    }

    /// The same decision, reporting `units` reserved beyond the request.
    #[must_use]
    pub(crate) const fn with_reserved(mut self, units: u32) -> Self {
        self.reserved = units;
        self
    }

    /// Units the check reserved beyond its cost, for the caller to spend
    /// without asking the store again (an item's
    /// [`reserve`](crate::store::CheckItem::reserve); see
    /// [`Rule::with_batch`](crate::Rule::with_batch)). They are included in
    /// [`reset_after`](Self::reset_after) and [`remaining`](Self::remaining).
    pub const fn reserved(&self) -> u32 {
        self.reserved
    }

    /// Whether this rule admits the request. In a check of several rules the
    /// request is admitted only when every enforced rule admits it.
    pub const fn allowed(&self) -> bool {
        self.allowed
    }

    /// The rule's limit: requests per window.
    pub const fn limit(&self) -> u32 {
        self.limit
    }

    /// The rule's window.
    pub const fn window(&self) -> Duration {
        Duration::from_micros(self.window_micros)
    }

    /// Requests of cost 1 the key could still make right now, after this check.
    ///
    /// Computed when asked (it takes a division, which the check path skips).
    pub fn remaining(&self) -> u64 {
        gcra::remaining_from_ahead(
            self.interval_micros,
            self.interval_micros.saturating_mul(u64::from(self.burst)),
            self.reset_after_micros,
        )
    }

    /// For a denied request, how long until the same request could succeed
    /// (if nothing else charges the key); zero when allowed.
    pub const fn retry_after(&self) -> Duration {
        Duration::from_micros(self.retry_after_micros)
    }

    /// How long until the key is back to its full burst.
    pub const fn reset_after(&self) -> Duration {
        Duration::from_micros(self.reset_after_micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_stays_small() {
        // Verdicts hold up to four inline, and are moved on every check.
        assert_eq!(std::mem::size_of::<Decision>(), 48);
    }
}
