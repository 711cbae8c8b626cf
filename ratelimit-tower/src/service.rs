//! [`RateLimit`]: the service the layer wraps around yours.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use ratelimit_core::http::{Gate, Passage};
use tower::Service;

use crate::RequestHead;
use crate::fields::Fields;
use crate::future::ResponseFuture;
use crate::settings::Settings;

/// Rate limits requests before they reach `S`. Built by
/// [`RateLimitLayer`](crate::RateLimitLayer).
///
/// The decision is made in `call` when the store answers in place (the
/// in-memory store does) and otherwise inside the response future — never
/// in `poll_ready`: the service stays `Clone`, and a slow store delays only
/// the request that waits on it, never longer than the limiter's timeout.
///
/// The inner service's response body must be buildable from a `String` and
/// a `&'static str` (axum's `Body` and http-body-util's `Full` are):
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
        let settings = &self.settings;
        // Borrowed where it is, not split into parts and joined again.
        let head = RequestHead::from(&request);
        let entry = match settings.gate.entry(&head) {
            Ok(entry) => entry,
            Err(error) => return ResponseFuture::ready(Ok(settings.missing_key(&error))),
        };
        // A store that answers in place (the in-memory one) is decided right
        // here: no future, no task wake-up, no clone of the inner service.
        let pending = match settings.gate.try_pass::<Fields<'_>>(&entry) {
            Ok(Passage::Admit(fields)) => {
                return ResponseFuture::admitted(self.inner.call(request), fields);
            }
            Ok(Passage::Refuse(mut refusal)) => {
                // The request goes first, so the refusal can reuse its
                // freed memory.
                drop(request);
                return ResponseFuture::ready(Ok(refuse(settings, &mut refusal)));
            }
            Err(pending) => pending,
        };

        // A store that must be awaited (Redis): the check, with what the
        // attempt prepared, then the inner call, in one boxed future. The
        // clone takes this service's place; the one that was polled ready
        // goes into the future (the usual tower pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let settings = Arc::clone(&self.settings);
        ResponseFuture::checking(Box::pin(async move {
            match settings.gate.pass::<Fields<'_>>(pending).await {
                Passage::Admit(fields) => {
                    let mut response = inner.call(request).await?;
                    Gate::add_fields(&mut Fields(response.headers_mut()), fields);
                    Ok(response)
                }
                Passage::Refuse(mut refusal) => {
                    drop(request);
                    Ok(refuse(&settings, &mut refusal))
                }
            }
        }))
    }
}

/// The response to a refused request, header fields included. The
/// refusal is borrowed where it is, not moved (it holds the verdict).
#[inline]
fn refuse<B: From<String> + From<&'static str>>(
    settings: &Settings,
    refusal: &mut ratelimit_core::http::Refusal<http::HeaderValue>,
) -> Response<B> {
    let mut response = settings.refusal(refusal);
    Gate::add_fields(&mut Fields(response.headers_mut()), refusal.take_fields());
    response
}
