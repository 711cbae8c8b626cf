//! What the two demos (`example-axum`, `example-actix`) share, so that either
//! can replace the other in a fleet: the command line, the rules, the limiter
//! on the in-memory store or a shared Redis, and the health report.
//!
//! - `GET /` — rule `default` (every caller, 10 per second);
//! - `POST /login` — rule `login` (every client address, 5 per minute,
//!   whatever user a request claims) and `default`;
//! - `GET /healthz` — never limited; whether the store answers, and which
//!   Redis node the instance uses;
//! - `GET /metrics` — never limited; Prometheus text;
//! - `/admin/...` — the management API (`ratelimit_core::admin`), only with
//!   `--admin-token`;
//! - every limited route also counts toward `global` (all callers together,
//!   1000 per second).
//!
//! Callers: `x-user-id` → that user; else `x-service-id` → that service;
//! else the client address (forwarding headers only from `--trust-proxy`).
//! The client address is also a facet of every caller, counted by `login`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clap::Parser;
use ipnet::IpNet;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use ratelimit_core::admin::AdminApi;
use ratelimit_core::config::{DenyCache, FailurePolicy};
use ratelimit_core::http::{Gate, PeerIp, UserServiceOrIp};
use ratelimit_core::identity::Facet;
use ratelimit_core::{
    DistributedRateLimiter, Error, LimiterConfig, MemoryStore, Quota, Rule, Rules, Target,
    telemetry,
};
use ratelimit_redis::{RedisFleet, Sentinels};

/// The demos' command line (a contract other tools rely on).
#[derive(Debug, Clone, Parser)]
#[command(about = "A web app rate limited by ratelimit")]
#[command(group(clap::ArgGroup::new("redis").args(["redis_url", "sentinels"])))]
pub struct Args {
    /// Address to serve on.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Use this Redis for counters and shared rules (default: in memory).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Use Redis through this sentinel instead of `--redis-url`
    /// (repeatable; the variable is comma-separated).
    #[arg(
        long = "sentinel",
        value_name = "HOST:PORT",
        env = "REDIS_SENTINELS",
        value_delimiter = ',',
        conflicts_with = "redis_url",
        requires = "sentinel_master"
    )]
    pub sentinels: Vec<String>,
    /// The name the sentinels know the primary by.
    #[arg(
        long,
        value_name = "NAME",
        env = "REDIS_SENTINEL_MASTER",
        requires = "sentinels"
    )]
    pub sentinel_master: Option<String>,
    /// An admission counts only once this many Redis replicas acknowledged
    /// it (0: off); an unacknowledged one is answered by the failure
    /// policy.
    #[arg(
        long,
        value_name = "N",
        env = "RATELIMIT_DURABLE_REPLICAS",
        default_value_t = 0,
        requires = "redis"
    )]
    pub durable_replicas: u32,
    /// Bearer token for the /admin API (without one the API is off).
    #[arg(long, env = "RATELIMIT_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Trust forwarding headers from this proxy network (repeatable).
    #[arg(long = "trust-proxy", value_name = "CIDR")]
    pub trust_proxy: Vec<IpNet>,
    /// What answers while the store does not: admit (`open`), refuse
    /// (`closed`), or limit locally (`fallback`: on Redis, each instance
    /// its share of the fleet's limit).
    #[arg(
        long,
        env = "RATELIMIT_FAILURE_POLICY",
        value_enum,
        default_value = "open"
    )]
    pub failure_policy: Policy,
}

impl Args {
    /// Which store the arguments ask for: `redis`, `redis-sentinel` or
    /// `in-memory`.
    pub fn store_kind(&self) -> &'static str {
        match (&self.redis_url, &self.sentinel_master) {
            (Some(_), _) => "redis",
            (None, Some(_)) => "redis-sentinel",
            (None, None) => "in-memory",
        }
    }
}

/// `--failure-policy`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    /// Admit ([`FailurePolicy::FailOpen`]).
    Open,
    /// Refuse ([`FailurePolicy::FailClosed`]).
    Closed,
    /// Limit locally ([`FailurePolicy::LocalFallback`]).
    Fallback,
}

impl From<Policy> for FailurePolicy {
    fn from(policy: Policy) -> Self {
        match policy {
            Policy::Open => Self::FailOpen,
            Policy::Closed => Self::FailClosed,
            Policy::Fallback => Self::LocalFallback,
        }
    }
}

/// What the app serves besides its routes: who may forward client
/// addresses, and the management API when a token is configured.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Proxies whose forwarding headers are trusted.
    pub trusted_proxies: Vec<IpNet>,
    /// The management API, mounted at `/admin` when present.
    pub admin: Option<AdminApi>,
}

