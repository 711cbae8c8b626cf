//! The layer on an axum Router, driven with `oneshot` (no socket) and a
//! fake clock: allow/deny sequences, exact headers, per-route rules, key
//! extraction (spoofed forwarding headers, trusted proxies, IPv6 grouping,
//! IPv4-mapped addresses), costs, shadow rules and failure policies.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ratelimit_core::Rules;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use ratelimit_core::Identity;
use ratelimit_core::http::{
    Gate, HeaderId, IdKind, KeyError, PeerIp, RequestView, UserServiceOrIp,
};
use ratelimit_core::{
    DistributedRateLimiter, LimiterConfig, MemoryStore, Quota, Rule, Target, clock::FakeClock,
    config::FailurePolicy,
};
use ratelimit_test_support::stores::FailingStore;
use ratelimit_tower::RateLimitLayer;
use tower::ServiceExt;

const SEC: Duration = Duration::from_secs(1);

async fn limiter(clock: &FakeClock) -> DistributedRateLimiter {
    let store = MemoryStore::with_clock(clock.clone());
    let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(store)));
    limiter
        .add_rule("default", Target::Each, 3, SEC)
        .await
        .unwrap();
    limiter
}

fn app(layer: RateLimitLayer) -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer)
}

fn request(peer: &str) -> Request<Body> {
    let addr: SocketAddr = format!("{peer}:5000")
        .parse()
        .or_else(|_| format!("[{peer}]:5000").parse())
        .unwrap();
    Request::builder()
        .uri("/")
        .extension(ConnectInfo(addr))
        .body(Body::empty())
        .unwrap()
}

fn with_header(mut request: Request<Body>, name: &'static str, value: &str) -> Request<Body> {
    request.headers_mut().append(name, value.parse().unwrap());
    request
}

fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

async fn statuses(app: &Router, make: impl Fn() -> Request<Body>, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(app.clone().oneshot(make()).await.unwrap().status().as_u16());
    }
    out
}

#[tokio::test]
async fn admits_then_denies_with_exact_headers() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let app = app(RateLimitLayer::new(limiter(&clock).await));

    let first = app.clone().oneshot(request("10.0.0.1")).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        header(&first, "ratelimit-policy"),
        Some("\"default\";q=3;w=1")
    );
    assert_eq!(header(&first, "ratelimit"), Some("\"default\";r=2;t=1"));
    assert_eq!(header(&first, "retry-after"), None);
    assert_eq!(
        first.into_body().collect().await.unwrap().to_bytes(),
        "hello"
    );

    assert_eq!(statuses(&app, || request("10.0.0.1"), 2).await, [200, 200]);
    let denied = app.clone().oneshot(request("10.0.0.1")).await.unwrap();
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&denied, "ratelimit"), Some("\"default\";r=0;t=1"));
    assert_eq!(header(&denied, "retry-after"), Some("1"));
    assert_eq!(
        header(&denied, "content-type"),
        Some("text/plain; charset=utf-8")
    );

    // Another address has its own counter; time restores the first.
    assert_eq!(statuses(&app, || request("10.0.0.2"), 1).await, [200]);
    clock.advance(Duration::from_millis(334));
    assert_eq!(statuses(&app, || request("10.0.0.1"), 2).await, [200, 429]);
}

#[tokio::test]
async fn per_route_rules_are_checked_together() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let limiter = limiter(&clock).await;
    limiter
        .add_rule("login", Target::Each, 1, Duration::from_secs(60))
        .await
        .unwrap();
    let app = Router::new().route("/", get(|| async { "hello" })).route(
        "/login",
        get(|| async { "welcome" }).route_layer(RateLimitLayer::new(
            Gate::new(limiter.clone()).rules(Rules::named(["login", "default"])),
        )),
    );
    let login = || {
        let mut r = request("10.0.0.1");
        *r.uri_mut() = "/login".parse().unwrap();
        r
    };
    let ok = app.clone().oneshot(login()).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        header(&ok, "ratelimit-policy"),
        Some("\"login\";q=1;w=60, \"default\";q=3;w=1")
    );
    let denied = app.clone().oneshot(login()).await.unwrap();
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&denied, "retry-after"), Some("60"));
    // The unlimited route is untouched, and `default` was charged once only.
    assert_eq!(statuses(&app, || request("10.0.0.1"), 1).await, [200]);
    let v = limiter
        .peek(
            &ratelimit_core::Identity::ip("10.0.0.1".parse().unwrap()),
            &Rules::one("default"),
        )
        .await
        .unwrap();
    assert_eq!(v.decisions()[0].decision.remaining(), 2);
}

#[tokio::test]
async fn identity_headers_come_before_the_address() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let app = app(RateLimitLayer::new(limiter(&clock).await));
    let user = || with_header(request("10.0.0.1"), "x-user-id", "42");
    let service = || with_header(request("10.0.0.1"), "x-service-id", "42");
    assert_eq!(statuses(&app, user, 4).await, [200, 200, 200, 429]);
    // user 42 and service 42 never share a counter, nor does the address.
    assert_eq!(statuses(&app, service, 4).await, [200, 200, 200, 429]);
    assert_eq!(statuses(&app, || request("10.0.0.1"), 1).await, [200]);
}

