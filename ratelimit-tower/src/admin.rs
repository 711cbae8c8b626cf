//! The management API as an axum [`Router`] (feature `admin`): the routes
//! of [`ratelimit_core::admin`], answered by its [`AdminApi`], so the
//! actix-web adapter answers byte for byte alike.
//!
//! ```
//! use std::sync::Arc;
//! use axum::Router;
//! use ratelimit_core::admin::AdminApi;
//! use ratelimit_core::{DistributedRateLimiter, LimiterConfig, MemoryStore};
//!
//! # fn main() -> Result<(), ratelimit_core::Error> {
//! let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())));
//! let token = std::env::var("RATELIMIT_ADMIN_TOKEN").unwrap_or_else(|_| "example".into());
//! let app: Router = Router::new()
//!     // ... your routes, with the RateLimitLayer ...
//!     .nest("/admin", ratelimit_tower::admin::router(AdminApi::new(limiter, &token)?));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! Serve it only when a token is configured; the API has no anonymous mode.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ratelimit_core::admin::{AdminApi, AdminError, AdminRequest, AdminResponse, Operation};

/// The API's routes, to `nest` under a prefix such as `/admin`:
/// `GET /rules`, `GET|PUT|PATCH|DELETE /rules/{id}`, `GET /status`,
/// `POST /reset`.
pub fn router<S>(api: AdminApi) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/rules", get(list_rules))
        .route(
            "/rules/{id}",
            get(get_rule)
                .put(insert_rule)
                .patch(patch_rule)
                .delete(delete_rule),
        )
        .route("/status", get(status))
        .route("/reset", post(reset))
        .with_state(api)
}

fn authorization(headers: &HeaderMap) -> Option<&[u8]> {
    headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
}

async fn answer(api: &AdminApi, headers: &HeaderMap, operation: Operation<'_>) -> Response {
    let request = AdminRequest::new(authorization(headers), operation);
    into_response(api.handle(request).await)
}

fn into_response(answer: AdminResponse) -> Response {
    let status = StatusCode::from_u16(answer.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let pairs: Vec<(&'static str, &'static str)> = answer.headers().collect();
    let mut response = (status, answer.into_body()).into_response();
    for (name, value) in pairs {
        // `insert`: the JSON content type replaces the `String` body's.
        response.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

/// The body, unless it is too large to be valid.
async fn body(request: Request) -> Result<Bytes, AdminError> {
    let limit = ratelimit_core::admin::MAX_BODY_BYTES;
    axum::body::to_bytes(Body::new(request.into_body()), limit)
        .await
        .map_err(|_| AdminError::too_large(limit))
}

/// The `{id}` path segment, when it decodes.
fn rule_id(id: Result<Path<String>, PathRejection>) -> Result<String, AdminError> {
    id.map(|Path(id)| id)
        .map_err(|rejection| AdminError::invalid("id", rejection.body_text()))
}

/// The answer to a request that could not be read.
fn refused(api: &AdminApi, headers: &HeaderMap, error: &AdminError) -> Response {
    into_response(api.refuse(authorization(headers), error))
}

async fn list_rules(State(api): State<AdminApi>, headers: HeaderMap) -> Response {
    answer(&api, &headers, Operation::ListRules).await
}

async fn get_rule(
    State(api): State<AdminApi>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    on_rule(&api, id, &headers, |id| Operation::GetRule { id }).await
}

async fn insert_rule(
    State(api): State<AdminApi>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    with_body(&api, id, &headers, request, |id, body| Operation::PutRule {
        id,
        body,
    })
    .await
}

async fn patch_rule(
    State(api): State<AdminApi>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    with_body(&api, id, &headers, request, |id, body| {
        Operation::PatchRule { id, body }
    })
    .await
}

/// An operation on one rule without a body (GET, DELETE).
async fn on_rule(
    api: &AdminApi,
    id: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    operation: for<'a> fn(&'a str) -> Operation<'a>,
) -> Response {
    match rule_id(id) {
        Ok(id) => answer(api, headers, operation(&id)).await,
        Err(error) => refused(api, headers, &error),
    }
}

/// An operation on one rule that carries a body (PUT, PATCH).
async fn with_body(
    api: &AdminApi,
    id: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    request: Request,
    operation: for<'a> fn(&'a str, &'a [u8]) -> Operation<'a>,
) -> Response {
    let read = match rule_id(id) {
        Ok(id) => body(request).await.map(|body| (id, body)),
        Err(error) => Err(error),
    };
    match read {
        Ok((id, body)) => answer(api, headers, operation(&id, &body)).await,
        Err(error) => refused(api, headers, &error),
    }
}

async fn delete_rule(
    State(api): State<AdminApi>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    on_rule(&api, id, &headers, |id| Operation::DeleteRule { id }).await
}

async fn status(
    State(api): State<AdminApi>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    answer(&api, &headers, Operation::Status { query: &query }).await
}

async fn reset(
    State(api): State<AdminApi>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    answer(&api, &headers, Operation::Reset { query: &query }).await
}