impl Settings {
    /// The settings `args` ask for, over `limiter`. Fails on an unusable
    /// admin token (empty, or not sendable in a header).
    pub fn from_args(args: &Args, limiter: &DistributedRateLimiter) -> Result<Self, Error> {
        let admin = args
            .admin_token
            .as_deref()
            .map(|token| AdminApi::new(limiter.clone(), token))
            .transpose()?;
        Ok(Self {
            trusted_proxies: args.trust_proxy.clone(),
            admin,
        })
    }
}

impl Settings {
    /// What a route rate limited by `rules` passes, as both demos check it:
    /// callers by `x-user-id`, `x-service-id`, then the client address
    /// (forwarded only by the trusted proxies), the address a facet of every
    /// caller.
    pub fn gate(&self, limiter: &DistributedRateLimiter, rules: &[&str]) -> Gate {
        let peer = self
            .trusted_proxies
            .iter()
            .fold(PeerIp::new(), |peer, net| peer.trust_proxy(*net));
        Gate::new(limiter.clone())
            .key_extractor(UserServiceOrIp::new(peer))
            .rules(Rules::route(rules))
    }
}

/// The process's Prometheus recorder, installed on first use (before any
/// limiter is built, so the limiters' counters register with it).
///
/// # Panics
///
/// If another metrics recorder was installed first.
#[allow(clippy::expect_used)] // two recorders in one demo process is a bug
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets(telemetry::LATENCY_BUCKETS)
            .and_then(PrometheusBuilder::install_recorder)
            .expect("the demo installs the only metrics recorder")
    })
}

/// Drains the recorder's histogram samples every 5 seconds, so memory stays
/// flat between scrapes. Call from inside a Tokio runtime.
pub fn spawn_metrics_upkeep() {
    let handle = metrics();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            handle.run_upkeep();
        }
    });
}

/// The content type of the Prometheus text format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: the Prometheus text.
pub fn render_metrics() -> String {
    metrics().render()
}

/// The demo's rules, in force from the start (on Redis: added where their
/// ids are free, so the fleet's changes are kept).
pub fn rules() -> Result<Vec<Rule>, Error> {
    Ok(vec![
        Rule::new("default", Target::Each, Quota::per_second(10)?)?,
        Rule::new("login", Target::Every(Facet::Ip), Quota::per_minute(5)?)?,
        Rule::new("global", Target::Global, Quota::per_second(1_000)?)?,
    ])
}

/// What answers when the store does not (and for a route's rule that the
/// rule store lost), unless `--failure-policy` says otherwise: the request
/// is admitted.
pub const FAILURE_POLICY: FailurePolicy = FailurePolicy::FailOpen;

/// A limiter with the demo's rules on the in-memory store.
pub fn memory_limiter() -> Result<DistributedRateLimiter, Error> {
    metrics();
    memory_limiter_on(MemoryStore::new())
}

/// A limiter with the demo's rules on `store` (tests pass one with a fake
/// clock).
pub fn memory_limiter_on(store: MemoryStore) -> Result<DistributedRateLimiter, Error> {
    memory_limiter_with(store, FAILURE_POLICY)
}

/// [`memory_limiter_on`] with `policy` for when the store does not answer.
pub fn memory_limiter_with(
    store: MemoryStore,
    policy: FailurePolicy,
) -> Result<DistributedRateLimiter, Error> {
    metrics();
    let config = rules()?
        .into_iter()
        .fold(LimiterConfig::new(Arc::new(store)), LimiterConfig::rule)
        .failure_policy(policy);
    Ok(DistributedRateLimiter::new(config))
}

/// How many denied keys a Redis-backed demo remembers locally (under
/// 100 bytes each: about 8 MB when full).
pub const DENY_CACHE_KEYS: usize = 100_000;

/// A limiter on the Redis at `url`, with rules shared through it (the
/// demo's rules seed an empty fleet) and a local deny cache. Starts even
/// while Redis is down: the failure policy answers until it comes up.
pub async fn redis_limiter(url: &str) -> Result<DistributedRateLimiter, Error> {
    redis_limiter_with(url, FAILURE_POLICY).await
}

/// [`redis_limiter`] with `policy` for when Redis does not answer
/// (`LocalFallback`: each instance its share of the fleet's limit).
pub async fn redis_limiter_with(
    url: &str,
    policy: FailurePolicy,
) -> Result<DistributedRateLimiter, Error> {
    fleet_limiter(RedisFleet::new(url), policy).await
}

