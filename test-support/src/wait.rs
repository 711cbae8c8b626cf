//! [`wait_until`]: a bounded wait for a real process to act.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `done` every 5 ms until it returns true and returns how long that
/// took; panics naming `what` if it has not within `within`. For waiting on
/// real processes (a restarted server, a failover, an announcement), never
/// for the limiter's own time, which tests drive with a fake clock.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut done: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}
