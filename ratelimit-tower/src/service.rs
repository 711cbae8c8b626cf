//! [`RateLimit`]: the service the layer wraps around yours.

use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use ratelimit_core::headers::{self, FieldValue};
use ratelimit_core::{Error, Verdict};
use tower::Service;

use crate::RequestHead;
use crate::future::ResponseFuture;
use crate::layer::Settings;

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
        // Borrowed where it is: splitting the request into parts and joining
        // them again copied its whole head twice.
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
        // Read where it was returned: binding the verdict by value copied
        // it out of the `Option`.
        let checked = settings
            .limiter
            .try_check_choice(identity.caller(), &settings.rules, cost);
        if let Some(result) = &checked {
            return match after_check(settings, result) {
                Next::Admit(values) => {
                    let future = self.inner.call(request);
                    ResponseFuture::admitted(future, values)
                }
                Next::Refuse => {
                    // The request goes first: the refusal then reuses its
                    // freed memory (measurably cheaper under a flood).
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
                .check_choice(identity.caller(), &settings.rules, cost)
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

#[inline]
pub(crate) fn add_headers<B>(response: &mut Response<B>, values: Option<Values>) {
    // Inlined to this test: most admitted responses carry no fields when
    // `admitted_headers` is off, and a call to find that out cost more.
    if let Some(values) = values {
        insert_all(response.headers_mut(), values);
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
    // The names are built at compile time (`from_static` at run time would
    // validate them on every request).
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