/// A limiter on `fleet` with the demo's rules, deny cache and `policy`.
pub async fn fleet_limiter(
    fleet: RedisFleet,
    policy: FailurePolicy,
) -> Result<DistributedRateLimiter, Error> {
    metrics();
    fleet
        .timeout(Duration::from_millis(100))
        .rules(rules()?)
        // A flood of denied requests is answered here, not by Redis.
        .configure(move |config| {
            config
                .deny_cache(DenyCache::new(DENY_CACHE_KEYS))
                .failure_policy(policy)
        })
        .start()
        .await
}

/// The limiter `args` ask for. Logs one line saying the store, the rules
/// in force and the failure policy. A failure to start names the store.
pub async fn limiter_for(args: &Args) -> Result<DistributedRateLimiter, StartError> {
    let policy = FailurePolicy::from(args.failure_policy);
    let redis_error = |error| StartError {
        store: "Redis".to_owned(),
        error,
    };
    let store = args.store_kind();
    let limiter = match (&args.redis_url, &args.sentinel_master) {
        (Some(url), _) => fleet_limiter(
            RedisFleet::new(url).durable_replicas(args.durable_replicas),
            policy,
        )
        .await
        .map_err(redis_error)?,
        (None, Some(master)) => fleet_limiter(
            RedisFleet::sentinel(sentinels(&args.sentinels, master))
                .durable_replicas(args.durable_replicas),
            policy,
        )
        .await
        .map_err(redis_error)?,
        (None, None) => {
            memory_limiter_with(MemoryStore::new(), policy).map_err(|error| StartError {
                store: "the in-memory store".to_owned(),
                error,
            })?
        }
    };
    let rules = limiter.rules();
    let ids: Vec<&str> = rules.iter().map(|rule| rule.id().as_str()).collect();
    let health = limiter.health().await;
    tracing::info!(
        store,
        node = health.node.as_deref().unwrap_or("-"),
        rules = %ids.join(","),
        rules_version = rules.version(),
        rule_sync = health.rules.as_str(),
        failure_policy = %policy,
        durable_replicas = args.durable_replicas,
        "rate limiter ready"
    );
    Ok(limiter)
}

/// `--sentinel` values as sentinel URLs: `HOST:PORT` becomes
/// `redis://HOST:PORT`; a value with a scheme (`rediss://`, or one with a
/// password) is kept as given.
pub fn sentinels(addresses: &[String], master: &str) -> Sentinels {
    let urls: Vec<String> = addresses
        .iter()
        .map(|address| {
            if address.contains("://") {
                address.clone()
            } else {
                format!("redis://{address}")
            }
        })
        .collect();
    Sentinels::new(&urls, master)
}

/// Why a demo could not start its limiter: which store, and what failed.
#[derive(Debug)]
pub struct StartError {
    /// The store, by kind and address.
    pub store: String,
    /// What failed.
    pub error: Error,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot start the rate limiter on {}: {}",
            self.store, self.error
        )
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Installs the demos' log output: human-readable lines on standard error,
/// filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second call (tests that start several demos in one process) keeps
    // the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// What a demo's `main` fails with: printed as its message and the chain
/// of causes (not as a debug dump).
pub struct Fatal(Box<dyn std::error::Error>);

impl<E: Into<Box<dyn std::error::Error>>> From<E> for Fatal {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

impl std::fmt::Debug for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `GET /healthz`: 200 and `{"store":"ok","node":...}` when the store
/// answers (`node`: the Redis server in use, `null` in memory); 503
/// with the reason and the failure policy in force when it does not, or
/// when the shared rules are not in step with the store (`"rules"`:
/// `local` without a rule store, `synced`, `pending` before the store first
/// answered, `restoring` while putting back rules the store lost).
pub async fn health(limiter: &DistributedRateLimiter) -> (u16, String) {
    let health = limiter.health().await;
    let policy = health.failure_policy;
    let rules = health.rules.as_str();
    let node = json_string(health.node.as_deref());
    match &health.store {
        Ok(()) => (
            if health.is_healthy() { 200 } else { 503 },
            format!(
                "{{\"store\":\"ok\",\"node\":{node},\"rules\":\"{rules}\",\"failure_policy\":\"{policy}\"}}\n"
            ),
        ),
        Err(error) => (
            503,
            format!(
                "{{\"store\":\"unavailable\",\"reason\":{},\"node\":{node},\"rules\":\"{rules}\",\"failure_policy\":\"{policy}\"}}\n",
                json_string(Some(&error.to_string()))
            ),
        ),
    }
}

/// `text` as a JSON string (`null` for none).
fn json_string(text: Option<&str>) -> String {
    text.map_or_else(
        || "null".to_owned(),
        |text| serde_json::Value::from(text).to_string(),
    )
}
