//! [`RateLimit`]: the service the layer wraps around yours.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use ratelimit_core::{Error, headers};
use tower::Service;

use crate::future::ResponseFuture;
use crate::layer::{Rules, Settings};

/// Rate limits requests before they reach `S`. Built by
/// [`RateLimitLayer`](crate::RateLimitLayer).
///
/// The decision is made inside the response future (not in `poll_ready`):
/// the service stays `Clone`, and a slow store delays only the request that
/// waits on it, never longer than the limiter's timeout.
#[derive(Debug)]
pub struct RateLimit<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S: Clone> Clone for RateLimit<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<S> RateLimit<S> {
    pub(crate) fn new(inner: S, settings: Arc<Settings>) -> Self {
        Self { inner, settings }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let settings = Arc::clone(&self.settings);
        let (parts, body) = request.into_parts();
        let identity = match settings.extractor.extract(&parts) {
            Ok(identity) => identity,
            Err(error) => {
                return ResponseFuture::ready(convert((settings.on_missing_key)(&error)));
            }
        };
        let cost = settings.cost.as_ref().map_or(1, |cost| cost(&parts));
        // The clone takes this service's place; the one that was polled
        // ready goes into the future (the usual tower pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::checking(Box::pin(async move {
            let limiter = &settings.limiter;
            let caller = identity.caller();
            let result = match &settings.rules {
                Rules::Applicable => limiter.check_all_cost(caller, cost).await,
                Rules::Named(rules) => {
                    let ids: Vec<&str> = rules.iter().map(String::as_str).collect();
                    limiter.check_rules(caller, &ids, cost).await
                }
                Rules::Route(rules) => {
                    let ids: Vec<&str> = rules.iter().map(String::as_str).collect();
                    limiter.check_route(caller, &ids, cost).await
                }
            };
            let verdict = match result {
                Ok(verdict) => verdict,
                Err(error) => return Ok(convert(misconfigured(&error))),
            };
            let values = headers::values(&verdict, settings.legacy_headers);
            let mut response = if verdict.allowed() {
                inner.call(Request::from_parts(parts, body)).await?
            } else {
                convert((settings.on_denied)(&verdict))
            };
            add_headers(&mut response, values);
            Ok(response)
        }))
    }
}

fn convert<B: From<String>>(response: Response<String>) -> Response<B> {
    response.map(B::from)
}

/// A check refused for a reason that is the server's, not the caller's (an
/// unknown rule on a route, a cost above a rule's burst).
fn misconfigured(error: &Error) -> Response<String> {
    let mut response = Response::new(format!("rate limiting is misconfigured: {error}\n"));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

fn add_headers<B>(response: &mut Response<B>, values: headers::HeaderValues) {
    let target = response.headers_mut();
    target.reserve(6);
    for (name, value) in values.into_pairs() {
        // `from_maybe_shared` takes the String's buffer instead of copying
        // it. The values `headers::values` makes are always valid.
        if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
            target.insert(HeaderName::from_static(name), value);
        }
    }
}