#[tokio::test]
async fn forwarding_headers_count_only_from_trusted_proxies() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let limiter = limiter(&clock).await;
    // No trusted proxy: a spoofed X-Forwarded-For changes nothing.
    let open = app(RateLimitLayer::new(
        Gate::new(limiter.clone()).key_extractor(PeerIp::new()),
    ));
    let spoofed = |n: usize| {
        move || {
            with_header(
                request("198.51.100.7"),
                "x-forwarded-for",
                &format!("203.0.113.{n}"),
            )
        }
    };
    for n in 0..3 {
        assert_eq!(statuses(&open, spoofed(n), 1).await, [200]);
    }
    assert_eq!(
        statuses(&open, spoofed(9), 1).await,
        [429],
        "rotation does not escape"
    );

    // Behind a trusted proxy, the client is the first untrusted hop.
    let proxied = app(RateLimitLayer::new(
        Gate::new(limiter.clone())
            .key_extractor(PeerIp::new().trust_proxy("10.1.0.0/16".parse().unwrap())),
    ));
    let via_proxy = |client: &'static str| {
        move || {
            with_header(
                request("10.1.2.3"),
                "x-forwarded-for",
                &format!("{client}, 10.1.9.9"),
            )
        }
    };
    assert_eq!(
        statuses(&proxied, via_proxy("203.0.113.50"), 4).await,
        [200, 200, 200, 429]
    );
    assert_eq!(
        statuses(&proxied, via_proxy("203.0.113.51"), 1).await,
        [200]
    );
    // RFC 7239 Forwarded works too.
    let forwarded = || {
        with_header(
            request("10.1.2.3"),
            "forwarded",
            "for=\"[2001:db8::1]:443\"",
        )
    };
    assert_eq!(statuses(&proxied, forwarded, 1).await, [200]);
}

#[tokio::test]
async fn ipv6_hosts_are_grouped_and_mapped_addresses_normalised() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let app = app(RateLimitLayer::new(
        Gate::new(limiter(&clock).await).key_extractor(PeerIp::new()),
    ));
    // Four addresses in one /64: one counter.
    let hosts = [
        "2001:db8:1:2::1",
        "2001:db8:1:2::2",
        "2001:db8:1:2:ffff::3",
        "2001:db8:1:2::4",
    ];
    let mut got = Vec::new();
    for host in hosts {
        got.extend(statuses(&app, || request(host), 1).await);
    }
    assert_eq!(got, [200, 200, 200, 429]);
    assert_eq!(
        statuses(&app, || request("2001:db8:1:3::1"), 1).await,
        [200]
    );

    // ::ffff:192.0.2.1 is 192.0.2.1.
    assert_eq!(
        statuses(&app, || request("192.0.2.1"), 3).await,
        [200, 200, 200]
    );
    assert_eq!(
        statuses(&app, || request("::ffff:192.0.2.1"), 1).await,
        [429]
    );
}

#[tokio::test]
async fn a_missing_identity_gets_a_clear_response() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let limiter = limiter(&clock).await;
    // No ConnectInfo: the server is misconfigured, say so.
    let app1 = app(RateLimitLayer::new(limiter.clone()));
    let bare = || Request::builder().uri("/").body(Body::empty()).unwrap();
    let response = app1.clone().oneshot(bare()).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("into_make_service_with_connect_info"));

    // A required header, with a custom answer.
    let app2 = app(RateLimitLayer::new(
        Gate::new(limiter).key_extractor(HeaderId::new("x-api-key", IdKind::Service)),
    )
    .on_missing_key(|_| {
        let mut r = Response::new("api key required".to_owned());
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r
    }));
    assert_eq!(statuses(&app2, bare, 1).await, [401]);
    let keyed = || with_header(bare(), "x-api-key", "k1");
    assert_eq!(statuses(&app2, keyed, 1).await, [200]);
}

#[tokio::test]
async fn a_closure_extracts_from_the_request_head() {
    let clock = FakeClock::at_micros(1_000_000_000);
    // Keyed by tenant header; GETs without one share a key, other methods
    // without one are refused.
    fn by_tenant(request: &dyn RequestView) -> Result<Identity<'_>, KeyError> {
        match request.header("x-tenant") {
            Some(value) => Ok(Identity::key(value)),
            None if request.method() == "GET" && request.path() == "/" => {
                Ok(Identity::key(b"anonymous"))
            }
            None => Err(KeyError::new(403, "tenant required")),
        }
    }
    let app = Router::new()
        .route("/", get(|| async { "hello" }).post(|| async { "posted" }))
        .layer(RateLimitLayer::new(
            Gate::new(limiter(&clock).await).key_extractor(by_tenant),
        ));
    let tenant = |t: &str| with_header(request("10.0.0.1"), "x-tenant", t);
    assert_eq!(
        statuses(&app, || tenant("a"), 4).await,
        [200, 200, 200, 429]
    );
    assert_eq!(statuses(&app, || tenant("b"), 1).await, [200]);
    // Different peers, one anonymous key.
    assert_eq!(statuses(&app, || request("10.0.0.2"), 2).await, [200, 200]);
    assert_eq!(statuses(&app, || request("10.0.0.3"), 2).await, [200, 429]);
    let post = || {
        let mut request = request("10.0.0.4");
        *request.method_mut() = Method::POST;
        request
    };
    assert_eq!(statuses(&app, post, 1).await, [403]);
}

