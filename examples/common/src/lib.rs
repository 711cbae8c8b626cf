//! What the two demos (`example-axum`, `example-actix`) share, so that either
//! can replace the other in a fleet: the command line, the rules, the limiter
//! on the in-memory store or a shared Redis, and the health report.
//!
//! - `GET /` — rule `default` (every caller, 10 per second);
//! - `POST /login` — rule `login` (every caller, 5 per minute) and `default`;
//! - `GET /healthz` — never limited; whether the store answers;
//! - every limited route also counts toward `global` (all callers together,
//!   1000 per second).
//!
//! Callers: `x-user-id` → that user; else `x-service-id` → that service;
//! else the client address (forwarding headers only from `--trust-proxy`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ipnet::IpNet;
use ratelimit_core::{
    DistributedRateLimiter, Error, KeyPrefix, LimiterConfig, MemoryStore, Quota, Rule, Target,
};
use ratelimit_redis::{RedisRules, RedisStore, RuleWatch};

/// The demos' command line (a contract other tools rely on).
#[derive(Debug, Clone, Parser)]
#[command(about = "A web app rate limited by ratelimit")]
pub struct Args {
    /// Address to serve on.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Use this Redis for counters and shared rules (default: in memory).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Bearer token for the /admin API (the admin API itself is not built
    /// yet; without a token it is off either way).
    #[arg(long, env = "RATELIMIT_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Trust forwarding headers from this proxy network (repeatable).
    #[arg(long = "trust-proxy", value_name = "CIDR")]
    pub trust_proxy: Vec<IpNet>,
}

/// The demo's rules, in force from the start (on Redis: added where their
/// ids are free, so the fleet's changes are kept).
pub fn rules() -> Result<Vec<Rule>, Error> {
    Ok(vec![
        Rule::new("default", Target::Each, Quota::per_second(10)?)?,
        Rule::new("login", Target::Each, Quota::per_minute(5)?)?,
        Rule::new("global", Target::Global, Quota::per_second(1_000)?)?,
    ])
}

/// A limiter with the demo's rules on the in-memory store.
pub fn memory_limiter() -> Result<DistributedRateLimiter, Error> {
    memory_limiter_on(MemoryStore::new())
}

/// A limiter with the demo's rules on `store` (tests pass one with a fake
/// clock).
pub fn memory_limiter_on(store: MemoryStore) -> Result<DistributedRateLimiter, Error> {
    let config = rules()?
        .into_iter()
        .fold(LimiterConfig::new(Arc::new(store)), LimiterConfig::rule);
    Ok(DistributedRateLimiter::new(config))
}

/// A limiter on the Redis at `url`, with rules shared through it; keep the
/// returned watch alive to receive the fleet's rule changes.
pub async fn redis_limiter(url: &str) -> Result<(DistributedRateLimiter, RuleWatch), Error> {
    let store = RedisStore::builder(url)
        .timeout(Duration::from_millis(100))
        .build()
        .await?;
    let shared = Arc::new(RedisRules::connect(url, &KeyPrefix::default()).await?);
    let config = rules()?.into_iter().fold(
        LimiterConfig::new(Arc::new(store))
            .timeout(Duration::from_millis(100))
            .rule_store(shared.clone()),
        LimiterConfig::rule,
    );
    let limiter = DistributedRateLimiter::start(config).await?;
    let watch = shared.watch(limiter.clone());
    Ok((limiter, watch))
}

/// The limiter `args` ask for (and the Redis rule watch to keep alive).
pub async fn limiter_for(
    args: &Args,
) -> Result<(DistributedRateLimiter, Option<RuleWatch>), Error> {
    match &args.redis_url {
        Some(url) => {
            let (limiter, watch) = redis_limiter(url).await?;
            Ok((limiter, Some(watch)))
        }
        None => Ok((memory_limiter()?, None)),
    }
}

/// `GET /healthz`: 200 and `{"store":"ok",...}` when the store answers; 503
/// with the reason and the failure policy in force when it does not.
pub async fn health(limiter: &DistributedRateLimiter) -> (u16, String) {
    let policy = limiter.default_failure_policy();
    match limiter.store_health().await {
        Ok(()) => (
            200,
            format!("{{\"store\":\"ok\",\"failure_policy\":\"{policy}\"}}\n"),
        ),
        Err(error) => (
            503,
            format!(
                "{{\"store\":\"unavailable\",\"reason\":{:?},\"failure_policy\":\"{policy}\"}}\n",
                error.to_string()
            ),
        ),
    }
}
