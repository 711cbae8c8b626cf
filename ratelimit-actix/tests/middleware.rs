//! The middleware on an actix-web App, driven with `actix_web::test` (no
//! socket) and a fake clock: allow/deny sequences, exact headers, per-resource
//! rules, key extraction (spoofed forwarding headers, trusted proxies, IPv6
//! grouping, IPv4-mapped addresses), costs, shadow rules and failure policies.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ratelimit_core::Rules;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{App, HttpResponse, web};
use ratelimit_actix::RateLimit;
use ratelimit_core::http::{Gate, HeaderId, IdKind, PeerIp, UserServiceOrIp};
use ratelimit_core::{
    DistributedRateLimiter, Identity, LimiterConfig, MemoryStore, Quota, Rule, Target,
    clock::FakeClock, config::FailurePolicy,
};
use ratelimit_test_support::stores::{FailingStore, HangingStore};

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

fn peer(ip: &str) -> SocketAddr {
    format!("{ip}:5000")
        .parse()
        .or_else(|_| format!("[{ip}]:5000").parse())
        .unwrap()
}

fn get(ip: &str) -> TestRequest {
    TestRequest::get().uri("/").peer_addr(peer(ip))
}

fn header<'a, B>(response: &'a ServiceResponse<B>, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// An app with "/" limited by `middleware`, plus "/free" unlimited.
macro_rules! app {
    ($middleware:expr) => {
        test::init_service(
            App::new()
                .route("/free", web::get().to(|| async { "free" }))
                .service(
                    web::resource("/")
                        .wrap($middleware)
                        .route(web::get().to(|| async { "hello" })),
                ),
        )
        .await
    };
}

async fn statuses<S, B>(app: &S, make: impl Fn() -> TestRequest, n: usize) -> Vec<u16>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    let mut out = Vec::new();
    for _ in 0..n {
        let response = test::call_service(app, make().to_request()).await;
        out.push(response.status().as_u16());
    }
    out
}

#[actix_web::test]
async fn admits_then_denies_with_exact_headers() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let app = app!(RateLimit::new(limiter(&clock).await));

    let first = test::call_service(&app, get("10.0.0.1").to_request()).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        header(&first, "ratelimit-policy"),
        Some("\"default\";q=3;w=1")
    );
    assert_eq!(header(&first, "ratelimit"), Some("\"default\";r=2;t=1"));
    assert_eq!(header(&first, "retry-after"), None);
    assert_eq!(test::read_body(first).await, "hello");

    assert_eq!(statuses(&app, || get("10.0.0.1"), 2).await, [200, 200]);
    let denied = test::call_service(&app, get("10.0.0.1").to_request()).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&denied, "ratelimit"), Some("\"default\";r=0;t=1"));
    assert_eq!(header(&denied, "retry-after"), Some("1"));
    assert_eq!(
        header(&denied, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(test::read_body(denied).await, "Too Many Requests\n");

    // Another address has its own counter; time restores the first; the
    // unlimited route is untouched.
    assert_eq!(statuses(&app, || get("10.0.0.2"), 1).await, [200]);
    let free = || TestRequest::get().uri("/free").peer_addr(peer("10.0.0.1"));
    assert_eq!(statuses(&app, free, 5).await, [200; 5]);
    clock.advance(Duration::from_millis(334));
    assert_eq!(statuses(&app, || get("10.0.0.1"), 2).await, [200, 429]);
}

#[actix_web::test]
async fn per_resource_rules_are_checked_together() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let limiter = limiter(&clock).await;
    limiter
        .add_rule("login", Target::Each, 1, Duration::from_secs(60))
        .await
        .unwrap();
    let app = test::init_service(
        App::new()
            .route("/", web::get().to(|| async { "hello" }))
            .service(
                web::resource("/login")
                    .wrap(RateLimit::new(
                        Gate::new(limiter.clone()).rules(Rules::named(["login", "default"])),
                    ))
                    .route(web::post().to(|| async { "welcome" })),
            ),
    )
    .await;
    let login = || {
        TestRequest::post()
            .uri("/login")
            .peer_addr(peer("10.0.0.1"))
    };
    let ok = test::call_service(&app, login().to_request()).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        header(&ok, "ratelimit-policy"),
        Some("\"login\";q=1;w=60, \"default\";q=3;w=1")
    );
    let denied = test::call_service(&app, login().to_request()).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&denied, "retry-after"), Some("60"));
    // `default` was charged once only: the denied check charged nothing.
    let v = limiter
        .peek(
            &Identity::ip("10.0.0.1".parse().unwrap()),
            &Rules::one("default"),
        )
        .await
        .unwrap();
    assert_eq!(v.decisions()[0].decision.remaining(), 2);
}

