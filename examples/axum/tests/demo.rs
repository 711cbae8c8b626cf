//! The demo app: its routes and rules through `oneshot`, a real socket, and
//! two instances sharing one real Redis.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use std::time::Duration;

use axum::http::{Request, StatusCode};
use example_common::Settings;
use ratelimit_core::{MemoryStore, clock::FakeClock};
use ratelimit_test_support::RedisServer;
use ratelimit_test_support::http::exchange;
use tokio::net::TcpListener;
use tower::ServiceExt;

fn request(method: &str, path: &str, user: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    if let Some(user) = user {
        builder = builder.header("x-user-id", user);
    }
    builder.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn routes_and_rules() {
    let clock = FakeClock::at_micros(1_000_000_000);
    let limiter = example_axum::memory_limiter_on(MemoryStore::with_clock(clock.clone())).unwrap();
    let app = example_axum::app(limiter, &Settings::default());
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let response = app
            .clone()
            .oneshot(request("GET", "/", None))
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    // 10 per second for this address.
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 429]
    );
    clock.advance(Duration::from_millis(100));
    let response = app
        .clone()
        .oneshot(request("GET", "/", None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // `login` counts the client address: twenty logins from one address,
    // each claiming another user, are five admitted logins.
    let mut login = Vec::new();
    for user in 0..20 {
        let response = app
            .clone()
            .oneshot(request("POST", "/login", Some(&format!("user-{user}"))))
            .await
            .unwrap();
        login.push(response.status().as_u16());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(response.headers()["retry-after"], "12");
        } else {
            assert_eq!(
                response.headers()["ratelimit-policy"],
                "\"global\";q=1000;w=1, \"login\";q=5;w=60, \"default\";q=10;w=1"
            );
        }
    }
    assert_eq!(login.iter().filter(|&&status| status == 200).count(), 5);
    assert_eq!(login[..5], [200; 5]);
    // Another address logs in.
    let mut other = request("POST", "/login", Some("user-0"));
    other
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 2], 40_000))));
    assert_eq!(
        app.clone().oneshot(other).await.unwrap().status(),
        StatusCode::OK
    );

    let health = app
        .clone()
        .oneshot(request("GET", "/healthz", None))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(health.headers().get("ratelimit").is_none(), "never limited");
}

/// A minimal HTTP/1.1 exchange on a real socket: status and raw head.
async fn http(addr: SocketAddr, method: &str, path: &str, user: &str) -> (u16, String) {
    let reply = exchange(addr, method, path, &[("x-user-id", user)], b"").await;
    (
        reply.status,
        format!("{}\r\n\r\n{}", reply.head, reply.body),
    )
}

