//! MemoryStore: atomic multi-key checks, expiry, the key cap, and exactness
//! under concurrency. Time is a FakeClock throughout.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use ratelimit_core::store::{CheckItem, MAX_KEYS_PER_CHECK};
use ratelimit_core::{Error, MemoryStore, Quota, Store, clock::FakeClock};

fn per_sec(limit: u32) -> Quota {
    Quota::per_second(limit).unwrap()
}

fn store() -> (MemoryStore, FakeClock) {
    let clock = FakeClock::at_micros(1_000_000_000);
    (MemoryStore::with_clock(clock.clone()), clock)
}

#[test]
fn decisions_carry_the_numbers() {
    let (store, clock) = store();
    let item = CheckItem::new(b"k", per_sec(4));
    let first = store.check_now(&[item]).unwrap();
    let d = first.decisions[0];
    assert!(first.allowed && d.allowed());
    assert_eq!((d.limit(), d.window()), (4, Duration::from_secs(1)));
    assert_eq!(d.remaining(), 3);
    assert_eq!(d.reset_after(), Duration::from_millis(250));
    for _ in 0..3 {
        assert!(store.check_now(&[item]).unwrap().allowed);
    }
    let denied = store.check_now(&[item]).unwrap();
    let d = denied.decisions[0];
    assert!(!denied.allowed && !d.allowed());
    assert_eq!(d.remaining(), 0);
    assert_eq!(d.retry_after(), Duration::from_millis(250));
    assert_eq!(d.reset_after(), Duration::from_secs(1));
    clock.advance(Duration::from_millis(249));
    assert!(!store.check_now(&[item]).unwrap().allowed);
    clock.advance(Duration::from_millis(1));
    assert!(store.check_now(&[item]).unwrap().allowed);
}

#[test]
fn a_multi_key_check_charges_all_or_nothing() {
    let (store, _clock) = store();
    let wide = CheckItem::new(b"wide", per_sec(10));
    let narrow = CheckItem::new(b"narrow", per_sec(2));
    assert!(store.check_now(&[wide, narrow]).unwrap().allowed);
    assert!(store.check_now(&[wide, narrow]).unwrap().allowed);
    let denied = store.check_now(&[wide, narrow]).unwrap();
    assert!(!denied.allowed);
    assert!(denied.decisions[0].allowed(), "wide alone would admit");
    assert!(!denied.decisions[1].allowed());
    // `wide` was not charged by the denied check: 8 left, not 7.
    assert_eq!(denied.decisions[0].remaining(), 8);
    assert_eq!(store.peek_now(&[wide]).unwrap().decisions[0].remaining(), 8);
}

#[test]
fn shadow_items_never_block_and_are_charged_only_when_they_conform() {
    let (store, _clock) = store();
    let enforced = CheckItem::new(b"enforced", per_sec(10));
    let shadow = CheckItem {
        shadow: true,
        ..CheckItem::new(b"shadow", per_sec(1))
    };
    let first = store.check_now(&[enforced, shadow]).unwrap();
    assert!(first.allowed && first.decisions[1].allowed());
    let second = store.check_now(&[enforced, shadow]).unwrap();
    assert!(second.allowed, "a shadow denial does not block");
    assert!(!second.decisions[1].allowed(), "but it is reported");
    assert_eq!(second.decisions[0].remaining(), 8);
    // A lone shadow item that does not conform is admitted, uncharged.
    let alone = store.check_now(&[shadow]).unwrap();
    assert!(alone.allowed && !alone.decisions[0].allowed());
}

#[test]
fn peek_charges_nothing_and_reset_forgets() {
    let (store, _clock) = store();
    let item = CheckItem::new(b"k", per_sec(1));
    assert!(store.peek_now(&[item]).unwrap().allowed);
    assert!(store.is_empty(), "a peek creates no key");
    assert!(store.check_now(&[item]).unwrap().allowed);
    assert!(!store.peek_now(&[item]).unwrap().allowed);
    store.reset_now(&[b"k"]);
    assert!(store.is_empty());
    assert!(store.check_now(&[item]).unwrap().allowed);
}

#[test]
fn bad_checks_are_refused() {
    let (store, _clock) = store();
    let item = CheckItem::new(b"k", per_sec(2));
    assert_eq!(
        store.check_now(&[item, item]).unwrap_err(),
        Error::DuplicateKey
    );
    assert_eq!(
        store
            .check_now(&[CheckItem { cost: 3, ..item }])
            .unwrap_err(),
        Error::CostExceedsBurst { cost: 3, burst: 2 }
    );
    assert_eq!(
        store
            .check_now(&[CheckItem { cost: 0, ..item }])
            .unwrap_err(),
        Error::ZeroCost
    );
    let keys: Vec<Vec<u8>> = (0..=MAX_KEYS_PER_CHECK).map(|i| vec![i as u8]).collect();
    let many: Vec<_> = keys.iter().map(|k| CheckItem::new(k, per_sec(1))).collect();
    assert!(matches!(
        store.check_now(&many).unwrap_err(),
        Error::TooManyKeys { .. }
    ));
    let empty = store.check_now(&[]).unwrap();
    assert!(empty.allowed && empty.decisions.is_empty());
    assert!(store.is_empty(), "refused checks leave nothing behind");
}

