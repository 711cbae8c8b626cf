//! What the limiter reports through the [`metrics`] facade and [`tracing`].
//!
//! Install a recorder (for Prometheus, `metrics-exporter-prometheus`)
//! **before** building a limiter or a [`MemoryStore`](crate::MemoryStore):
//! the per-rule counters are registered when a rule set is built, so that
//! the check path only adds to a counter it already holds. Rules changed
//! later register again with whatever recorder is installed then.
//!
//! Labels are bounded: rule ids, outcomes, error kinds and states — never a
//! user, service, address or key, so a flood of callers cannot grow the
//! metrics.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | [`CHECKS`] | counter | `rule`, `outcome` ([`Outcome`] as text) |
//! | [`STORE_ERRORS`] | counter | `kind` (`timeout`, `capacity`, `invalid_response`, `circuit_open`, `store`) |
//! | [`CIRCUIT_TRANSITIONS`] | counter | `state` (`open`, `closed`) |
//! | [`RULE_CHANGES`] | counter | `change` (`insert`, `put`, `update`, `remove`, `reload`) |
//! | [`STORE_DURATION`] | histogram, seconds | — |
//! | [`CHECK_DURATION`] | histogram, seconds | — |
//! | [`RULES`] | gauge | — |
//! | [`RULES_VERSION`] | gauge | — |
//! | [`CIRCUIT_STATE`] | gauge (0 closed, 1 open) | — |
//! | [`MEMORY_KEYS`] | gauge | `store` (the store's label, default `memory`) |
//! | [`DENY_CACHE_HITS`] | counter | — |
//! | [`DENY_CACHE_ENTRIES`] | gauge | — |
//!
//! The two histograms time checks that wait for the store (Redis): a check
//! answered in place by the in-memory store takes well under a microsecond,
//! and reading the clock twice would be a large part of its cost. Buckets
//! that resolve such latencies: [`LATENCY_BUCKETS`].
//!
//! Tracing: a `debug` event per decided check (with the caller), a `debug`
//! span around each store call that is awaited, a `warn` event when the
//! store starts failing and when the circuit opens, `info` when it recovers
//! and when rules change.
//!
//! ```
//! use metrics_exporter_prometheus::PrometheusBuilder;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let handle = PrometheusBuilder::new()
//!     .set_buckets(ratelimit_core::telemetry::LATENCY_BUCKETS)?
//!     .install_recorder()?;
//! // ... build the limiter, serve `handle.render()` at /metrics.
//! # let _ = handle;
//! # Ok(())
//! # }
//! ```

use metrics::{Counter, Gauge, counter, gauge};

use crate::health::CircuitState;
use crate::verdict::Source;
use crate::{Error, RuleId};

/// Checks, by rule and outcome.
pub const CHECKS: &str = "ratelimit_checks_total";
/// Store failures, by kind.
pub const STORE_ERRORS: &str = "ratelimit_store_errors_total";
/// Circuit-breaker state changes, by the new state.
pub const CIRCUIT_TRANSITIONS: &str = "ratelimit_circuit_transitions_total";
/// Rule changes made or loaded by this instance, by kind.
pub const RULE_CHANGES: &str = "ratelimit_rule_changes_total";
/// Checks answered by the local deny cache.
pub const DENY_CACHE_HITS: &str = "ratelimit_deny_cache_hits_total";
/// Keys the local deny cache remembers.
pub const DENY_CACHE_ENTRIES: &str = "ratelimit_deny_cache_entries";
/// The store call of an awaited check, in seconds.
pub const STORE_DURATION: &str = "ratelimit_store_duration_seconds";
/// An awaited check from start to verdict, in seconds.
pub const CHECK_DURATION: &str = "ratelimit_check_duration_seconds";
/// Rules in force.
pub const RULES: &str = "ratelimit_rules";
/// The version of the rules in force.
pub const RULES_VERSION: &str = "ratelimit_rules_version";
/// 0 when the circuit is closed (checks reach the store), 1 when open.
pub const CIRCUIT_STATE: &str = "ratelimit_circuit_state";
/// Keys held by an in-memory store.
pub const MEMORY_KEYS: &str = "ratelimit_memory_keys";
/// Route checks naming a rule the instance does not have (answered by the
/// failure policy), by the rule id the route names.
pub const UNKNOWN_RULE_CHECKS: &str = "ratelimit_unknown_rule_checks_total";

/// Histogram buckets (seconds), fine enough at the low end to tell a local
/// Redis round trip from a slow one.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