async fn serve(app: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

#[tokio::test]
async fn over_a_real_socket() {
    let addr = serve(example_axum::app(
        example_axum::memory_limiter().unwrap(),
        &Settings::default(),
    ))
    .await;
    let (status, reply) = http(addr, "GET", "/", "1").await;
    assert_eq!(status, 200);
    let reply = reply.to_ascii_lowercase();
    assert!(
        reply.contains("ratelimit: \"global\";r=999;t=1, \"default\";r=9;t=1"),
        "{reply}"
    );
    assert!(reply.ends_with("hello\n"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_share_the_limit() {
    let server = RedisServer::start();
    let a = example_axum::redis_limiter(&server.url()).await.unwrap();
    let b = example_axum::redis_limiter(&server.url()).await.unwrap();
    let a = serve(example_axum::app(a, &Settings::default())).await;
    let b = serve(example_axum::app(b, &Settings::default())).await;
    let mut admitted = 0;
    for i in 0..12 {
        let addr = if i % 2 == 0 { a } else { b };
        let (status, _) = http(addr, "POST", "/login", "alice").await;
        assert!(status == 200 || status == 429, "{status}");
        admitted += usize::from(status == 200);
    }
    // login: 5 per minute, shared by both instances.
    assert_eq!(admitted, 5);

    // The store down: /healthz says so, with the policy in force.
    drop(server);
    let (status, reply) = http(a, "GET", "/healthz", "x").await;
    assert_eq!(status, 503, "{reply}");
    assert!(reply.contains("\"store\":\"unavailable\""), "{reply}");
    assert!(
        reply.contains("\"failure_policy\":\"fail_open\""),
        "{reply}"
    );
}

#[tokio::test]
async fn admin_only_with_a_token_and_metrics_always() {
    let limiter = example_axum::memory_limiter().unwrap();
    let without = example_axum::app(limiter.clone(), &Settings::default());
    let response = without
        .clone()
        .oneshot(request("GET", "/admin/rules", None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "no token, no API");

    let settings = Settings {
        trusted_proxies: Vec::new(),
        admin: Some(ratelimit_core::admin::AdminApi::new(limiter.clone(), "demo-token").unwrap()),
    };
    let with = example_axum::app(limiter, &settings);
    let mut list = request("GET", "/admin/rules", None);
    list.headers_mut()
        .insert("authorization", "Bearer demo-token".parse().unwrap());
    let response = with.clone().oneshot(list).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let ids: Vec<&str> = body["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| rule["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["default", "global", "login"]);

    // A request, then /metrics counts it under its rules (the recorder is
    // shared by every app in this process, so count at least one).
    with.clone()
        .oneshot(request("GET", "/", Some("metrics-user")))
        .await
        .unwrap();
    let response = with
        .oneshot(request("GET", "/metrics", None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8(text.to_vec()).unwrap();
    let allowed = text
        .lines()
        .find(|l| l.starts_with("ratelimit_checks_total{rule=\"default\",outcome=\"allowed\"}"))
        .unwrap_or_else(|| panic!("{text}"));
    let count: f64 = allowed.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1.0, "{allowed}");
    assert!(text.contains("ratelimit_rules 3"), "{text}");
    assert!(!text.contains("metrics-user"), "no caller becomes a label");
}

/// The demo started while its Redis is down: served by the failure policy
/// (never a 500), `/healthz` says why; Redis comes up and the demo uses it,
/// with the fleet's rules, without a restart; Redis restarts empty and the
/// rules are put back, no request failing meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_while_redis_is_down_then_redis_comes_and_goes() {
    let mut server = RedisServer::start();
    server.kill();
    let limiter = example_axum::redis_limiter(&server.url()).await.unwrap();
    let addr = serve(example_axum::app(limiter, &Settings::default())).await;

    let (status, reply) = http(addr, "GET", "/healthz", "x").await;
    assert_eq!(status, 503, "{reply}");
    assert!(reply.contains("\"rules\":\"pending\""), "{reply}");
    assert!(
        reply.contains(&server.port().to_string()),
        "names the address: {reply}"
    );
    for _ in 0..3 {
        let (status, reply) = http(addr, "POST", "/login", "bob").await;
        assert_eq!(status, 200, "fail open: {reply}");
    }

    server.restart();
    ratelimit_test_support::wait_until(Duration::from_secs(5), "healthy", || async {
        let (status, reply) = http(addr, "GET", "/healthz", "x").await;
        status == 200 && reply.contains("\"rules\":\"synced\"")
    })
    .await;
    // The seeds filled the empty Redis.
    assert!(
        server
            .cli(&["HGET", "rl:{rules}:set", "login"])
            .contains("60000000")
    );

    // Redis restarts empty: requests keep their answers (never 500), and
    // the rules are back.
    server.restart();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let (status, _) = http(addr, "GET", "/", "carol").await;
        statuses.push(status);
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    ratelimit_test_support::wait_until(Duration::from_secs(2), "rules back", || async {
        server
            .cli(&["HGET", "rl:{rules}:set", "login"])
            .contains("60000000")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failure_policy_flag_decides_while_redis_is_down() {
    use clap::Parser;
    let mut server = RedisServer::start();
    let url = server.url();
    server.kill();
    for (flag, status, policy) in [
        ("closed", 503, "fail_closed"),
        ("open", 200, "fail_open"),
        ("fallback", 200, "local_fallback"),
    ] {
        let args = example_common::Args::try_parse_from([
            "example-axum",
            "--redis-url",
            url.as_str(),
            "--failure-policy",
            flag,
        ])
        .unwrap();
        let limiter = example_common::limiter_for(&args).await.unwrap();
        let addr = serve(example_axum::app(limiter, &Settings::default())).await;
        let (got, reply) = http(addr, "GET", "/", "1").await;
        assert_eq!(got, status, "{flag}: {reply}");
        let (got, reply) = http(addr, "GET", "/healthz", "1").await;
        assert_eq!(got, 503, "{reply}");
        assert!(
            reply.contains(&format!("\"failure_policy\":\"{policy}\"")),
            "{flag}: {reply}"
        );
    }
    assert!(example_common::Args::try_parse_from(["x", "--failure-policy", "maybe"]).is_err());
}

/// `--sentinel` (repeatable) with `--sentinel-master`: the demo finds the
/// primary through the sentinels, `/healthz` names it, and after the
/// primary is killed the demo serves from the promoted replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_sentinels_the_demo_follows_a_failover() {
    use clap::Parser;
    use ratelimit_test_support::{MASTER_NAME, RedisSentinels, wait_until};
    let mut group = RedisSentinels::start();
    let (primary, replica) = (group.servers[0].port(), group.servers[1].port());
    let mut argv = vec!["example-axum".to_owned()];
    for address in group.addresses() {
        argv.extend(["--sentinel".to_owned(), address]);
    }
    argv.extend(["--sentinel-master".to_owned(), MASTER_NAME.to_owned()]);
    let args = example_common::Args::try_parse_from(&argv).unwrap();
    assert_eq!(args.store_kind(), "redis-sentinel");
    let limiter = example_common::limiter_for(&args).await.unwrap();
    let addr = serve(example_axum::app(limiter, &Settings::default())).await;

    let healthy_on = |port: u16| async move {
        let (status, reply) = http(addr, "GET", "/healthz", "x").await;
        status == 200 && reply.contains(&format!("\"node\":\"127.0.0.1:{port}\""))
    };
    wait_until(Duration::from_secs(5), "healthy on the primary", || {
        healthy_on(primary)
    })
    .await;
    let (status, reply) = http(addr, "GET", "/", "before").await;
    assert_eq!(status, 200, "{reply}");

    group.servers[0].kill();
    wait_until(
        Duration::from_secs(30),
        "healthy on the promoted replica",
        || healthy_on(replica),
    )
    .await;
    let (status, reply) = http(addr, "GET", "/", "after").await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply.contains("ratelimit-policy"), "{reply}");

    // The flags go together, and not with --redis-url.
    for argv in [
        &["x", "--sentinel", "127.0.0.1:26379"][..],
        &["x", "--sentinel-master", "m"],
        &[
            "x",
            "--redis-url",
            "redis://127.0.0.1/",
            "--sentinel",
            "127.0.0.1:26379",
            "--sentinel-master",
            "m",
        ],
    ] {
        assert!(
            example_common::Args::try_parse_from(argv).is_err(),
            "{argv:?}"
        );
    }
}

/// `--durable-replicas 1` with `--failure-policy closed`: a request is
/// admitted only once the replica has its count; with the replica frozen,
/// 503; thawed, admitted again. Without Redis the flag is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_replicas_refuse_what_no_replica_acknowledged() {
    use clap::Parser;
    use ratelimit_test_support::wait_until;
    let primary = RedisServer::start();
    let replica =
        RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary.port().to_string()]);
    wait_until(Duration::from_secs(10), "the replica in sync", || async {
        replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    })
    .await;
    let url = primary.url();
    let args = example_common::Args::try_parse_from([
        "example-axum",
        "--redis-url",
        url.as_str(),
        "--durable-replicas",
        "1",
        "--failure-policy",
        "closed",
    ])
    .unwrap();
    assert_eq!(args.durable_replicas, 1);
    let limiter = example_common::limiter_for(&args).await.unwrap();
    let addr = serve(example_axum::app(limiter, &Settings::default())).await;
    wait_until(Duration::from_secs(5), "admitted", || async {
        http(addr, "GET", "/", "a").await.0 == 200
    })
    .await;

    replica.pause();
    let (status, reply) = http(addr, "GET", "/", "a").await;
    replica.resume();
    assert_eq!(status, 503, "{reply}");
    wait_until(Duration::from_secs(5), "admitted again", || async {
        http(addr, "GET", "/", "a").await.0 == 200
    })
    .await;

    assert!(example_common::Args::try_parse_from(["x", "--durable-replicas", "1"]).is_err());
}
