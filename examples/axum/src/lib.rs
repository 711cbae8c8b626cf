//! The main demo's app, as a library so tests can drive it. Routes, rules
//! and callers: see `example-common`, shared with the actix-web demo.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
pub use example_common::{Settings, memory_limiter, memory_limiter_on, redis_limiter, rules};
use ratelimit_core::DistributedRateLimiter;
use ratelimit_tower::RateLimitLayer;

/// The app. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn app(limiter: DistributedRateLimiter, settings: &Settings) -> Router {
    let limit = |rules: &[&str]| RateLimitLayer::new(settings.gate(&limiter, rules));
    let app = Router::new()
        .route(
            "/",
            get(|| async { "hello\n" }).route_layer(limit(&["default"])),
        )
        .route(
            "/login",
            post(|| async { "welcome\n" }).route_layer(limit(&["login", "default"])),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(limiter);
    match &settings.admin {
        Some(api) => app.nest("/admin", ratelimit_tower::admin::router(api.clone())),
        None => app,
    }
}

async fn healthz(State(limiter): State<DistributedRateLimiter>) -> impl IntoResponse {
    let (status, body) = example_common::health(&limiter).await;
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, example_common::METRICS_CONTENT_TYPE)],
        example_common::render_metrics(),
    )
}
