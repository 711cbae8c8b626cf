//! The MemoryStore over many keys, against `governor`'s keyed (dashmap)
//! limiter, in one run: each store in its own child process (so one's freed
//! memory cannot hide the other's), same keys, same operations.
//!
//! For each store: insert `KEYS` distinct keys (one check each, one thread)
//! and read the resident memory it took per key, map and allocator overhead
//! included; then checks of live keys from 1, 2 and 8 threads; then every key
//! expires and the store sweeps them (ours: `sweep_expired`; governor:
//! `retain_recent`), and new keys arrive while the expired ones are still
//! there (ours sweeps one shard every 1,024 new keys as it goes).
//!
//! Both run on fake clocks (ours `FakeClock`, governor's
//! `FakeRelativeClock`), so expiry is instant and reading the time costs the
//! same small amount for both.
//!
//! `cargo bench -p ratelimit-core --bench memory_profile`
//! (`PROFILE_KEYS=1000000` for a quicker run.)
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::ptr_arg
)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use governor::clock::FakeRelativeClock;
use governor::state::keyed::DashMapStateStore;
use ratelimit_core::store::CheckItem;
use ratelimit_core::{MemoryStore, Quota, clock::FakeClock};

const THREADS: [usize; 3] = [1, 2, 8];
/// Checks per thread-count run, in all.
const LOOKUPS: usize = 4_000_000;

/// Writes key `i` (`rl:{u=user-00001234}:default`, as the limiter builds
/// them) into `buf`.
fn key(buf: &mut Vec<u8>, i: usize) {
    buf.clear();
    buf.extend_from_slice(b"rl:{u=user-");
    let digits = itoa::Buffer::new().format(i).len();
    buf.extend(std::iter::repeat_n(b'0', 8usize.saturating_sub(digits)));
    buf.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
    buf.extend_from_slice(b"}:default");
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The operations both stores offer.
trait Profiled: Send + Sync + 'static {
    /// `&Vec<u8>`: governor's keyed API takes `&K` (and clones it only when
    /// it inserts), so neither store copies the key on a lookup.
    fn check(&self, key: &Vec<u8>) -> bool;
    fn expire_all(&self);
    fn sweep(&self) -> usize;
    fn len(&self) -> usize;
}

struct Ours {
    store: MemoryStore,
    clock: FakeClock,
    quota: Quota,
}

impl Profiled for Ours {
    fn check(&self, key: &Vec<u8>) -> bool {
        self.store
            .check_now(&[CheckItem::new(key, self.quota)])
            .unwrap()
            .allowed
    }
    fn expire_all(&self) {
        self.clock.advance(Duration::from_secs(10));
    }
    fn sweep(&self) -> usize {
        self.store.sweep_expired()
    }
    fn len(&self) -> usize {
        self.store.len()
    }
}

type GovernorLimiter = governor::RateLimiter<
    Vec<u8>,
    DashMapStateStore<Vec<u8>>,
    FakeRelativeClock,
    governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
>;

struct Theirs {
    limiter: GovernorLimiter,
    clock: FakeRelativeClock,
}

impl Profiled for Theirs {
    fn check(&self, key: &Vec<u8>) -> bool {
        self.limiter.check_key(key).is_ok()
    }
    fn expire_all(&self) {
        self.clock.advance(Duration::from_secs(10));
    }
    fn sweep(&self) -> usize {
        let before = self.limiter.len();
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        before - self.limiter.len()
    }
    fn len(&self) -> usize {
        self.limiter.len()
    }
}

fn profile(name: &str, store: &Arc<dyn Profiled>, keys: usize) {
    let mut buf = Vec::with_capacity(64);
    let before = resident_bytes();
    let started = Instant::now();
    for i in 0..keys {
        key(&mut buf, i);
        black_box(store.check(&buf));
    }
    let insert_ns = started.elapsed().as_nanos() as f64 / keys as f64;
    let bytes = resident_bytes().saturating_sub(before) as f64 / keys as f64;
    println!(
        "{name:<9} insert {keys} keys        {insert_ns:>8.0} ns/check   {bytes:>6.1} bytes/key"
    );

    for threads in THREADS {
        let per_thread = LOOKUPS / threads;
        let started = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let store = Arc::clone(store);
                thread::spawn(move || {
                    let mut buf = Vec::with_capacity(64);
                    let mut x = 0x9E37_79B9_7F4A_7C15_u64 ^ (t as u64 + 1);
                    for _ in 0..per_thread {
                        // xorshift: a spread of live keys
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        key(&mut buf, (x % keys as u64) as usize);
                        black_box(store.check(&buf));
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        let elapsed = started.elapsed();
        let total = per_thread * threads;
        println!(
            "{name:<9} live keys, {threads} thread(s)      {:>8.0} ns/check   {:>6.2} M checks/s",
            elapsed.as_nanos() as f64 / total as f64,
            total as f64 / elapsed.as_secs_f64() / 1e6,
        );
    }

    // Every key expires; new keys arrive before any explicit sweep.
    store.expire_all();
    let fresh = keys / 10;
    let started = Instant::now();
    for i in keys..keys + fresh {
        key(&mut buf, i);
        black_box(store.check(&buf));
    }
    println!(
        "{name:<9} {fresh} new keys among expired ones {:>8.0} ns/check   {} keys held after",
        started.elapsed().as_nanos() as f64 / fresh as f64,
        store.len(),
    );
    store.expire_all();
    let started = Instant::now();
    let removed = store.sweep();
    println!(
        "{name:<9} full sweep                {:>8.0} ms          removed {removed}, {} left, resident {:.0} MB",
        started.elapsed().as_secs_f64() * 1e3,
        store.len(),
        resident_bytes() as f64 / 1e6,
    );
}

fn main() {
    let keys: usize = std::env::var("PROFILE_KEYS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(10_000_000);
    match std::env::var("PROFILE_STORE").as_deref() {
        Ok("ours") => {
            let clock = FakeClock::at_micros(1_000_000_000);
            let store = MemoryStore::builder()
                .clock(clock.clone())
                .max_keys(keys * 2)
                .build();
            let quota = Quota::new(1_000_000, Duration::from_secs(1))
                .unwrap()
                .with_burst(u32::MAX)
                .unwrap();
            let ours: Arc<dyn Profiled> = Arc::new(Ours {
                store,
                clock,
                quota,
            });
            profile("ratelimit", &ours, keys);
        }
        Ok("governor") => {
            let clock = FakeRelativeClock::default();
            let quota = governor::Quota::with_period(Duration::from_micros(1))
                .unwrap()
                .allow_burst(NonZeroU32::MAX);
            let limiter = governor::RateLimiter::dashmap_with_clock(quota, clock.clone());
            let theirs: Arc<dyn Profiled> = Arc::new(Theirs { limiter, clock });
            profile("governor", &theirs, keys);
        }
        _ => {
            // `cargo bench` passes `--bench`: run each store in a child.
            let exe = std::env::current_exe().unwrap();
            for store in ["ours", "governor"] {
                let status = Command::new(&exe)
                    .env("PROFILE_STORE", store)
                    .env("PROFILE_KEYS", keys.to_string())
                    .status()
                    .unwrap();
                assert!(status.success(), "{store} profile failed");
            }
        }
    }
}
