//! The management API answers alike through axum and actix-web: the same
//! scripted requests, on twin limiters, get the same status, content type,
//! challenge header and body byte for byte — authentication, CRUD,
//! validation errors, oversized bodies, status and reset.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use ratelimit_core::Rules;
use std::sync::Arc;

use actix_web::App;
use actix_web::test::{self as actix_test, TestRequest};
use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use ratelimit_core::admin::AdminApi;
use ratelimit_core::{
    DistributedRateLimiter, Identity, LimiterConfig, MemoryStore, Quota, Rule, Target,
    clock::FakeClock,
};
use tower::ServiceExt;

/// Status, content type, `www-authenticate`, body.
type Answer = (u16, Option<String>, Option<String>, Vec<u8>);

const TOKEN: &str = "agree-token";

fn limiter(clock: &FakeClock) -> DistributedRateLimiter {
    DistributedRateLimiter::new(
        LimiterConfig::new(Arc::new(MemoryStore::with_clock(clock.clone())))
            .rule(Rule::new("default", Target::Each, Quota::per_second(3).unwrap()).unwrap()),
    )
}

/// (method, path and query, authorization, body)
fn script() -> Vec<(&'static str, String, Option<String>, Vec<u8>)> {
    let auth = Some(format!("Bearer {TOKEN}"));
    let json = |s: &str| s.as_bytes().to_vec();
    let steps = vec![
        ("GET", "/admin/rules".into(), None, vec![]),
        (
            "GET",
            "/admin/rules".into(),
            Some("Bearer nope".into()),
            vec![],
        ),
        (
            "DELETE",
            "/admin/rules/default".into(),
            Some("Basic x".into()),
            vec![],
        ),
        ("GET", "/admin/rules".into(), auth.clone(), vec![]),
        ("GET", "/admin/rules/default".into(), auth.clone(), vec![]),
        ("GET", "/admin/rules/nope".into(), auth.clone(), vec![]),
        (
            "PUT",
            "/admin/rules/vip".into(),
            auth.clone(),
            json(r#"{"target":"user:7","limit":9,"window_ms":2500,"priority":3}"#),
        ),
        (
            "PUT",
            "/admin/rules/vip".into(),
            auth.clone(),
            json(r#"{"target":"user:7","limit":8,"window_ms":2500}"#),
        ),
        (
            "PATCH",
            "/admin/rules/vip".into(),
            auth.clone(),
            json(r#"{"window_ms":5000}"#),
        ),
        ("PATCH", "/admin/rules/vip".into(), auth.clone(), json("{}")),
        ("PUT", "/admin/rules/x".into(), auth.clone(), json("{oops")),
        (
            "PUT",
            "/admin/rules/x".into(),
            auth.clone(),
            json(r#"{"target":"*","limit":0,"window_ms":1}"#),
        ),
        (
            "PUT",
            "/admin/rules/x".into(),
            auth.clone(),
            json(r#"{"target":"*","limit":1,"window_ms":1,"color":1}"#),
        ),
        (
            "PUT",
            "/admin/rules/bad%07id".into(),
            auth.clone(),
            json(r#"{"target":"*","limit":1,"window_ms":1}"#),
        ),
        (
            "PUT",
            "/admin/rules/x".into(),
            auth.clone(),
            vec![b' '; 20_000],
        ),
        ("PUT", "/admin/rules/x".into(), None, vec![b' '; 20_000]),
        (
            "GET",
            "/admin/status?target=user%3A1&rule=default".into(),
            auth.clone(),
            vec![],
        ),
        (
            "GET",
            "/admin/status?target=user:1".into(),
            auth.clone(),
            vec![],
        ),
        (
            "GET",
            "/admin/status?target=planet:1&rule=default".into(),
            auth.clone(),
            vec![],
        ),
        (
            "POST",
            "/admin/reset?target=user:1&rule=default".into(),
            auth.clone(),
            vec![],
        ),
        (
            "GET",
            "/admin/status?target=user:1&rule=default".into(),
            auth.clone(),
            vec![],
        ),
        (
            "POST",
            "/admin/reset?target=user:1&rule=default".into(),
            None,
            vec![],
        ),
        ("DELETE", "/admin/rules/vip".into(), auth.clone(), vec![]),
        ("DELETE", "/admin/rules/vip".into(), auth.clone(), vec![]),
        ("GET", "/admin/rules".into(), auth, vec![]),
    ];
    steps
}

async fn tower_answer(
    router: &Router,
    (method, uri, auth, body): &(&str, String, Option<String>, Vec<u8>),
) -> Answer {
    let mut request = axum::http::Request::builder().method(*method).uri(uri);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body.clone())).unwrap())
        .await
        .unwrap();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &axum::http::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let (status, content_type, challenge) = (
        response.status().as_u16(),
        header("content-type"),
        header("www-authenticate"),
    );
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, content_type, challenge, body)
}

#[actix_web::test]
async fn both_adapters_serve_the_admin_api_byte_for_byte_alike() {
    let clock = FakeClock::at_micros(7_000_000_000);
    let (for_tower, for_actix) = (limiter(&clock), limiter(&clock));
    for limiter in [&for_tower, &for_actix] {
        limiter
            .check(&Identity::user("1"), &Rules::one("default"), 1)
            .await
            .unwrap();
    }
    let router = Router::new().nest(
        "/admin",
        ratelimit_tower::admin::router(AdminApi::new(for_tower.clone(), TOKEN).unwrap()),
    );
    let actix = actix_test::init_service(App::new().service(ratelimit_actix::admin::scope(
        "/admin",
        AdminApi::new(for_actix.clone(), TOKEN).unwrap(),
    )))
    .await;

    let mut statuses = Vec::new();
    for step in script() {
        let a = tower_answer(&router, &step).await;
        let (method, uri, auth, body) = &step;
        let mut request = TestRequest::default()
            .method(method.parse().unwrap())
            .uri(uri)
            .set_payload(body.clone());
        if let Some(auth) = auth {
            request = request.insert_header(("authorization", auth.as_str()));
        }
        let response = actix_test::call_service(&actix, request.to_request()).await;
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let (status, content_type, challenge) = (
            response.status().as_u16(),
            header("content-type"),
            header("www-authenticate"),
        );
        let body = actix_test::read_body(response).await.to_vec();
        let b = (status, content_type, challenge, body);
        assert_eq!(
            a,
            b,
            "{method} {uri}: {} / {}",
            String::from_utf8_lossy(&a.3),
            String::from_utf8_lossy(&b.3)
        );
        statuses.push(a.0);
    }
    assert_eq!(
        statuses,
        [
            401, 401, 401, 200, 200, 404, 201, 200, 200, 400, 400, 400, 400, 400, 413, 401, 200,
            400, 400, 200, 200, 401, 200, 404, 200
        ]
    );
    // Both limiters were changed alike.
    assert_eq!(for_tower.rules().version(), for_actix.rules().version());
}
