//! [`RedisSentinels`]: a primary, a replica and three Redis Sentinels, real
//! processes on free loopback ports, for failover tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::RedisServer;
use crate::server::{free_port, ping, run_cli};

/// The name the sentinels monitor the primary under.
pub const MASTER_NAME: &str = "ratelimit-primary";

/// How long a process may take to answer `PING` after it starts.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A primary, a replica of it (`--replicaof`), and three sentinels that
/// monitor the primary as [`MASTER_NAME`] with a quorum of two, a
/// `down-after-milliseconds` of 500 and a `failover-timeout` of 2 s, so a
/// killed primary is replaced within seconds. Every process is killed and
/// reaped when this is dropped; each sentinel has its own writable config
/// file in its own temporary directory.
#[derive(Debug)]
pub struct RedisSentinels {
    /// The servers: the first started as the primary, the second as its
    /// replica. After a failover, ask [`master`](Self::master) which is
    /// which.
    pub servers: Vec<RedisServer>,
    sentinels: Vec<Sentinel>,
}

impl RedisSentinels {
    /// Starts the primary, the replica (waiting until it is in sync) and
    /// the sentinels (waiting until every one of them knows the replica and
    /// the other two sentinels).
    pub fn start() -> Self {
        let primary = RedisServer::start();
        let port = primary.port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
        let synced = wait(|| {
            replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up")
        });
        assert!(synced, "the replica did not sync\n{}", replica.log());
        let sentinels = (0..3).map(|_| Sentinel::start(primary.port())).collect();
        let group = Self {
            servers: vec![primary, replica],
            sentinels,
        };
        let ready = wait(|| {
            group.sentinels.iter().all(|sentinel| {
                let state = sentinel.cli(&["SENTINEL", "MASTER", MASTER_NAME]);
                field(&state, "num-slaves") == Some("1")
                    && field(&state, "num-other-sentinels") == Some("2")
            })
        });
        assert!(ready, "the sentinels did not settle\n{}", group.logs());
        group
    }

    /// The sentinels' addresses (`HOST:PORT`).
    pub fn addresses(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect()
    }

    /// Where the first sentinel that answers says the primary is.
    pub fn master(&self) -> Option<SocketAddr> {
        self.sentinels.iter().find_map(|sentinel| {
            let reply = sentinel.cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]);
            let mut lines = reply.lines();
            let (host, port) = (lines.next()?, lines.next()?);
            format!("{host}:{port}").parse().ok()
        })
    }

    /// Asks the sentinels for a failover without a failure (`SENTINEL
    /// FAILOVER`): the replica is promoted and the primary, still running,
    /// becomes its replica. Returns the first sentinel's reply (`OK`).
    pub fn failover(&self) -> String {
        self.sentinels
            .first()
            .map(|s| s.cli(&["SENTINEL", "FAILOVER", MASTER_NAME]))
            .unwrap_or_default()
    }

    /// The sentinels' logs, for a failing test's message.
    pub fn logs(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("--- sentinel {} ---\n{}", s.port, s.log()))
            .collect()
    }
}

/// One `redis-server --sentinel` process.
#[derive(Debug)]
struct Sentinel {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl Sentinel {
    fn start(primary: u16) -> Self {
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let dir = tempfile::Builder::new()
                .prefix("ratelimit-sentinel-")
                .tempdir()
                .expect("create a temporary directory for a sentinel");
            let config = format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {dir}/sentinel.log\n\
                 sentinel resolve-hostnames no\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 500\n\
                 sentinel failover-timeout {MASTER_NAME} 2000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir = dir.path().display(),
            );
            let path = dir.path().join("sentinel.conf");
            std::fs::write(&path, config).expect("write a sentinel's config");
            let child = Command::new(RedisServer::binary())
                .arg(&path)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let mut sentinel = Self {
                child: child.ok(),
                port,
                dir,
            };
            if sentinel.child.is_some() && wait(|| ping(port)) {
                return sentinel;
            }
            last_error = sentinel.log();
            sentinel.kill();
        }
        panic!("redis-server --sentinel did not start: {last_error}");
    }

    fn cli(&self, args: &[&str]) -> String {
        run_cli(self.port, args)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("sentinel.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- sentinel log (port {}) ---\n{}", self.port, self.log());
        }
        self.kill();
    }
}

/// The value of `name` in a `redis-cli` reply of alternating names and
/// values, one a line.
fn field<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    let mut lines = reply.lines();
    while let Some(line) = lines.next() {
        let value = lines.next()?;
        if line == name {
            return Some(value);
        }
    }
    None
}

/// Polls `done` every 50 ms for at most [`READY_WITHIN`].
fn wait(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + READY_WITHIN;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
