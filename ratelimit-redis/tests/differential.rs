//! The Lua script against the Rust GCRA: the same random sequences of checks
//! and peeks (several keys, costs, shadow items, reservations), at the same fake times,
//! on a `MemoryStore` and on a real Redis, must give identical outcomes.
//!
//! Each script call runs in a `MULTI` block together with `PTTL` and
//! `PERSIST` of its keys: that checks each charged key's expiry is exactly
//! its reset time, and stops Redis's real clock from expiring keys that the
//! fake clock still holds (the two clocks are unrelated here).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::cell::Cell;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use ratelimit_core::gcra::{self, Lineage, Stored};
use ratelimit_core::store::{CheckItem, Outcome};
use ratelimit_core::{MemoryStore, Quota, clock::Clock, clock::FakeClock};
use ratelimit_redis::script;
use ratelimit_test_support::RedisServer;
use redis::Value;

#[derive(Debug, Clone)]
struct Op {
    advance_us: u64,
    keys: Vec<usize>,
    costs: Vec<u32>,
    shadow: Vec<bool>,
    /// Units each item reserves beyond its cost (hot-key mode).
    reserve: Vec<u32>,
    /// Which revision of its rule each key is checked under: 0, quota A as
    /// first set; 1, changed to quota B; 2, changed back to A. Switching
    /// revisions converts (from the previous one) or reads as stored (from
    /// an older one, or back to 0), and can leave a key beyond its new
    /// tolerance: both sides must convert and cap alike.
    variant: Vec<usize>,
    charge: bool,
}

