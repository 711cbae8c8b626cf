//! The management API as an actix-web [`Scope`] (feature `admin`): the
//! routes of [`ratelimit_core::admin`], answered by its [`AdminApi`], so the
//! tower adapter answers byte for byte alike.
//!
//! ```
//! use std::sync::Arc;
//! use actix_web::App;
//! use ratelimit_core::admin::AdminApi;
//! use ratelimit_core::{DistributedRateLimiter, LimiterConfig, MemoryStore};
//!
//! # fn main() -> Result<(), ratelimit_core::Error> {
//! let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())));
//! let api = AdminApi::new(limiter, "example-token")?;
//! let app = App::new().service(ratelimit_actix::admin::scope("/admin", api));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! Serve it only when a token is configured; the API has no anonymous mode.

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, Scope, web};
use ratelimit_core::admin::{
    AdminApi, AdminError, AdminRequest, AdminResponse, MAX_BODY_BYTES, Operation,
};

/// The API's routes under `path` (such as `/admin`): `GET /rules`,
/// `GET|PUT|PATCH|DELETE /rules/{id}`, `GET /status`, `POST /reset`.
pub fn scope(path: &str, api: AdminApi) -> Scope {
    web::scope(path)
        .app_data(web::Data::new(api))
        .route("/rules", web::get().to(list_rules))
        .route("/rules/{id}", web::get().to(get_rule))
        .route("/rules/{id}", web::put().to(insert_rule))
        .route("/rules/{id}", web::patch().to(patch_rule))
        .route("/rules/{id}", web::delete().to(delete_rule))
        .route("/status", web::get().to(status))
        .route("/reset", web::post().to(reset))
}

fn authorization(request: &HttpRequest) -> Option<&[u8]> {
    request
        .headers()
        .get(AUTHORIZATION)
        .map(HeaderValue::as_bytes)
}

fn id(request: &HttpRequest) -> &str {
    request.match_info().get("id").unwrap_or_default()
}

async fn answer(api: &AdminApi, request: &HttpRequest, operation: Operation<'_>) -> HttpResponse {
    let admin_request = AdminRequest::new(authorization(request), operation);
    into_response(api.handle(admin_request).await)
}

fn into_response(answer: AdminResponse) -> HttpResponse {
    let status = StatusCode::from_u16(answer.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    for (name, value) in answer.headers() {
        response.insert_header((
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
    }
    response.body(answer.into_body())
}

/// The body, unless it is too large to be valid.
async fn body(payload: web::Payload) -> Result<web::Bytes, AdminError> {
    match payload.to_bytes_limited(MAX_BODY_BYTES).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => Err(AdminError::invalid("body", error.to_string())),
        Err(_) => Err(AdminError::too_large(MAX_BODY_BYTES)),
    }
}

async fn list_rules(api: web::Data<AdminApi>, request: HttpRequest) -> HttpResponse {
    answer(&api, &request, Operation::ListRules).await
}

async fn get_rule(api: web::Data<AdminApi>, request: HttpRequest) -> HttpResponse {
    answer(&api, &request, Operation::GetRule { id: id(&request) }).await
}

async fn insert_rule(
    api: web::Data<AdminApi>,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    with_body(&api, &request, payload, |id, body| Operation::PutRule {
        id,
        body,
    })
    .await
}

async fn patch_rule(
    api: web::Data<AdminApi>,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    with_body(&api, &request, payload, |id, body| Operation::PatchRule {
        id,
        body,
    })
    .await
}

/// An operation on one rule that carries a body (PUT, PATCH).
async fn with_body(
    api: &AdminApi,
    request: &HttpRequest,
    payload: web::Payload,
    operation: for<'a> fn(&'a str, &'a [u8]) -> Operation<'a>,
) -> HttpResponse {
    match body(payload).await {
        Ok(body) => answer(api, request, operation(id(request), &body)).await,
        Err(error) => into_response(api.refuse(authorization(request), &error)),
    }
}

async fn delete_rule(api: web::Data<AdminApi>, request: HttpRequest) -> HttpResponse {
    answer(&api, &request, Operation::DeleteRule { id: id(&request) }).await
}

async fn status(api: web::Data<AdminApi>, request: HttpRequest) -> HttpResponse {
    let query = request.query_string();
    answer(&api, &request, Operation::Status { query }).await
}

async fn reset(api: web::Data<AdminApi>, request: HttpRequest) -> HttpResponse {
    let query = request.query_string();
    answer(&api, &request, Operation::Reset { query }).await
}
