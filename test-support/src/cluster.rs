//! [`RedisCluster`]: a real Redis Cluster of `redis-server` processes.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::RedisServer;

/// How long the cluster may take to agree on its slots (or on a failover).
const SETTLE_WITHIN: Duration = Duration::from_secs(30);

/// A Redis Cluster on loopback: `masters` primaries, each with `replicas`
/// replicas, created with `redis-cli --cluster create`. Nodes time out after
/// one second, so a killed master is replaced within a few seconds.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    masters: usize,
}

impl RedisCluster {
    /// Starts the nodes, creates the cluster and waits until every node
    /// reports `cluster_state:ok`.
    pub fn start(masters: usize, replicas: usize) -> Self {
        let count = masters * (1 + replicas);
        let nodes: Vec<RedisServer> = (0..count)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    // A replica may always take over, however stale.
                    "--cluster-replica-validity-factor",
                    "0",
                    // Live nodes keep serving their slots while one is down.
                    "--cluster-require-full-coverage",
                    "no",
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let output =
            Command::new(std::env::var_os("REDIS_CLI_BIN").unwrap_or_else(|| "redis-cli".into()))
                .args(["--cluster", "create"])
                .args(&addresses)
                .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
                .output()
                .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = Self { nodes, masters };
        cluster.wait_until_ok(|_| true);
        cluster.wait_for_replicas();
        cluster
    }

    /// The nodes' URLs, to discover the cluster from.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// How many primaries the cluster was created with.
    pub fn masters(&self) -> usize {
        self.masters
    }

    /// Node `i` (the first `masters` nodes start as primaries).
    pub fn node(&mut self, i: usize) -> &mut RedisServer {
        &mut self.nodes[i]
    }

    /// All nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Waits (bounded) until every node that `alive` selects reports
    /// `cluster_state:ok` and every slot is served.
    pub fn wait_until_ok(&self, alive: impl Fn(usize) -> bool) {
        let deadline = Instant::now() + SETTLE_WITHIN;
        loop {
            let ok = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| alive(*i))
                .all(|(_, node)| {
                    let info = node.cli(&["CLUSTER", "INFO"]);
                    info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not settle within {SETTLE_WITHIN:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (bounded) until every replica has synced with its primary, so
    /// that a failover finds a replica ready to take over.
    fn wait_for_replicas(&self) {
        let deadline = Instant::now() + SETTLE_WITHIN;
        loop {
            let synced = self.nodes.iter().all(|node| {
                let info = node.cli(&["INFO", "replication"]);
                info.contains("role:master") || info.contains("master_link_status:up")
            });
            if synced {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the replicas did not sync within {SETTLE_WITHIN:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `CLUSTER NODES` on the first node `alive` selects.
    pub fn describe(&self, alive: impl Fn(usize) -> bool) -> String {
        self.nodes
            .iter()
            .enumerate()
            .find(|(i, _)| alive(*i))
            .map(|(_, node)| node.cli(&["CLUSTER", "NODES"]))
            .unwrap_or_default()
    }
}
