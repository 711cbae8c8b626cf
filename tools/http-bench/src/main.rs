//! A hello-world axum app served with no limiter, with only the constant
//! `RateLimit` headers (`static-headers`), with `RateLimitLayer`
//! (in-memory store), or with `tower_governor`'s layer, keyed by peer
//! address, for load tests with `wrk` (see `tools/http-bench/run.sh`).
//!
//! `--regime allowed`: a quota no load test can exhaust.
//! `--regime flood`: one request per hour per address, so after the first
//! nearly every request is denied (the abuse case).
#![allow(clippy::print_stdout)]

use ratelimit_core::Rules;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue};
use axum::routing::get;
use clap::{Parser, ValueEnum};
use governor::middleware::NoOpMiddleware;
use ratelimit_core::http::{Gate, PeerIp};
use ratelimit_core::{DistributedRateLimiter, LimiterConfig, MemoryStore, Quota, Rule, Target};
use ratelimit_tower::RateLimitLayer;
use tower::util::MapResponseLayer;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::PeerIpKeyExtractor;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Limiter {
    None,
    /// No limiter, but the `RateLimit` and `RateLimit-Policy` fields an
    /// admitted request gets, as constants (tower's unboxed `MapResponse`):
    /// the floor for any limiter that sends them.
    StaticHeaders,
    Ratelimit,
    /// `ratelimit` with `admitted_headers(false)`: the fields on denials
    /// only, like for like with `tower_governor`'s default.
    RatelimitDenialsOnly,
    TowerGovernor,
    /// `tower_governor` with its `x-ratelimit-limit` / `-remaining` headers
    /// on admitted responses (`use_headers`): like for like with
    /// `ratelimit`, which always sends its fields.
    TowerGovernorHeaders,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Regime {
    Allowed,
    Flood,
}

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, value_enum)]
    limiter: Limiter,
    #[arg(long, value_enum, default_value_t = Regime::Allowed)]
    regime: Regime,
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?
        .block_on(serve(args))
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let app = Router::new().route("/", get(|| async { "hello" }));
    let app = match args.limiter {
        Limiter::None => app,
        Limiter::StaticHeaders => app.layer(MapResponseLayer::new(
            |mut response: axum::response::Response| {
                const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
                const LIMIT: HeaderName = HeaderName::from_static("ratelimit");
                let headers = response.headers_mut();
                headers.insert(
                    POLICY,
                    HeaderValue::from_static("\"default\";q=1000000;w=1"),
                );
                headers.insert(LIMIT, HeaderValue::from_static("\"default\";r=999999;t=1"));
                response
            },
        )),
        Limiter::Ratelimit | Limiter::RatelimitDenialsOnly => {
            let quota = match args.regime {
                Regime::Allowed => Quota::new(1_000_000, Duration::from_secs(1))?,
                Regime::Flood => Quota::new(1, Duration::from_secs(3_600))?,
            };
            let rule = Rule::new("default", Target::Each, quota)?;
            let limiter = DistributedRateLimiter::new(
                LimiterConfig::new(Arc::new(MemoryStore::new())).rule(rule),
            );
            app.layer(RateLimitLayer::new(
                Gate::new(limiter)
                    .key_extractor(PeerIp::new())
                    .rules(Rules::route(["default"]))
                    .admitted_headers(!matches!(args.limiter, Limiter::RatelimitDenialsOnly)),
            ))
        }
        Limiter::TowerGovernor => {
            let config = governor_builder(args.regime)
                .finish()
                .ok_or("invalid governor config")?;
            app.layer(GovernorLayer::new(config))
        }
        Limiter::TowerGovernorHeaders => {
            let config = governor_builder(args.regime)
                .use_headers()
                .finish()
                .ok_or("invalid governor config")?;
            app.layer(GovernorLayer::new(config))
        }
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

/// tower_governor's builder for a regime: a quota no load test exhausts, or
/// one request per hour.
fn governor_builder(regime: Regime) -> GovernorConfigBuilder<PeerIpKeyExtractor, NoOpMiddleware> {
    let mut builder = GovernorConfigBuilder::default();
    match regime {
        Regime::Allowed => builder.per_nanosecond(1).burst_size(1_000_000),
        Regime::Flood => builder.per_second(3_600).burst_size(1),
    };
    builder
}
