//! The tower layer and the actix-web middleware answer alike: the same
//! scripted requests, on twin limiters sharing one fake clock, get the same
//! status, the byte-identical rate-limit headers and the same body from
//! both adapters — across multi-rule routes, VIP priorities, costs, shadow
//! rules, legacy headers, denials and a failing store.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ratelimit_core::Rules;
use ratelimit_core::http::Gate;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::test::{self as actix_test, TestRequest};
use actix_web::{App, web};
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use http_body_util::BodyExt;
use ratelimit_actix::RateLimit;
use ratelimit_core::{
    DistributedRateLimiter, LimiterConfig, MemoryStore, Quota, Rule, Store, Target,
    clock::FakeClock, config::FailurePolicy,
};
use ratelimit_test_support::stores::FailingStore;
use ratelimit_tower::RateLimitLayer;
use tower::ServiceExt;

/// Everything compared: status, the rate-limit headers, content type, body.
type Answer = (u16, Vec<(&'static str, Option<String>)>, Vec<u8>);

const COMPARED: [&str; 7] = [
    "ratelimit-policy",
    "ratelimit",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "content-type",
];

/// One scripted request.
#[derive(Debug, Clone, Copy)]
struct Step {
    login: bool,
    peer: &'static str,
    user: Option<&'static str>,
    bulk: bool,
    /// Milliseconds to advance the clock before the request.
    after_ms: u64,
}

async fn rules_on(limiter: &DistributedRateLimiter) {
    let sec = Duration::from_secs(1);
    limiter
        .add_rule("default", Target::Each, 4, sec)
        .await
        .unwrap();
    limiter
        .add_rule("login", Target::Each, 2, Duration::from_secs(60))
        .await
        .unwrap();
    limiter
        .add_rule("global", Target::Global, 12, sec)
        .await
        .unwrap();
    let vip = Rule::new(
        "vip",
        "user:9".parse().unwrap(),
        Quota::per_second(6).unwrap(),
    )
    .unwrap();
    limiter.insert_rule(vip).await.unwrap();
    let trial = Rule::new("trial", Target::Global, Quota::per_second(3).unwrap())
        .unwrap()
        .with_shadow(true);
    limiter.insert_rule(trial).await.unwrap();
}

/// What both apps' routes pass: one gate, read by either adapter.
fn gate(limiter: &DistributedRateLimiter, rules: &[&str]) -> Gate {
    Gate::new(limiter.clone())
        .rules(Rules::route(rules))
        .legacy_headers(true)
        .cost(|request| {
            if request.header("x-bulk").is_some() {
                2
            } else {
                1
            }
        })
}

fn tower_app(limiter: &DistributedRateLimiter) -> Router {
    let layer = |rules: &[&str]| RateLimitLayer::new(gate(limiter, rules));
    Router::new()
        .route(
            "/",
            get(|| async { "hello" }).route_layer(layer(&["default"])),
        )
        .route(
            "/login",
            post(|| async { "welcome" }).route_layer(layer(&["login", "default"])),
        )
}

async fn tower_answer(app: &Router, step: Step) -> Answer {
    let peer: SocketAddr = format!("{}:4000", step.peer).parse().unwrap();
    let mut request = axum::http::Request::builder()
        .method(if step.login { "POST" } else { "GET" })
        .uri(if step.login { "/login" } else { "/" })
        .extension(ConnectInfo(peer));
    if let Some(user) = step.user {
        request = request.header("x-user-id", user);
    }
    if step.bulk {
        request = request.header("x-bulk", "1");
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let headers = COMPARED
        .iter()
        .map(|&name| {
            let value = response.headers().get(name);
            (name, value.map(|v| v.to_str().unwrap().to_owned()))
        })
        .collect();
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

macro_rules! actix_app {
    ($limiter:expr) => {{
        let limiter = $limiter;
        let middleware = |rules: &[&str]| RateLimit::new(gate(&limiter, rules));
        actix_test::init_service(
            App::new()
                .service(
                    web::resource("/")
                        .wrap(middleware(&["default"]))
                        .route(web::get().to(|| async { "hello" })),
                )
                .service(
                    web::resource("/login")
                        .wrap(middleware(&["login", "default"]))
                        .route(web::post().to(|| async { "welcome" })),
                ),
        )
        .await
    }};
}

async fn actix_answer<S, B>(app: &S, step: Step) -> Answer
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let peer: SocketAddr = format!("{}:4000", step.peer).parse().unwrap();
    let mut request = if step.login {
        TestRequest::post().uri("/login")
    } else {
        TestRequest::get().uri("/")
    }
    .peer_addr(peer);
    if let Some(user) = step.user {
        request = request.insert_header(("x-user-id", user));
    }
    if step.bulk {
        request = request.insert_header(("x-bulk", "1"));
    }
    let response = actix_test::call_service(app, request.to_request()).await;
    let headers = COMPARED
        .iter()
        .map(|&name| {
            let value = response.headers().get(name);
            (name, value.map(|v| v.to_str().unwrap().to_owned()))
        })
        .collect();
    let status = response.status().as_u16();
    let body = actix_test::read_body(response).await.to_vec();
    (status, headers, body)
}

/// A deterministic script mixing routes, callers, costs and pauses.
fn script() -> Vec<Step> {
    let peers = ["10.0.0.1", "10.0.0.2", "203.0.113.9"];
    let users = [None, Some("7"), Some("9"), None, Some("9")];
    (0..90_u64)
        .map(|i| Step {
            login: i % 4 == 3,
            peer: peers[(i % 3) as usize],
            user: users[(i % 5) as usize],
            bulk: i % 7 == 0,
            after_ms: if i % 11 == 0 { 450 } else { 13 },
        })
        .collect()
}

#[actix_web::test]
async fn both_adapters_answer_every_request_byte_for_byte_alike() {
    let clock = FakeClock::at_micros(5_000_000_000);
    let twin = || {
        DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::with_clock(
            clock.clone(),
        ))))
    };
    let (for_tower, for_actix) = (twin(), twin());
    rules_on(&for_tower).await;
    rules_on(&for_actix).await;
    let tower = tower_app(&for_tower);
    let actix = actix_app!(for_actix);

    let (mut admitted, mut denied) = (0, 0);
    for (i, step) in script().into_iter().enumerate() {
        clock.advance(Duration::from_millis(step.after_ms));
        let a = tower_answer(&tower, step).await;
        let b = actix_answer(&actix, step).await;
        assert_eq!(a, b, "step {i}: {step:?}");
        match a.0 {
            200 => admitted += 1,
            429 => denied += 1,
            other => panic!("step {i}: status {other}"),
        }
    }
    // The script exercised both outcomes, on both routes.
    assert!(
        admitted > 20 && denied > 20,
        "{admitted} admitted, {denied} denied"
    );
}

#[actix_web::test]
async fn both_adapters_fail_closed_alike() {
    for policy in [FailurePolicy::FailClosed, FailurePolicy::FailOpen] {
        let failing = || {
            let store: Arc<dyn Store> = Arc::new(FailingStore);
            DistributedRateLimiter::new(
                LimiterConfig::new(store)
                    .failure_policy(policy)
                    .fail_closed_retry_after(Duration::from_secs(3)),
            )
        };
        let (for_tower, for_actix) = (failing(), failing());
        rules_on(&for_tower).await;
        rules_on(&for_actix).await;
        let tower = tower_app(&for_tower);
        let actix = actix_app!(for_actix);
        for step in script().into_iter().take(6) {
            let a = tower_answer(&tower, step).await;
            let b = actix_answer(&actix, step).await;
            assert_eq!(a, b, "{policy:?} {step:?}");
            let expected = if policy == FailurePolicy::FailClosed {
                503
            } else {
                200
            };
            assert_eq!(a.0, expected);
        }
    }
}