fn quota() -> impl Strategy<Value = Quota> {
    (1u32..=50, 1u64..=10_000, proptest::option::of(1u32..=80)).prop_filter_map(
        "valid quota",
        |(limit, window_ms, burst)| {
            let quota = Quota::new(limit, Duration::from_millis(window_ms)).ok()?;
            match burst {
                Some(burst) => quota.with_burst(burst).ok(),
                None => Some(quota),
            }
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    (
        prop_oneof![Just(0u64), 0u64..1_000, 0u64..3_000_000],
        Just(vec![0usize, 1, 2]).prop_shuffle(),
        1usize..=3,
        proptest::collection::vec(1u32..=4, 3),
        proptest::collection::vec(prop::bool::weighted(0.2), 3),
        proptest::collection::vec(prop_oneof![3 => Just(0u32), 1 => 1u32..=8], 3),
        proptest::collection::vec(
            prop_oneof![6 => Just(0usize), 1 => Just(1), 1 => Just(2)],
            3,
        ),
        prop::bool::weighted(0.85),
    )
        .prop_map(
            |(advance_us, order, n, costs, shadow, reserve, variant, charge)| Op {
                advance_us,
                keys: order[..n].to_vec(),
                costs,
                shadow,
                reserve,
                variant,
                charge,
            },
        )
}

#[test]
fn the_script_decides_exactly_like_the_rust_gcra() {
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let connection = runtime
        .block_on(client.get_multiplexed_async_connection())
        .unwrap();
    let _: String = runtime
        .block_on(script::gcra_script().load_async(&mut connection.clone()))
        .unwrap();

    let case = Cell::new(0u32);
    let reservations = Cell::new(0u32);
    let strategy = (
        proptest::collection::vec(quota(), 6),
        1_000_000_000_000_000u64..2_000_000_000_000_000,
        proptest::collection::vec(op(), 1..80),
    );
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    let result = runner.run(&strategy, |(quotas, start, ops)| {
        case.set(case.get() + 1);
        let mut connection = connection.clone();
        let keys: Vec<Vec<u8>> = (0..3)
            .map(|i| format!("diff:{}:{i}", case.get()).into_bytes())
            .collect();
        let clock = FakeClock::at_micros(start);
        let memory = MemoryStore::with_clock(clock.clone());
        for (step, op) in ops.iter().enumerate() {
            clock.advance(Duration::from_micros(op.advance_us));
            let items: Vec<CheckItem<'_>> = op
                .keys
                .iter()
                .map(|&k| {
                    let (a, b) = (quotas[2 * k], quotas[2 * k + 1]);
                    let changed = Lineage::ORIGINAL.succeeded_by(&a, &b);
                    let (quota, lineage) = match op.variant[k] {
                        0 => (a, Lineage::ORIGINAL),
                        1 => (b, changed),
                        _ => (a, changed.succeeded_by(&b, &a)),
                    };
                    CheckItem {
                        key: &keys[k],
                        quota,
                        cost: op.costs[k].min(quota.burst()),
                        shadow: op.shadow[k],
                        reserve: op.reserve[k],
                        lineage,
                    }
                })
                .collect();
            let expected = if op.charge {
                memory.check_now(&items).unwrap()
            } else {
                memory.peek_now(&items).unwrap()
            };
            let (actual, pttls, stored, round_trip) = runtime.block_on(run_on_redis(
                &mut connection,
                &items,
                op.charge,
                clock.now_micros(),
            ));
            prop_assert_eq!(&actual, &expected, "step {}: {:?}", step, op);
            let reserved = expected.decisions.iter().filter(|d| d.reserved() > 0);
            reservations.set(reservations.get() + reserved.count() as u32);
            let now = clock.now_micros();
            for ((item, stored), (decision, pttl)) in items
                .iter()
                .zip(&stored)
                .zip(expected.decisions.iter().zip(pttls))
            {
                let charged = op.charge && expected.allowed && decision.allowed();
                // A key found beyond its cap is written back capped.
                let capped = op.charge
                    && stored.is_some_and(|(tat, revision)| {
                        let stored = Stored { tat, revision };
                        gcra::booked(&item.quota, &item.lineage, stored, now).capped
                    });
                if charged || capped {
                    // PX = ⌈reset_after / 1 ms⌉. PTTL may read 1 ms less, and
                    // less again by the real time Redis spent between the
                    // script and PTTL (inside one EXEC, so at most the round
                    // trip: usually under a millisecond, more on a busy host).
                    let px = decision.reset_after().as_micros().div_ceil(1_000) as i64;
                    let slack = round_trip.as_millis() as i64;
                    prop_assert!(
                        pttl <= px && pttl >= px - 1 - slack,
                        "step {}: key {:?} PTTL {} for PX {} (round trip {:?})",
                        step,
                        String::from_utf8_lossy(item.key),
                        pttl,
                        px,
                        round_trip
                    );
                } else {
                    // Untouched: absent (-2) or persisted by an earlier step (-1).
                    prop_assert!(pttl == -1 || pttl == -2, "step {}: PTTL {}", step, pttl);
                }
            }
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    // The sequences must reach reservations (a key at least half used), or
    // the script's reserving branch went untested.
    assert!(
        reservations.get() >= 50,
        "only {} checks reserved units",
        reservations.get()
    );
}

/// What a counter holds: its TAT and revision (`-`, the TAT and three
/// digits of revision, or a bare TAT for revision 0), `None` when absent.
type Held = Option<(u64, u16)>;

/// Reads the keys' values, runs the script at `now`, then reads and clears
/// the keys' expiry, all in one `MULTI` block; also returns how long the
/// block took in real time.
async fn run_on_redis(
    connection: &mut redis::aio::MultiplexedConnection,
    items: &[CheckItem<'_>],
    charge: bool,
    now: u64,
) -> (Outcome, Vec<i64>, Vec<Held>, Duration) {
    let command = script::check_command(items, charge, Some(now), script::Form::Sha);
    let mut pipe = redis::pipe();
    pipe.atomic();
    for item in items {
        pipe.cmd("GET").arg(item.key);
    }
    pipe.add_command(command);
    for item in items {
        pipe.cmd("PTTL").arg(item.key);
    }
    for item in items {
        pipe.cmd("PERSIST").arg(item.key).ignore();
    }
    let started = Instant::now();
    let values: Vec<Value> = pipe.query_async(connection).await.unwrap();
    let round_trip = started.elapsed();
    let n = items.len();
    let held = values[..n]
        .iter()
        .map(|v| {
            let value: Option<String> = redis::from_redis_value(v.clone()).unwrap();
            value.map(|value| match value.strip_prefix('-') {
                // Charged under a revision other than 0.
                Some(tagged) => {
                    let (tat, revision) = tagged.split_at(tagged.len() - 3);
                    (tat.parse().unwrap(), revision.parse().unwrap())
                }
                None => (value.parse().unwrap(), 0),
            })
        })
        .collect();
    let reply = &values[n];
    let pttls = values[n + 1..]
        .iter()
        .map(|v| redis::from_redis_value::<i64>(v.clone()).unwrap())
        .collect();
    (
        script::decode(items, reply, charge).unwrap(),
        pttls,
        held,
        round_trip,
    )
}
