//! [`RateLimitLayer`]: the layer and its framework-specific settings.

use std::borrow::Cow;
use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode};
use ratelimit_core::Verdict;
use ratelimit_core::http::{Gate, KeyError, Refusal, Responders};
use tower::Layer;

use crate::service::RateLimit;

/// Rate limits every request that passes through, as its
/// [`Gate`] says: who asks, which rules, what cost, which header fields.
/// See the [crate docs](crate) for an example.
///
/// Refusals: 429 with `Retry-After` when the rules deny, 503 when the store
/// is down and the failure policy denies, the extractor's status (400, 401,
/// 500) when no caller can be found — each overridable.
#[derive(Debug, Clone)]
#[must_use]
pub struct RateLimitLayer {
    pub(crate) settings: Arc<Settings>,
}

/// What a layer and its services share.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) gate: Gate,
    responders: Responders<Response<String>>,
}

impl RateLimitLayer {
    /// A layer passing requests through `gate` (a
    /// [`DistributedRateLimiter`](ratelimit_core::DistributedRateLimiter)
    /// converts into a gate with the defaults).
    pub fn new(gate: impl Into<Gate>) -> Self {
        let (gate, responders) = (gate.into(), Responders::new());
        Self {
            settings: Arc::new(Settings { gate, responders }),
        }
    }

    /// The response for a request the rules deny (default: the status and
    /// text of the refusal). The rate-limit headers are added to it.
    pub fn on_denied(
        mut self,
        respond: impl Fn(&Verdict) -> Response<String> + Send + Sync + 'static,
    ) -> Self {
        let settings = Arc::make_mut(&mut self.settings);
        settings.responders.set_denied(respond);
        self
    }

    /// The response for a request whose caller cannot be found (default: the
    /// extractor's status, plain text).
    pub fn on_missing_key(
        mut self,
        respond: impl Fn(&KeyError) -> Response<String> + Send + Sync + 'static,
    ) -> Self {
        let settings = Arc::make_mut(&mut self.settings);
        settings.responders.set_missing_key(respond);
        self
    }
}

impl Settings {
    /// The response to a refused request, without its header fields.
    pub(crate) fn refusal<B: From<String> + From<&'static str>>(
        &self,
        refusal: &Refusal<HeaderValue>,
    ) -> Response<B> {
        if let Some(response) = self.responders.denied(refusal) {
            return response.map(B::from);
        }
        let body = match refusal.body() {
            // The default denial's body: no allocation, no copy.
            Cow::Borrowed(text) => B::from(text),
            Cow::Owned(text) => B::from(text),
        };
        plain(refusal.status(), body)
    }

    /// The response to a request whose caller cannot be found.
    pub(crate) fn missing_key<B: From<String>>(&self, error: &KeyError) -> Response<B> {
        match self.responders.missing_key(error) {
            Some(response) => response.map(B::from),
            None => plain(error.status(), B::from(format!("{}\n", error.reason()))),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, Arc::clone(&self.settings))
    }
}

fn plain<B>(status: u16, body: B) -> Response<B> {
    // Checked at compile time: `from_static` at run time checks every byte
    // of it on every refusal.
    const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, TEXT_PLAIN);
    response
}
