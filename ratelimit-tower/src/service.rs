//! [`RateLimit`]: the service the layer wraps around yours.

use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use ratelimit_core::{Error, Verdict};
use tower::Service;

use crate::RequestHead;
use crate::fields::{Values, add_headers, header_values};
use crate::future::ResponseFuture;
use crate::settings::Settings;

/// Rate limits requests before they reach `S`. Built by
/// [`RateLimitLayer`](crate::RateLimitLayer).
///
/// The decision is made in `call` when the store answers in place (the
/// in-memory store does) and otherwise inside the response future —
/// never in `poll_ready`: the service stays `Clone`, and a slow store delays
/// only the request that waits on it, never longer than the limiter's
/// timeout.
///
/// The inner service's response body must be buildable from a `String`
/// and a `&'static str` (axum's `Body` and http-body-util's `Full` are):
/// refusals are written in it, the default 429's body without allocating.
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
    ResBody: From<String> + From<&'static str> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // Borrowed where it is, not split into parts and joined again.
        let head = RequestHead::from(&request);
        let identity = match self.settings.extractor.extract(&head) {
            Ok(identity) => identity,
            Err(error) => {
                return ResponseFuture::ready(convert((self.settings.on_missing_key)(&error)));
            }
        };
        let cost = self.settings.cost.as_ref().map_or(1, |cost| cost(&head));

        // A store that answers in place (the in-memory one) is decided right
        // here: no future, no task wake-up, no clone of the inner service.
        let settings = &self.settings;
        // Read where it was returned, not moved out of the `Option`.
        let checked = settings.limiter.try_check(&identity, &settings.rules, cost);
        if let Some(result) = &checked {
            return match after_check(settings, result) {
                Next::Admit(values) => {
                    let future = self.inner.call(request);
                    ResponseFuture::admitted(future, values)
                }
                Next::Refuse => {
                    // The request goes first, so the refusal can reuse its
                    // freed memory.
                    drop(request);
                    ResponseFuture::ready(refusal(settings, result))
                }
            };
        }

        // A store that must be awaited (Redis): the check and then the inner
        // call run in one boxed future. The clone takes this service's place;
        // the one that was polled ready goes into the future (the usual tower
        // pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let settings = Arc::clone(&self.settings);
        ResponseFuture::checking(Box::pin(async move {
            let result = settings
                .limiter
                .check(&identity, &settings.rules, cost)
                .await;
            match after_check(&settings, &result) {
                Next::Admit(values) => {
                    let mut response = inner.call(request).await?;
                    add_headers(&mut response, values);
                    Ok(response)
                }
                Next::Refuse => {
                    drop(request);
                    Ok(refusal(&settings, &result))
                }
            }
        }))
    }
}

/// What becomes of a request once its check is done.
enum Next {
    /// Pass it on; add these headers to the response.
    Admit(Option<Values>),
    /// Answer it with [`refusal`] (a denial or a misconfiguration).
    Refuse,
}

fn after_check(settings: &Settings, result: &Result<Verdict, Error>) -> Next {
    match result {
        Ok(verdict) if verdict.allowed() => Next::Admit(header_values(settings, verdict)),
        _ => Next::Refuse,
    }
}

/// The response to a request the check refused, headers included.
fn refusal<B: From<String> + From<&'static str>>(
    settings: &Settings,
    result: &Result<Verdict, Error>,
) -> Response<B> {
    let verdict = match result {
        Ok(verdict) => verdict,
        Err(error) => return convert(misconfigured(error)),
    };
    let mut response = (settings.on_denied)(verdict).map(|body| match body {
        // The default denial's body: no allocation, no copy.
        Cow::Borrowed(text) => B::from(text),
        Cow::Owned(text) => B::from(text),
    });
    add_headers(&mut response, header_values(settings, verdict));
    response
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