#[actix_web::test]
async fn identity_headers_come_before_the_address() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let app = app!(RateLimit::new(limiter(&clock).await));
    let user = || get("10.0.0.1").insert_header(("x-user-id", "42"));
    let service = || get("10.0.0.1").insert_header(("x-service-id", "42"));
    assert_eq!(statuses(&app, user, 4).await, [200, 200, 200, 429]);
    assert_eq!(statuses(&app, service, 4).await, [200, 200, 200, 429]);
    assert_eq!(statuses(&app, || get("10.0.0.1"), 1).await, [200]);
}

#[actix_web::test]
async fn forwarding_headers_count_only_from_trusted_proxies() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let limiter = limiter(&clock).await;
    let open = app!(RateLimit::new(
        Gate::new(limiter.clone()).key_extractor(PeerIp::new())
    ));
    let spoofed = |n: usize| {
        move || get("198.51.100.7").insert_header(("x-forwarded-for", format!("203.0.113.{n}")))
    };
    for n in 0..3 {
        assert_eq!(statuses(&open, spoofed(n), 1).await, [200]);
    }
    assert_eq!(
        statuses(&open, spoofed(9), 1).await,
        [429],
        "rotation does not escape"
    );

    let proxied = app!(RateLimit::new(
        Gate::new(limiter.clone())
            .key_extractor(PeerIp::new().trust_proxy("10.1.0.0/16".parse().unwrap()))
    ));
    let via_proxy = |client: &'static str| {
        move || get("10.1.2.3").insert_header(("x-forwarded-for", format!("{client}, 10.1.9.9")))
    };
    assert_eq!(
        statuses(&proxied, via_proxy("203.0.113.50"), 4).await,
        [200, 200, 200, 429]
    );
    assert_eq!(
        statuses(&proxied, via_proxy("203.0.113.51"), 1).await,
        [200]
    );
    let forwarded = || get("10.1.2.3").insert_header(("forwarded", "for=\"[2001:db8::1]:443\""));
    assert_eq!(statuses(&proxied, forwarded, 1).await, [200]);
}

#[actix_web::test]
async fn ipv6_hosts_are_grouped_and_mapped_addresses_normalised() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let app = app!(RateLimit::new(
        Gate::new(limiter(&clock).await).key_extractor(PeerIp::new())
    ));
    let mut got = Vec::new();
    for host in [
        "2001:db8:1:2::1",
        "2001:db8:1:2::2",
        "2001:db8:1:2:ffff::3",
        "2001:db8:1:2::4",
    ] {
        got.extend(statuses(&app, || get(host), 1).await);
    }
    assert_eq!(got, [200, 200, 200, 429]);
    assert_eq!(statuses(&app, || get("2001:db8:1:3::1"), 1).await, [200]);
    assert_eq!(
        statuses(&app, || get("192.0.2.1"), 3).await,
        [200, 200, 200]
    );
    assert_eq!(statuses(&app, || get("::ffff:192.0.2.1"), 1).await, [429]);
}

#[actix_web::test]
async fn a_missing_identity_gets_a_clear_response() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let limiter = limiter(&clock).await;
    let app1 = app!(RateLimit::new(limiter.clone()));
    let no_peer = || TestRequest::get().uri("/");
    let response = test::call_service(&app1, no_peer().to_request()).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = test::read_body(response).await;
    assert!(
        body.starts_with(b"the peer's address is unknown"),
        "{body:?}"
    );

    let app2 = app!(
        RateLimit::new(
            Gate::new(limiter).key_extractor(HeaderId::new("x-api-key", IdKind::Service))
        )
        .on_missing_key(|_| HttpResponse::Unauthorized().body("api key required"))
    );
    assert_eq!(statuses(&app2, no_peer, 1).await, [401]);
    let keyed = || no_peer().insert_header(("x-api-key", "k1"));
    assert_eq!(statuses(&app2, keyed, 1).await, [200]);
}

