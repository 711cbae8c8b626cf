//! Test harness: real `redis-server` processes on free loopback ports — a
//! standalone [`RedisServer`], a [`RedisCluster`], a primary with a replica
//! under three sentinels ([`RedisSentinels`]) — and [`stores`] that
//! misbehave on purpose.
//!
//! Tests never talk to a Redis they did not start (a Redis may already listen
//! on 6379 on a developer's machine: it is never touched). Each
//! [`RedisServer`] runs in its own temporary directory with persistence off,
//! is killed and reaped when dropped, and prints its log when the test that
//! owns it panics.
//!
//! The binary is `REDIS_SERVER_BIN` if set, else `redis-server` on `PATH`.
//!
//! ```no_run
//! use ratelimit_test_support::RedisServer;
//!
//! let server = RedisServer::start();
//! println!("{}", server.url()); // redis://127.0.0.1:PORT/
//! ```
#![allow(clippy::panic, clippy::expect_used)]

mod cluster;
pub mod http;
mod sentinel;
mod server;
pub mod stores;
mod wait;

pub use cluster::RedisCluster;
pub use sentinel::{MASTER_NAME, RedisSentinels};
pub use server::{RedisServer, free_port};
pub use wait::wait_until;
