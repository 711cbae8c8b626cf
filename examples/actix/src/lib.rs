//! The actix-web demo's app, as a library so tests can drive it. Routes,
//! rules and callers are `example-axum`'s (see `example-common`).

use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{App, HttpResponse, web};
pub use example_common::{Settings, memory_limiter, memory_limiter_on, redis_limiter, rules};
use ratelimit_actix::RateLimit;
use ratelimit_core::DistributedRateLimiter;

/// The app, for `HttpServer::new(move || example_actix::app(..))`.
pub fn app(
    limiter: DistributedRateLimiter,
    settings: Settings,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let limit = |rules: &[&str]| RateLimit::new(settings.gate(&limiter, rules));
    let (home, login) = (limit(&["default"]), limit(&["login", "default"]));
    App::new()
        .app_data(web::Data::new(limiter))
        .service(
            web::resource("/")
                .wrap(home)
                .route(web::get().to(|| async { "hello\n" })),
        )
        .service(
            web::resource("/login")
                .wrap(login)
                .route(web::post().to(|| async { "welcome\n" })),
        )
        .route("/healthz", web::get().to(healthz))
        .route("/metrics", web::get().to(metrics))
        .configure(|config| {
            if let Some(api) = settings.admin {
                config.service(ratelimit_actix::admin::scope("/admin", api));
            }
        })
}

async fn healthz(limiter: web::Data<DistributedRateLimiter>) -> HttpResponse {
    let (status, body) = example_common::health(&limiter).await;
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE))
        .content_type(ContentType::json())
        .body(body)
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(example_common::METRICS_CONTENT_TYPE)
        .body(example_common::render_metrics())
}