#[tokio::test]
async fn costs_shadow_rules_legacy_headers_and_custom_denials() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let limiter = limiter(&clock).await;
    limiter
        .insert_rule(
            Rule::new("trial", Target::Each, Quota::per_second(1).unwrap())
                .unwrap()
                .with_shadow(true),
        )
        .await
        .unwrap();
    let app = app(RateLimitLayer::new(
        Gate::new(limiter)
            .key_extractor(UserServiceOrIp::default())
            .cost(|request| {
                if request.header("x-bulk").is_some() {
                    2
                } else {
                    1
                }
            })
            .legacy_headers(true),
    )
    .on_denied(|verdict| {
        let mut r = Response::new(format!("slow down: {:?}", verdict.retry_after()));
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        r
    }));
    let bulk = || with_header(request("10.0.0.1"), "x-bulk", "1");
    let first = app.clone().oneshot(bulk()).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    // The shadow rule (1/s) would deny a cost of 2, but never blocks and is
    // not advertised.
    assert_eq!(header(&first, "ratelimit"), Some("\"default\";r=1;t=1"));
    assert_eq!(header(&first, "x-ratelimit-limit"), Some("3"));
    assert_eq!(header(&first, "x-ratelimit-remaining"), Some("1"));
    assert_eq!(header(&first, "x-ratelimit-reset"), Some("1"));
    let denied = app.clone().oneshot(bulk()).await.unwrap();
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&denied, "retry-after"), Some("1"));
    let body = denied.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "slow down: 333.334ms");
    assert_eq!(statuses(&app, || request("10.0.0.1"), 2).await, [200, 429]);
}

#[tokio::test]
async fn headers_on_denials_only() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let app = app(RateLimitLayer::new(
        Gate::new(limiter(&clock).await)
            .legacy_headers(true)
            .admitted_headers(false),
    ));
    for _ in 0..3 {
        let admitted = app.clone().oneshot(request("10.0.0.1")).await.unwrap();
        assert_eq!(admitted.status(), StatusCode::OK);
        let names: Vec<_> = admitted.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(
            names,
            ["content-type", "content-length"],
            "an admitted response is untouched"
        );
    }
    let denied = app.clone().oneshot(request("10.0.0.1")).await.unwrap();
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&denied, "ratelimit-policy"),
        Some("\"default\";q=3;w=1")
    );
    assert_eq!(header(&denied, "ratelimit"), Some("\"default\";r=0;t=1"));
    assert_eq!(header(&denied, "retry-after"), Some("1"));
    assert_eq!(header(&denied, "x-ratelimit-remaining"), Some("0"));
}

#[tokio::test]
async fn a_failing_store_gets_the_failure_policy() {
    for (policy, status, retry) in [
        (FailurePolicy::FailOpen, 200, None),
        (FailurePolicy::FailClosed, 503, Some("2")),
    ] {
        let limiter = DistributedRateLimiter::new(
            LimiterConfig::new(Arc::new(FailingStore))
                .failure_policy(policy)
                .fail_closed_retry_after(Duration::from_secs(2)),
        );
        limiter
            .add_rule("default", Target::Each, 3, SEC)
            .await
            .unwrap();
        let response = app(RateLimitLayer::new(limiter))
            .oneshot(request("10.0.0.1"))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{policy}");
        assert_eq!(header(&response, "retry-after"), retry, "{policy}");
        // The rule is listed as the store would list it, rested: the
        // limiter knows nothing of its state while the store is down.
        assert_eq!(
            header(&response, "ratelimit"),
            Some("\"default\";r=3;t=0"),
            "{policy}"
        );
    }
}

/// A route naming a rule the instance does not have (say its rule store
/// lost its rules) is answered by the failure policy, never a 500: fail
/// open admits, fail closed refuses (503, as for a store that is down) with
/// the policy's wait.
#[tokio::test]
async fn a_route_with_an_unknown_rule_is_answered_by_the_failure_policy() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let open = app(RateLimitLayer::new(
        Gate::new(limiter(&clock).await).rules(Rules::named(["no-such-rule"])),
    ));
    assert_eq!(
        statuses(&open, || request("10.0.0.1"), 3).await,
        [200, 200, 200]
    );

    let store = Arc::new(MemoryStore::with_clock(clock.clone()));
    let closed = DistributedRateLimiter::new(
        LimiterConfig::new(store)
            .failure_policy(FailurePolicy::FailClosed)
            .fail_closed_retry_after(Duration::from_secs(7)),
    );
    let closed = app(RateLimitLayer::new(
        Gate::new(closed).rules(Rules::named(["no-such-rule"])),
    ));
    let response = closed.oneshot(request("10.0.0.1")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "retry-after"), Some("7"));
}
