//! [`CircuitBreaker`]: stop paying the store's timeout while it is down.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// When the limiter stops asking a failing store, and when it tries again.
///
/// After `failure_threshold` consecutive store failures (errors or timeouts)
/// the circuit *opens*: checks skip the store and go straight to the failure
/// policy, instead of each waiting out the timeout. After `open_for`, the
/// next check is let through as a probe (the others keep skipping); if it
/// succeeds the circuit closes, if it fails the circuit stays open for
/// another `open_for`.
///
/// ```
/// use std::time::Duration;
/// use ratelimit_core::config::CircuitBreakerConfig;
///
/// let config = CircuitBreakerConfig::new(3, Duration::from_millis(250));
/// assert_eq!(config.failure_threshold(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakerConfig {
    failure_threshold: u32,
    open_for: Duration,
}

impl CircuitBreakerConfig {
    /// Opens after `failure_threshold` consecutive failures (at least 1) and
    /// probes again after `open_for`.
    pub fn new(failure_threshold: u32, open_for: Duration) -> Self {
        Self {
            failure_threshold: failure_threshold.max(1),
            open_for,
        }
    }

    /// Consecutive failures that open the circuit.
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }

    /// How long the circuit stays open before a probe.
    pub fn open_for(&self) -> Duration {
        self.open_for
    }
}

impl Default for CircuitBreakerConfig {
    /// 5 consecutive failures; probe after 500 ms (so checks reach a store
    /// that is back within about half a second).
    fn default() -> Self {
        Self::new(5, Duration::from_millis(500))
    }
}

/// The circuit's state, as reported by
/// [`Health::circuit`](crate::health::Health::circuit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Checks go to the store.
    Closed,
    /// Checks skip the store until a probe succeeds.
    Open,
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;

/// What a check may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    /// Call the store.
    Call,
    /// Call the store as the one probe of an open circuit.
    Probe,
    /// Skip the store: the circuit is open.
    Skip,
}

/// The breaker's shared state: atomics only, so the closed (healthy) path
/// costs one load.
#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    config: Option<CircuitBreakerConfig>,
    state: AtomicU8,
    failures: AtomicU32,
    /// When the circuit last opened, in ns since `origin`.
    opened_at: AtomicU64,
    /// When the current probe started (ns since `origin`), 0 for none. A
    /// probe whose future was dropped is superseded after `open_for`.
    probe_started: AtomicU64,
    origin: Instant,
}

impl CircuitBreaker {
    pub(crate) fn new(config: Option<CircuitBreakerConfig>) -> Self {
        Self {
            config,
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            opened_at: AtomicU64::new(0),
            probe_started: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    pub(crate) fn state(&self) -> CircuitState {
        if self.state.load(Ordering::Acquire) == OPEN {
            CircuitState::Open
        } else {
            CircuitState::Closed
        }
    }

    /// Nanoseconds since creation, plus one: 0 is kept for "never".
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    pub(crate) fn permit(&self) -> Permit {
        let Some(config) = self.config else {
            return Permit::Call;
        };
        if self.state.load(Ordering::Acquire) == CLOSED {
            return Permit::Call;
        }
        let open_for = u64::try_from(config.open_for.as_nanos()).unwrap_or(u64::MAX);
        let now = self.now();
        let opened_at = self.opened_at.load(Ordering::Acquire);
        if now.saturating_sub(opened_at) < open_for {
            return Permit::Skip;
        }
        // One probe at a time.
        let probe = self.probe_started.load(Ordering::Acquire);
        if (probe == 0 || now.saturating_sub(probe) >= open_for)
            && self
                .probe_started
                .compare_exchange(probe, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            Permit::Probe
        } else {
            Permit::Skip
        }
    }

    /// Records a store answer. Returns the new state if it changed.
    pub(crate) fn on_success(&self, permit: Permit) -> Option<CircuitState> {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if permit == Permit::Probe {
            self.probe_started.store(0, Ordering::Release);
            if self.state.swap(CLOSED, Ordering::AcqRel) == OPEN {
                return Some(CircuitState::Closed);
            }
        }
        None
    }

    /// Records a store failure. Returns the new state if it changed.
    pub(crate) fn on_failure(&self, permit: Permit) -> Option<CircuitState> {
        let config = self.config?;
        if permit == Permit::Probe {
            // Still down: stay open for another `open_for`.
            self.opened_at.store(self.now(), Ordering::Release);
            self.probe_started.store(0, Ordering::Release);
            return None;
        }
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if failures >= config.failure_threshold && self.state.load(Ordering::Acquire) == CLOSED {
            // Set the time first, so no check sees the circuit open with a
            // stale opening time.
            self.opened_at.store(self.now(), Ordering::Release);
            if self
                .state
                .compare_exchange(CLOSED, OPEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Some(CircuitState::Open);
            }
        }
        None
    }
}