#[actix_web::test]
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
    let app = app!(
        RateLimit::new(
            Gate::new(limiter)
                .key_extractor(UserServiceOrIp::default())
                .cost(|request| if request.header("x-bulk").is_some() {
                    2
                } else {
                    1
                })
                .legacy_headers(true)
        )
        .on_denied(|verdict| {
            HttpResponse::TooManyRequests().body(format!("slow down: {:?}", verdict.retry_after()))
        })
    );
    let bulk = || get("10.0.0.1").insert_header(("x-bulk", "1"));
    let first = test::call_service(&app, bulk().to_request()).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header(&first, "ratelimit"), Some("\"default\";r=1;t=1"));
    assert_eq!(header(&first, "x-ratelimit-limit"), Some("3"));
    assert_eq!(header(&first, "x-ratelimit-remaining"), Some("1"));
    assert_eq!(header(&first, "x-ratelimit-reset"), Some("1"));
    let denied = test::call_service(&app, bulk().to_request()).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&denied, "retry-after"), Some("1"));
    assert_eq!(test::read_body(denied).await, "slow down: 333.334ms");
    assert_eq!(statuses(&app, || get("10.0.0.1"), 2).await, [200, 429]);
}

#[actix_web::test]
async fn headers_on_denials_only() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let app = app!(RateLimit::new(
        Gate::new(limiter(&clock).await)
            .legacy_headers(true)
            .admitted_headers(false)
    ));
    for _ in 0..3 {
        let admitted = test::call_service(&app, get("10.0.0.1").to_request()).await;
        assert_eq!(admitted.status(), StatusCode::OK);
        let names: Vec<_> = admitted.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["content-type"], "an admitted response is untouched");
    }
    let denied = test::call_service(&app, get("10.0.0.1").to_request()).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&denied, "ratelimit-policy"),
        Some("\"default\";q=3;w=1")
    );
    assert_eq!(header(&denied, "ratelimit"), Some("\"default\";r=0;t=1"));
    assert_eq!(header(&denied, "retry-after"), Some("1"));
    assert_eq!(header(&denied, "x-ratelimit-remaining"), Some("0"));
}

#[actix_web::test]
async fn a_failing_or_hanging_store_gets_the_failure_policy_within_the_timeout() {
    // actix-rt runs a current-thread Tokio runtime: its time can be paused.
    tokio::time::pause();
    let stores: [Arc<dyn ratelimit_core::Store>; 2] =
        [Arc::new(FailingStore), Arc::new(HangingStore)];
    for store in stores {
        for (policy, status, retry) in [
            (FailurePolicy::FailOpen, 200, None),
            (FailurePolicy::FailClosed, 503, Some("2")),
        ] {
            let limiter = DistributedRateLimiter::new(
                LimiterConfig::new(Arc::clone(&store))
                    .failure_policy(policy)
                    .timeout(Duration::from_millis(20))
                    .fail_closed_retry_after(Duration::from_secs(2)),
            );
            limiter
                .add_rule("default", Target::Each, 3, SEC)
                .await
                .unwrap();
            let app = app!(RateLimit::new(limiter));
            let started = tokio::time::Instant::now();
            let response = test::call_service(&app, get("10.0.0.1").to_request()).await;
            // Virtual time: the hanging store is cut off by the timeout
            // (Tokio's timer rounds its deadline up to the next millisecond).
            let waited = started.elapsed();
            assert!(waited <= Duration::from_millis(21), "{waited:?}");
            assert_eq!(response.status().as_u16(), status, "{policy:?}");
            assert_eq!(header(&response, "retry-after"), retry, "{policy:?}");
            // The rule is listed as the store would list it, rested.
            assert_eq!(
                header(&response, "ratelimit"),
                Some("\"default\";r=3;t=0"),
                "{policy:?}"
            );
        }
    }
}
