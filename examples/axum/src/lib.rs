//! The main demo's app, as a library so tests can drive it.
//!
//! - `GET /` — rule `default` (every caller, 10 per second);
//! - `POST /login` — rule `login` (every caller, 5 per minute) and `default`;
//! - `GET /healthz` — never limited; whether the store answers;
//! - every limited route also counts toward `global` (all callers together,
//!   1000 per second).
//!
//! Callers: `x-user-id` → that user; else `x-service-id` → that service;
//! else the client address (forwarding headers only from `--trust-proxy`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use ipnet::IpNet;
use ratelimit_core::{
    DistributedRateLimiter, Error, KeyPrefix, LimiterConfig, MemoryStore, Quota, Rule, Target,
};
use ratelimit_redis::{RedisRules, RedisStore, RuleWatch};
use ratelimit_tower::RateLimitLayer;
use ratelimit_tower::key::{PeerIp, UserServiceOrIp};

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

/// The app. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn app(limiter: DistributedRateLimiter, trusted_proxies: &[IpNet]) -> Router {
    let peer = trusted_proxies
        .iter()
        .fold(PeerIp::new(), |peer, net| peer.trust_proxy(*net));
    let layer = RateLimitLayer::new(limiter.clone()).key_extractor(UserServiceOrIp::new(peer));
    Router::new()
        .route(
            "/",
            get(|| async { "hello\n" }).route_layer(layer.clone().route_rules(["default"])),
        )
        .route(
            "/login",
            post(|| async { "welcome\n" }).route_layer(layer.route_rules(["login", "default"])),
        )
        .route("/healthz", get(healthz))
        .with_state(limiter)
}

/// 200 when the store answers; 503 with the reason and the failure policy in
/// force when it does not.
async fn healthz(State(limiter): State<DistributedRateLimiter>) -> (StatusCode, String) {
    let policy = limiter.default_failure_policy();
    match limiter.store_health().await {
        Ok(()) => (
            StatusCode::OK,
            format!("{{\"store\":\"ok\",\"failure_policy\":\"{policy}\"}}\n"),
        ),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{{\"store\":\"unavailable\",\"reason\":{:?},\"failure_policy\":\"{policy}\"}}\n",
                error.to_string()
            ),
        ),
    }
}
