//! Operating a fleet through the demos' HTTP APIs: three instances (two
//! axum, one actix-web) on one real Redis. A rule changed through one
//! instance's `/admin` is in force on every instance within a second and
//! survives an instance's restart; concurrent changes through two instances
//! end in one state everywhere; `/metrics` reports what happened.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use example_common::Settings;
use ratelimit_core::DistributedRateLimiter;
use ratelimit_core::admin::AdminApi;
use ratelimit_test_support::http::{Reply, exchange};
use ratelimit_test_support::{RedisServer, wait_until};
use serde_json::Value;
use support::{serve_actix, serve_axum, serve_axum_stoppable};

mod support;

const TOKEN: &str = "fleet-admin-token";
const AUTH: &str = "Bearer fleet-admin-token";

async fn limiter(server: &RedisServer) -> (DistributedRateLimiter, Settings) {
    let limiter = example_common::redis_limiter(&server.url()).await.unwrap();
    let settings = Settings {
        trusted_proxies: Vec::new(),
        admin: Some(AdminApi::new(limiter.clone(), TOKEN).unwrap()),
    };
    (limiter, settings)
}

async fn admin(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let reply = exchange(
        addr,
        method,
        path,
        &[
            ("authorization", AUTH),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{reply:?}"
    );
    (reply.status, serde_json::from_str(&reply.body).unwrap())
}

async fn login_limit(addr: SocketAddr) -> u64 {
    let (status, body) = admin(addr, "GET", "/admin/rules/login", "").await;
    assert_eq!(status, 200, "{body}");
    body["rule"]["limit"].as_u64().unwrap()
}

async fn login(addr: SocketAddr, user: &str) -> Reply {
    exchange(addr, "POST", "/login", &[("x-user-id", user)], b"").await
}

#[actix_web::test]
async fn an_admin_change_reaches_the_fleet_within_a_second_and_survives_restarts() {
    let server = RedisServer::start();
    let (a, settings_a) = limiter(&server).await;
    let (b, settings_b) = limiter(&server).await;
    let (c, settings_c) = limiter(&server).await;
    let (a_addr, a_task) = serve_axum_stoppable(a, &settings_a).await;
    let b_addr = serve_axum(b, &settings_b).await;
    let c_addr = serve_actix(c, settings_c);

    // Without the token nothing is shown or changed.
    let refused = exchange(a_addr, "GET", "/admin/rules", &[], b"").await;
    assert_eq!(refused.status, 401);

    // `login` is seeded at 5 per minute; make it 2 through instance A.
    let (status, body) = admin(
        a_addr,
        "PUT",
        "/admin/rules/login",
        r#"{"target":"*","limit":2,"window_ms":60000}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let propagation = wait_until(Duration::from_secs(1), "in force on B and C", || async {
        login_limit(b_addr).await == 2 && login_limit(c_addr).await == 2
    })
    .await;
    eprintln!("rule change in force on B and C after {propagation:?}");

    // Enforced as one limit: 2 logins for bob, across B and C.
    let mut statuses = Vec::new();
    for addr in [b_addr, c_addr, b_addr, c_addr] {
        statuses.push(login(addr, "bob").await.status);
    }
    assert_eq!(statuses, [200, 200, 429, 429]);

    // Status through C agrees, and a reset through B frees bob everywhere.
    let (_, status) = admin(
        c_addr,
        "GET",
        "/admin/status?target=user:bob&rule=login",
        "",
    )
    .await;
    assert_eq!(
        (status["allowed"].clone(), status["remaining"].clone()),
        (false.into(), 0.into())
    );
    let (code, _) = admin(
        b_addr,
        "POST",
        "/admin/reset?target=user:bob&rule=login",
        "",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(login(a_addr, "bob").await.status, 200);

    // A crashes and comes back: the fleet's rule is loaded, the seed (5 per
    // minute) does not overwrite it.
    a_task.abort();
    let (a2, settings_a2) = limiter(&server).await;
    let a2_addr = serve_axum(a2, &settings_a2).await;
    assert_eq!(login_limit(a2_addr).await, 2);

    // The instances report it (axum B and actix C alike): rules reloaded,
    // checks counted by rule.
    for addr in [b_addr, c_addr] {
        let metrics = exchange(addr, "GET", "/metrics", &[], b"").await;
        assert_eq!(metrics.status, 200);
        assert!(
            metrics.body.contains("ratelimit_rules_version "),
            "{}",
            metrics.body
        );
    }
    let metrics = exchange(b_addr, "GET", "/metrics", &[], b"").await;
    assert!(
        metrics
            .body
            .contains("ratelimit_rule_changes_total{change=\"reload\"}"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("ratelimit_checks_total{rule=\"login\",outcome=\"denied\"}"),
        "{}",
        metrics.body
    );
    assert!(!metrics.body.contains("bob"), "no caller becomes a label");
}

#[actix_web::test]
async fn concurrent_admin_changes_through_two_instances_converge() {
    let server = RedisServer::start();
    let (a, settings_a) = limiter(&server).await;
    let (b, settings_b) = limiter(&server).await;
    let (c, settings_c) = limiter(&server).await;
    let addrs = [
        serve_axum(a.clone(), &settings_a).await,
        serve_actix(b.clone(), settings_b),
        serve_axum(c.clone(), &settings_c).await,
    ];

    // 2 × 15 changes to one rule at once: PUTs (whole rule) and PATCHes
    // (limit only, a compare-and-set) through A and B.
    let mut changes = Vec::new();
    for i in 0..15_u32 {
        let (put, patch) = (
            format!(
                r#"{{"target":"*","limit":{},"window_ms":1000,"shadow":{}}}"#,
                100 + i,
                i % 2 == 0
            ),
            format!(r#"{{"limit":{}}}"#, 200 + i),
        );
        changes.push((addrs[0], "PUT", put));
        changes.push((addrs[1], "PATCH", patch));
    }
    let answers = futures::future::join_all(
        changes
            .iter()
            .map(|(addr, method, body)| admin(*addr, method, "/admin/rules/race", body)),
    )
    .await;
    let mut applied = 0;
    for (status, body) in &answers {
        // A PATCH may come before the first PUT (404) or lose its
        // compare-and-set too often (409); nothing else.
        assert!(matches!(status, 200 | 201 | 404 | 409), "{status}: {body}");
        applied += usize::from(matches!(status, 200 | 201));
    }
    assert!(applied >= 15, "every PUT applies: {applied}");

    // Every instance ends with the same rule at the same version, and it is
    // one that was written (a PUT's or a PATCH of a PUT's rule — never a mix
    // of two PUTs).
    let views = || async {
        let mut views = Vec::new();
        for addr in addrs {
            let (status, body) = admin(addr, "GET", "/admin/rules/race", "").await;
            assert_eq!(status, 200);
            views.push(body);
        }
        views
    };
    wait_until(Duration::from_secs(2), "one state everywhere", || async {
        let views = views().await;
        views.iter().all(|v| *v == views[0])
    })
    .await;
    let views = views().await;
    assert!(views.iter().all(|v| *v == views[0]), "{views:?}");
    let rule = &views[0]["rule"];
    let limit = rule["limit"].as_u64().unwrap();
    assert!(
        (100..115).contains(&limit) || (200..215).contains(&limit),
        "{rule}"
    );
    if (100..115).contains(&limit) {
        assert_eq!(rule["shadow"], (limit - 100) % 2 == 0, "{rule}");
    }
}
