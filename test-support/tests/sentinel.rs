//! The Sentinel harness itself: three sentinels hand the primary's role to
//! the replica when the primary is killed, within seconds.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use ratelimit_test_support::RedisSentinels;

#[test]
fn a_killed_primary_is_replaced_by_its_replica() {
    let mut group = RedisSentinels::start();
    let primary = group.servers[0].port();
    let replica = group.servers[1].port();
    assert_eq!(group.master().map(|a| a.port()), Some(primary));
    assert_eq!(group.addresses().len(), 3);

    group.servers[0].kill();
    let killed = Instant::now();
    while group.master().map(|a| a.port()) != Some(replica) {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no failover\n{}",
            group.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let switched = killed.elapsed();
    // The promoted replica takes writes.
    let replica_server = &group.servers[1];
    assert!(
        replica_server
            .cli(&["INFO", "replication"])
            .contains("role:master")
    );
    assert_eq!(replica_server.cli(&["SET", "after", "failover"]), "OK");
    eprintln!("sentinels switched the primary {switched:?} after the kill");
}
