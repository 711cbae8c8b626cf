//! A hello-world actix-web app served with no limiter, with only the
//! constant `RateLimit` headers (`static-headers`), with ratelimit's
//! middleware (in-memory store), or with `actix-governor`, keyed by peer
//! address, for load tests with `wrk` (see `tools/http-bench/run.sh`,
//! `FRAMEWORK=actix`).
//!
//! `--regime allowed`: a quota no load test can exhaust.
//! `--regime flood`: one request per hour per address, so after the first
//! nearly every request is denied (the abuse case).
#![allow(clippy::print_stdout)]

use ratelimit_core::Rules;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_governor::{Governor, GovernorConfigBuilder};
use actix_web::middleware::{Condition, DefaultHeaders};
use actix_web::{App, HttpServer, web};
use clap::{Parser, ValueEnum};
use ratelimit_actix::RateLimit;
use ratelimit_core::http::{Gate, PeerIp};
use ratelimit_core::{DistributedRateLimiter, LimiterConfig, MemoryStore, Quota, Rule, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Limiter {
    None,
    /// No limiter, but the two header fields an admitted request gets, as
    /// constants: the floor for any limiter that sends them.
    StaticHeaders,
    Ratelimit,
    /// `ratelimit` with `admitted_headers(false)`: the fields on denials
    /// only, like for like with `actix-governor`'s default.
    RatelimitDenialsOnly,
    ActixGovernor,
    /// `actix-governor` with its `x-ratelimit-limit` / `-remaining` headers
    /// on admitted responses (`use_headers`): like for like with
    /// `ratelimit`, which always sends its fields.
    ActixGovernorHeaders,
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
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let quota = match args.regime {
        Regime::Allowed => Quota::new(1_000_000, Duration::from_secs(1))?,
        Regime::Flood => Quota::new(1, Duration::from_secs(3_600))?,
    };
    let limiter = DistributedRateLimiter::new(
        LimiterConfig::new(Arc::new(MemoryStore::new())).rule(Rule::new(
            "default",
            Target::Each,
            quota,
        )?),
    );
    let mut governor = GovernorConfigBuilder::default();
    match args.regime {
        Regime::Allowed => governor.nanoseconds_per_request(1).burst_size(1_000_000),
        Regime::Flood => governor.seconds_per_request(3_600).burst_size(1),
    };
    let governor_headers = governor
        .use_headers()
        .finish()
        .ok_or("invalid governor config")?;
    let governor = governor.finish().ok_or("invalid governor config")?;
    let which = args.limiter;
    if which == Limiter::ActixGovernorHeaders {
        // Its own app type (with headers on, actix-governor needs the
        // service it wraps to have an `Unpin` future, so it goes innermost);
        // the same three wrappers, two of them disabled.
        let server = HttpServer::new(move || {
            App::new()
                .wrap(Condition::new(true, Governor::new(&governor_headers)))
                .wrap(Condition::new(false, DefaultHeaders::new()))
                .wrap(Condition::new(false, DefaultHeaders::new()))
                .route("/", web::get().to(|| async { "hello" }))
        })
        .workers(1)
        .bind(args.listen)?;
        for addr in server.addrs() {
            println!("listening on http://{addr}");
        }
        server.run().await?;
        return Ok(());
    }
    let server = HttpServer::new(move || {
        let ratelimit = RateLimit::new(
            Gate::new(limiter.clone())
                .key_extractor(PeerIp::new())
                .rules(Rules::route(["default"]))
                .admitted_headers(which != Limiter::RatelimitDenialsOnly),
        );
        let headers = DefaultHeaders::new()
            .add(("ratelimit-policy", "\"default\";q=1000000;w=1"))
            .add(("ratelimit", "\"default\";r=999999;t=1"));
        // `Condition` keeps one app type whichever limiter is on.
        App::new()
            .wrap(Condition::new(which == Limiter::StaticHeaders, headers))
            .wrap(Condition::new(
                matches!(which, Limiter::Ratelimit | Limiter::RatelimitDenialsOnly),
                ratelimit,
            ))
            .wrap(Condition::new(
                which == Limiter::ActixGovernor,
                Governor::new(&governor),
            ))
            .route("/", web::get().to(|| async { "hello" }))
    })
    .workers(1)
    .bind(args.listen)?;
    for addr in server.addrs() {
        println!("listening on http://{addr}");
    }
    server.run().await?;
    Ok(())
}
