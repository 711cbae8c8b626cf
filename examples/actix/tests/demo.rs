//! The actix-web demo: its routes and rules through `actix_web::test` with a
//! fake clock, a real socket, and a mixed fleet — one axum and one actix-web
//! instance on one real Redis — admitting exactly the limit between them.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::test::{self, TestRequest};
use example_common::Settings;
use ratelimit_core::{MemoryStore, clock::FakeClock};
use ratelimit_test_support::RedisServer;
use ratelimit_test_support::http::exchange;
use support::{serve_actix, serve_axum};

mod support;

fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40_000))
}

#[actix_web::test]
async fn routes_and_rules_match_the_axum_demo() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let limiter = example_actix::memory_limiter_on(MemoryStore::with_clock(clock.clone())).unwrap();
    let app = test::init_service(example_actix::app(limiter, Settings::default())).await;
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let request = TestRequest::get().uri("/").peer_addr(peer()).to_request();
        statuses.push(test::call_service(&app, request).await.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 429]
    );
    clock.advance(Duration::from_millis(100));
    let request = TestRequest::get().uri("/").peer_addr(peer()).to_request();
    assert_eq!(test::call_service(&app, request).await.status(), 200);

    // `login` counts the client address: twenty logins from one address,
    // each claiming another user, are five admitted logins.
    let mut login = Vec::new();
    for user in 0..20 {
        let request = TestRequest::post()
            .uri("/login")
            .peer_addr(peer())
            .insert_header(("x-user-id", format!("user-{user}")))
            .to_request();
        let response = test::call_service(&app, request).await;
        login.push(response.status().as_u16());
        if response.status() == 429 {
            assert_eq!(response.headers().get("retry-after").unwrap(), "12");
        } else {
            assert_eq!(
                response.headers().get("ratelimit-policy").unwrap(),
                "\"global\";q=1000;w=1, \"login\";q=5;w=60, \"default\";q=10;w=1"
            );
        }
    }
    assert_eq!(login.iter().filter(|&&status| status == 200).count(), 5);
    assert_eq!(login[..5], [200; 5]);
    // Another address logs in.
    let request = TestRequest::post()
        .uri("/login")
        .peer_addr(SocketAddr::from(([127, 0, 0, 2], 40_000)))
        .insert_header(("x-user-id", "user-0"))
        .to_request();
    assert_eq!(test::call_service(&app, request).await.status(), 200);

    let request = TestRequest::get().uri("/healthz").to_request();
    let health = test::call_service(&app, request).await;
    assert_eq!(health.status(), 200);
    assert!(health.headers().get("ratelimit").is_none(), "never limited");
}

/// A minimal HTTP/1.1 exchange on a real socket: status and raw reply.
async fn http(addr: SocketAddr, method: &str, path: &str, user: &str) -> (u16, String) {
    let reply = exchange(addr, method, path, &[("x-user-id", user)], b"").await;
    (
        reply.status,
        format!("{}\r\n\r\n{}", reply.head, reply.body),
    )
}

#[actix_web::test]
async fn over_a_real_socket_with_the_axum_demos_headers() {
    let addr = serve_actix(
        example_actix::memory_limiter().unwrap(),
        Settings::default(),
    );
    let (status, reply) = http(addr, "GET", "/", "1").await;
    assert_eq!(status, 200, "{reply}");
    let reply = reply.to_ascii_lowercase();
    assert!(
        reply.contains("ratelimit: \"global\";r=999;t=1, \"default\";r=9;t=1"),
        "{reply}"
    );
    assert!(reply.ends_with("hello\n"), "{reply}");
}

#[actix_web::test]
async fn a_mixed_fleet_on_one_redis_shares_the_limit() {
    let server = RedisServer::start();
    let a = example_axum::redis_limiter(&server.url()).await.unwrap();
    let b = example_actix::redis_limiter(&server.url()).await.unwrap();
    let axum_addr = serve_axum(a, &Settings::default()).await;
    let actix_addr = serve_actix(b, Settings::default());
    let mut admitted = 0;
    let mut served_by = [0; 2];
    for i in 0..12 {
        let (addr, which) = if i % 2 == 0 {
            (axum_addr, 0)
        } else {
            (actix_addr, 1)
        };
        let (status, reply) = http(addr, "POST", "/login", "alice").await;
        assert!(status == 200 || status == 429, "{status}: {reply}");
        admitted += usize::from(status == 200);
        served_by[which] += usize::from(status == 200);
    }
    // login: 5 per minute, shared by both instances, whichever framework.
    assert_eq!(admitted, 5);
    assert!(served_by[0] > 0 && served_by[1] > 0, "{served_by:?}");

    drop(server);
    let (status, reply) = http(actix_addr, "GET", "/healthz", "x").await;
    assert_eq!(status, 503, "{reply}");
    assert!(reply.contains("\"store\":\"unavailable\""), "{reply}");
    assert!(
        reply.contains("\"failure_policy\":\"fail_open\""),
        "{reply}"
    );
}
