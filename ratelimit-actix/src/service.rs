//! [`RateLimitMiddleware`]: the service the middleware wraps around yours.

use std::rc::Rc;
use std::sync::Arc;

use actix_web::HttpResponse;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, forward_ready};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use ratelimit_core::headers::{self, FieldValue};
use ratelimit_core::{Error, Verdict};

use crate::future::ResponseFuture;
use crate::settings::Settings;

/// Rate limits requests before they reach `S`. Built by
/// [`RateLimit`](crate::RateLimit).
///
/// As in the tower layer, a store that answers in place (the in-memory one)
/// is decided inside `call`: an admitted request is the inner service's own
/// future plus the headers. A store that must be awaited (Redis) runs in one
/// boxed future, never longer than the limiter's timeout.
#[derive(Debug)]
pub struct RateLimitMiddleware<S> {
    service: Rc<S>,
    settings: Arc<Settings>,
}

impl<S> RateLimitMiddleware<S> {
    pub(crate) fn new(service: Rc<S>, settings: Arc<Settings>) -> Self {
        Self { service, settings }
    }
}

impl<S, B> Service<ServiceRequest> for RateLimitMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = ResponseFuture<S::Future, B>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let settings = &self.settings;
        let identity = match settings.extractor.extract(request.request()) {
            Ok(identity) => identity,
            Err(error) => {
                let response = (settings.on_missing_key)(&error);
                return ResponseFuture::ready(
                    request.into_response(response).map_into_right_body(),
                );
            }
        };
        let cost = settings
            .cost
            .as_ref()
            .map_or(1, |cost| cost(request.request()));

        // Read where it was returned, not moved out of the `Option`.
        let checked = settings.limiter.try_check(&identity, &settings.rules, cost);
        if let Some(result) = &checked {
            return match after_check(settings, result) {
                Next::Admit(values) => ResponseFuture::admitted(self.service.call(request), values),
                Next::Respond(response) => {
                    ResponseFuture::ready(request.into_response(response).map_into_right_body())
                }
            };
        }

        let service = Rc::clone(&self.service);
        let settings = Arc::clone(&self.settings);
        ResponseFuture::checking(Box::pin(async move {
            let result = settings
                .limiter
                .check(&identity, &settings.rules, cost)
                .await;
            match after_check(&settings, &result) {
                Next::Admit(values) => {
                    let mut response = service.call(request).await?;
                    add_headers(response.headers_mut(), values);
                    Ok(response.map_into_left_body())
                }
                Next::Respond(response) => {
                    Ok(request.into_response(response).map_into_right_body())
                }
            }
        }))
    }
}

/// What becomes of a request once its check is done.
enum Next {
    /// Pass it on; add these headers to the response.
    Admit(Option<Values>),
    /// Answer it with this (a denial or a misconfiguration), headers included.
    Respond(HttpResponse),
}

fn after_check(settings: &Settings, result: &Result<Verdict, Error>) -> Next {
    let verdict = match result {
        Ok(verdict) => verdict,
        Err(error) => return Next::Respond(misconfigured(error)),
    };
    let values = header_values(settings, verdict);
    if verdict.allowed() {
        Next::Admit(values)
    } else {
        let mut response = (settings.on_denied)(verdict);
        add_headers(response.headers_mut(), values);
        Next::Respond(response)
    }
}

/// A check refused for a reason that is the server's, not the caller's (an
/// unknown rule on a route, a cost above a rule's burst).
fn misconfigured(error: &Error) -> HttpResponse {
    HttpResponse::build(StatusCode::INTERNAL_SERVER_ERROR)
        .body(format!("rate limiting is misconfigured: {error}\n"))
}

#[inline]
pub(crate) fn add_headers(target: &mut HeaderMap, values: Option<Values>) {
    // Inlined down to this test: with `admitted_headers` off most admitted
    // responses carry no fields, and need not pay a call to find that out.
    if let Some(values) = values {
        insert_all(target, values);
    }
}

/// The header values of a response, the `RateLimit-Policy` one already
/// a `HeaderValue`.
pub(crate) type Values = headers::HeaderValues<HeaderValue>;

/// The header values for `verdict` on this response, if any. The policy
/// value is made through core's per-thread memo: a clone of the one made
/// before, its bytes checked once per policy instead of on every response.
#[inline]
fn header_values(settings: &Settings, verdict: &Verdict) -> Option<Values> {
    settings.headers.values_with(verdict, |policy| {
        HeaderValue::from_maybe_shared(policy.into_bytes()).ok()
    })
}

fn insert_all(target: &mut HeaderMap, values: Values) {
    const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static(headers::RATE_LIMIT_POLICY);
    const RATE_LIMIT: HeaderName = HeaderName::from_static(headers::RATE_LIMIT);
    const RETRY_AFTER: HeaderName = HeaderName::from_static(headers::RETRY_AFTER);
    const X_LIMIT: HeaderName = HeaderName::from_static(headers::X_RATE_LIMIT_LIMIT);
    const X_REMAINING: HeaderName = HeaderName::from_static(headers::X_RATE_LIMIT_REMAINING);
    const X_RESET: HeaderName = HeaderName::from_static(headers::X_RATE_LIMIT_RESET);

    // One by one, not through an array of `(name, Option<String>)`: the
    // admitted path sends two fields, and moving six through an array cost
    // more than inserting them.
    if let Some(value) = values.rate_limit_policy {
        target.insert(RATE_LIMIT_POLICY, value);
    }
    insert(target, RATE_LIMIT, values.rate_limit);
    insert(target, RETRY_AFTER, values.retry_after);
    if let Some(legacy) = values.legacy.map(|l| *l) {
        insert(target, X_LIMIT, Some(legacy.limit));
        insert(target, X_REMAINING, Some(legacy.remaining));
        insert(target, X_RESET, Some(legacy.reset));
    }
}

#[inline]
fn insert(target: &mut HeaderMap, name: HeaderName, value: Option<FieldValue>) {
    // `from_maybe_shared` keeps the value's buffer instead of copying it.
    // The values `headers::values` makes are always valid.
    if let Some(Ok(value)) = value.map(|v| HeaderValue::from_maybe_shared(v.into_bytes())) {
        target.insert(name, value);
    }
}
