//! [`Error`]: everything that can go wrong, in one enum.

use std::time::Duration;

/// A boxed error from a store's backend (a Redis client error, say).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of this crate: invalid configuration or input, and store failures.
///
/// Being rate limited is not an error: it is a [`Decision`](crate::Decision)
/// with `allowed == false`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- quotas and costs ---
    /// A quota's limit was zero.
    #[error("limit must be at least 1")]
    ZeroLimit,
    /// A quota's window was outside the supported range.
    #[error("window {window:?} is out of range ({min:?} to {max:?})")]
    WindowOutOfRange {
        /// The window asked for.
        window: Duration,
        /// The shortest window allowed.
        min: Duration,
        /// The longest window allowed.
        max: Duration,
    },
    /// More than one request per microsecond was asked for.
    #[error("{limit} requests per {window:?} is more than one per microsecond")]
    RateTooHigh {
        /// The limit asked for.
        limit: u32,
        /// The window asked for.
        window: Duration,
    },
    /// A quota's burst was zero.
    #[error("burst must be at least 1")]
    ZeroBurst,
    /// `burst × emission interval` exceeds the supported tolerance.
    #[error("burst {burst} makes the tolerance exceed {max_tolerance:?}")]
    BurstTooLarge {
        /// The burst asked for.
        burst: u32,
        /// The largest tolerance allowed.
        max_tolerance: Duration,
    },
    /// A request's cost was zero.
    #[error("cost must be at least 1")]
    ZeroCost,
    /// A request's cost was larger than a rule's burst, so it could never be
    /// admitted.
    #[error("cost {cost} exceeds the burst {burst}: such a request could never be admitted")]
    CostExceedsBurst {
        /// The cost asked for.
        cost: u32,
        /// The rule's burst.
        burst: u32,
    },

    // --- rules, targets and callers ---
    /// A rule id was empty.
    #[error("rule id is empty")]
    EmptyRuleId,
    /// A rule id was too long or used characters outside `[A-Za-z0-9_.-]`.
    #[error("invalid rule id {id:?}: {reason}")]
    InvalidRuleId {
        /// The id, escaped for display.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A target or caller string could not be parsed.
    #[error("invalid target {input:?}: {reason}")]
    InvalidTarget {
        /// The input, escaped for display.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No rule has this id.
    #[error("unknown rule {0:?}")]
    UnknownRule(String),
    /// `add_rule` was called with an id that is already taken.
    #[error("rule {0:?} already exists")]
    RuleExists(String),
    /// The rule exists but targets someone else (e.g. a rule for `user:7`
    /// checked for `user:8`).
    #[error("rule {rule:?} does not apply to {caller}")]
    RuleNotApplicable {
        /// The rule id.
        rule: String,
        /// The caller, as `kind:id`.
        caller: String,
    },
    /// A failure policy name was not `fail_open`, `fail_closed` or
    /// `local_fallback`.
    #[error("unknown failure policy {0:?} (expected fail_open, fail_closed or local_fallback)")]
    InvalidPolicy(String),
    /// A stored rule could not be read back.
    #[error("stored rule {rule:?} is unreadable: {reason}")]
    InvalidRecord {
        /// The rule id.
        rule: String,
        /// What is wrong with the record.
        reason: &'static str,
    },
    /// A rule changed between reading it and writing it back (another
    /// instance changed it first).
    #[error("rule {0:?} was changed concurrently")]
    RuleConflict(String),
    /// A key prefix was empty, too long or contained characters outside
    /// printable ASCII without `{` and `}`.
    #[error("invalid key prefix {0:?}")]
    InvalidPrefix(String),
    /// An admin API token that cannot be used (empty, or not sendable in an
    /// `Authorization` header).
    #[error("invalid admin token: {0}")]
    InvalidAdminToken(&'static str),

    // --- store checks ---
    /// The same key appeared twice in one check.
    #[error("a check names the same key twice")]
    DuplicateKey,
    /// A check named more keys than a store accepts at once.
    #[error("a check names {count} keys; at most {max} are allowed")]
    TooManyKeys {
        /// Keys in the check.
        count: usize,
        /// The most a check may name.
        max: usize,
    },

    // --- store failures (these trigger the failure policy) ---
    /// The store did not answer within the per-check timeout.
    #[error("the store did not answer within {0:?}")]
    Timeout(Duration),
    /// The in-memory store is full and none of its keys has expired.
    #[error("the in-memory store holds its maximum of {0} keys")]
    CapacityExhausted(usize),
    /// The store answered something this crate cannot interpret.
    #[error("the store answered garbage: {0}")]
    InvalidResponse(String),
    /// The store charged an admission but too few replicas acknowledged
    /// its write in time (a store asked for durable admissions): the
    /// admission could be lost in a failover, so it is not reported.
    #[error("{acknowledged} of {required} replicas acknowledged the admission in time")]
    Unreplicated {
        /// Replicas that acknowledged the write.
        acknowledged: u32,
        /// Replicas required.
        required: u32,
    },
    /// The store was not asked: it failed repeatedly and the circuit breaker
    /// is open.
    #[error("the store is failing; the circuit breaker is open")]
    CircuitOpen,
    /// The store's backend failed (connection refused, I/O error, ...).
    #[error("the store failed: {0}")]
    Store(#[source] BoxError),
}

impl Error {
    /// Whether this error comes from the store rather than from the input:
    /// these are the errors a [`FailurePolicy`](crate::FailurePolicy) handles.
    pub fn is_store_failure(&self) -> bool {
        matches!(
            self,
            Self::Timeout(_)
                | Self::CapacityExhausted(_)
                | Self::InvalidResponse(_)
                | Self::Unreplicated { .. }
                | Self::CircuitOpen
                | Self::Store(_)
        )
    }
}

/// Equality compares variants and their plain fields; two `Store` errors are
/// never equal (their sources cannot be compared).
impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Store(_), _) | (_, Self::Store(_)) => false,
            // Every other variant's Display covers all of its fields.
            _ => {
                std::mem::discriminant(self) == std::mem::discriminant(other)
                    && self.to_string() == other.to_string()
            }
        }
    }
}

/// The first 80 characters of `input`, escaped: how an error shows what it
/// was given (bounded, and printable whatever the input held).
pub(crate) fn shown(input: &str) -> String {
    input
        .chars()
        .take(80)
        .collect::<String>()
        .escape_debug()
        .to_string()
}