/// What one rule said about one check, as counted in [`CHECKS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The rule admitted the request.
    Allowed,
    /// The rule denied the request.
    Denied,
    /// A shadow rule would have denied the request (it was not blocked).
    ShadowDenied,
    /// The store failed; the request was admitted (fail open).
    FailedOpen,
    /// The store failed; the request was denied (fail closed).
    FailedClosed,
    /// The store failed; the local fallback limiter decided.
    Fallback,
}

impl Outcome {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::ShadowDenied => "shadow_denied",
            Self::FailedOpen => "failed_open",
            Self::FailedClosed => "failed_closed",
            Self::Fallback => "fallback",
        }
    }

    const ALL: [Self; 6] = [
        Self::Allowed,
        Self::Denied,
        Self::ShadowDenied,
        Self::FailedOpen,
        Self::FailedClosed,
        Self::Fallback,
    ];
}

/// One rule's counters, registered once per rule set so that a check only
/// adds to them.
#[derive(Debug)]
pub(crate) struct RuleCounters([Counter; 6]);

impl RuleCounters {
    pub(crate) fn register(rule: &RuleId) -> Self {
        Self(Outcome::ALL.map(
            |outcome| counter!(CHECKS, "rule" => rule.to_string(), "outcome" => outcome.as_str()),
        ))
    }

    pub(crate) fn count(&self, outcome: Outcome) {
        let index = match outcome {
            Outcome::Allowed => 0,
            Outcome::Denied => 1,
            Outcome::ShadowDenied => 2,
            Outcome::FailedOpen => 3,
            Outcome::FailedClosed => 4,
            Outcome::Fallback => 5,
        };
        if let Some(counter) = self.0.get(index) {
            counter.increment(1);
        }
    }
}

/// What a rule's outcome is, given who decided and what it said.
pub(crate) fn outcome(source: Source, shadow: bool, allowed: bool) -> Outcome {
    match source {
        Source::FailOpen => Outcome::FailedOpen,
        Source::FailClosed => Outcome::FailedClosed,
        Source::Fallback => Outcome::Fallback,
        Source::Store | Source::Batch if allowed => Outcome::Allowed,
        Source::Store if shadow => Outcome::ShadowDenied,
        Source::Store | Source::DenyCache | Source::Batch => Outcome::Denied,
    }
}

/// The [`STORE_ERRORS`] label of a store failure.
pub(crate) fn error_kind(error: &Error) -> &'static str {
    match error {
        Error::Timeout(_) => "timeout",
        Error::CapacityExhausted(_) => "capacity",
        Error::InvalidResponse(_) => "invalid_response",
        Error::Unreplicated { .. } => "unreplicated",
        Error::CircuitOpen => "circuit_open",
        _ => "store",
    }
}

pub(crate) fn store_error(error: &Error) {
    counter!(STORE_ERRORS, "kind" => error_kind(error)).increment(1);
}

pub(crate) fn circuit_changed(state: CircuitState) {
    let (label, value) = match state {
        CircuitState::Closed => ("closed", 0.0),
        CircuitState::Open => ("open", 1.0),
    };
    counter!(CIRCUIT_TRANSITIONS, "state" => label).increment(1);
    gauge!(CIRCUIT_STATE).set(value);
    match state {
        CircuitState::Open => tracing::warn!("rate limit store failing: circuit breaker opened"),
        CircuitState::Closed => tracing::info!("rate limit store answers: circuit breaker closed"),
    }
}

/// Reports a new rule set: the change counter and the two rule gauges.
pub(crate) fn rules_changed(change: &'static str, rules: usize, version: u64) {
    counter!(RULE_CHANGES, "change" => change).increment(1);
    #[allow(clippy::cast_precision_loss)] // exact up to 2^53 rules / versions
    {
        gauge!(RULES).set(rules as f64);
        gauge!(RULES_VERSION).set(version as f64);
    }
    tracing::info!(change, rules, version, "rate limit rules changed");
}

/// Counts a route check that named the unknown rule `id` (ids come from the
/// application's routes, never from callers, so they are safe as labels).
pub(crate) fn unknown_rule(id: &str) {
    counter!(UNKNOWN_RULE_CHECKS, "rule" => id.to_owned()).increment(1);
}

/// A gauge of an in-memory store's key count.
pub(crate) fn memory_keys(label: &'static str) -> Gauge {
    gauge!(MEMORY_KEYS, "store" => label)
}
