//! The layer's own cost per request: a ready inner service called bare and
//! through `RateLimitLayer` (in-memory store, peer-address keys, the
//! `RateLimit` headers), admitted (with and without the headers on admitted
//! responses) and denied. No sockets, no runtime: the in-memory store
//! answers on the first poll.
//!
//! `cargo bench -p ratelimit-tower --bench layer`
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::semicolon_if_nothing_returned
)]

use ratelimit_core::Rules;
use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use criterion::{Criterion, criterion_group, criterion_main};
use futures::FutureExt;
use http::{Request, Response};
use ratelimit_core::http::{Gate, PeerIp};
use ratelimit_core::{DistributedRateLimiter, LimiterConfig, MemoryStore, Quota, Rule, Target};
use ratelimit_tower::RateLimitLayer;
use tower::{Layer, Service, service_fn};

fn request() -> Request<Body> {
    let mut request = Request::get("/").body(Body::empty()).unwrap();
    let peer: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

fn limiter(limit: u32, window: Duration) -> DistributedRateLimiter {
    let quota = Quota::new(limit, window).unwrap();
    let rule = Rule::new("default", Target::Each, quota).unwrap();
    DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())).rule(rule))
}

fn gate(limiter: DistributedRateLimiter) -> Gate {
    Gate::new(limiter)
        .key_extractor(PeerIp::new())
        .rules(Rules::route(["default"]))
}

fn layer(c: &mut Criterion) {
    let hello = service_fn(|_: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from("hello")))
    });
    let mut group = c.benchmark_group("layer, in-memory store");

    let mut bare = hello;
    group.bench_function("no layer", |b| {
        b.iter(|| black_box(bare.call(request()).now_or_never().unwrap().unwrap()))
    });

    let mut allowed =
        RateLimitLayer::new(gate(limiter(3_000_000_000, Duration::from_secs(3_600)))).layer(hello);
    group.bench_function("allowed", |b| {
        b.iter(|| black_box(allowed.call(request()).now_or_never().unwrap().unwrap()))
    });

    let mut quiet = RateLimitLayer::new(
        gate(limiter(3_000_000_000, Duration::from_secs(3_600))).admitted_headers(false),
    )
    .layer(hello);
    group.bench_function("allowed, headers on denials only", |b| {
        b.iter(|| black_box(quiet.call(request()).now_or_never().unwrap().unwrap()))
    });

    let mut denied = RateLimitLayer::new(gate(limiter(1, Duration::from_secs(3_600)))).layer(hello);
    group.bench_function("denied", |b| {
        b.iter(|| black_box(denied.call(request()).now_or_never().unwrap().unwrap()))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = layer
}
criterion_main!(benches);