#[test]
fn expired_keys_are_swept_without_user_action() {
    let clock = FakeClock::at_micros(1_000_000);
    let store = MemoryStore::builder()
        .clock(clock.clone())
        .shards(4)
        .sweep_every(16)
        .build();
    let quota = per_sec(10);
    let keys: Vec<String> = (0..1_000).map(|i| format!("old-{i}")).collect();
    for key in &keys {
        store
            .check_now(&[CheckItem::new(key.as_bytes(), quota)])
            .unwrap();
    }
    assert!(store.len() > 900, "most old keys are still live");
    // Every old key is now fully rested: equivalent to absent.
    clock.advance(Duration::from_millis(100));
    // A shard is swept every max(16, keys / 4 shards) new keys, so the four
    // sweeps that reach every old key take about one table's worth (~1,000)
    // of new keys; 2,000 are plenty.
    for i in 0..2_000 {
        let key = format!("new-{i}");
        store
            .check_now(&[CheckItem::new(key.as_bytes(), quota)])
            .unwrap();
    }
    assert_eq!(store.len(), 2_000, "only the new keys remain");
    clock.advance(Duration::from_millis(100));
    assert_eq!(store.sweep_expired(), 2_000);
    assert!(store.is_empty());
}

#[test]
fn the_cap_refuses_new_keys_until_old_ones_expire() {
    let clock = FakeClock::at_micros(1_000_000);
    let store = MemoryStore::builder()
        .clock(clock.clone())
        .max_keys(100)
        .shards(8)
        .sweep_every(1_000_000)
        .build();
    let quota = Quota::per_minute(10).unwrap();
    for i in 0..100 {
        let key = format!("k{i}");
        assert!(
            store
                .check_now(&[CheckItem::new(key.as_bytes(), quota)])
                .unwrap()
                .allowed
        );
    }
    assert_eq!(
        store
            .check_now(&[CheckItem::new(b"one-too-many", quota)])
            .unwrap_err(),
        Error::CapacityExhausted(100)
    );
    let pair = [CheckItem::new(b"k1", quota), CheckItem::new(b"new", quota)];
    assert_eq!(
        store.check_now(&pair).unwrap_err(),
        Error::CapacityExhausted(100)
    );
    // The refused pair released its claim on k1 unchanged.
    assert_eq!(
        store.peek_now(&[pair[0]]).unwrap().decisions[0].remaining(),
        9
    );
    // Keys already held keep working at the cap.
    assert!(
        store
            .check_now(&[CheckItem::new(b"k5", quota)])
            .unwrap()
            .allowed
    );
    assert_eq!(store.len(), 100);

    // Once the old keys have rested, each refused insert reclaims shards, and
    // new keys get in.
    clock.advance(Duration::from_secs(60));
    let mut admitted = 0;
    for i in 0..100 {
        let key = format!("n{i}");
        if store
            .check_now(&[CheckItem::new(key.as_bytes(), quota)])
            .is_ok()
        {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 100);
    assert!(store.len() <= 100);
}

#[test]
fn many_threads_on_one_key_admit_exactly_the_burst() {
    let clock = FakeClock::at_micros(5_000_000);
    let store = MemoryStore::with_clock(clock);
    let quota = Quota::new(1_000, Duration::from_secs(3_600)).unwrap();
    let admitted = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let admitted = Arc::clone(&admitted);
            thread::spawn(move || {
                for _ in 0..500 {
                    if store
                        .check_now(&[CheckItem::new(b"hot", quota)])
                        .unwrap()
                        .allowed
                    {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(admitted.load(Ordering::Relaxed), 1_000);
}

/// Threads mixing single-key and multi-key checks over overlapping keys: for
/// each key, the admitted checks naming it plus what the key has left equal
/// its burst exactly, so multi-key checks neither lose nor double a charge
/// (and the demand is high enough that every key runs dry).
#[test]
fn concurrent_multi_key_checks_stay_exact() {
    let clock = FakeClock::at_micros(5_000_000);
    let store = MemoryStore::with_clock(clock);
    let quota = Quota::new(300, Duration::from_secs(3_600)).unwrap();
    let keys: [&[u8]; 3] = [b"a", b"b", b"c"];
    let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let patterns: [&[usize]; 7] = [&[0], &[0, 1], &[1, 2], &[2, 0], &[0, 1, 2], &[2], &[1]];
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let store = store.clone();
            let counts = Arc::clone(&counts);
            thread::spawn(move || {
                for i in 0..600 {
                    let pattern = patterns[(t + i) % patterns.len()];
                    let items: Vec<_> = pattern
                        .iter()
                        .map(|&k| CheckItem::new(keys[k], quota))
                        .collect();
                    if store.check_now(&items).unwrap().allowed {
                        for &k in pattern {
                            counts[k].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for (k, count) in counts.iter().enumerate() {
        let left = store.peek_now(&[CheckItem::new(keys[k], quota)]).unwrap();
        assert_eq!(
            count.load(Ordering::Relaxed) + left.decisions[0].remaining(),
            300,
            "key {k}"
        );
        assert_eq!(left.decisions[0].remaining(), 0, "key {k} ran dry");
    }
}

#[tokio::test]
async fn works_as_a_dyn_store() {
    let (store, _clock) = store();
    let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
    let item = CheckItem::new(b"k", per_sec(1));
    assert!(dyn_store.check(&[item]).await.unwrap().allowed);
    assert!(!dyn_store.peek(&[item]).await.unwrap().allowed);
    dyn_store.reset(&[b"k"]).await.unwrap();
    assert!(store.is_empty());
}
