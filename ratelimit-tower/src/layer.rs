//! [`RateLimitLayer`]: the layer.

use std::sync::Arc;

use http::Response;
use ratelimit_core::Verdict;
use ratelimit_core::http::{Gate, KeyError, Responders};
use tower::Layer;

use crate::service::RateLimit;
use crate::settings::Settings;

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

impl RateLimitLayer {
    /// A layer passing requests through `gate` (a
    /// [`DistributedRateLimiter`](ratelimit_core::DistributedRateLimiter)
    /// converts into a gate with the defaults).
    pub fn new(gate: impl Into<Gate>) -> Self {
        Self {
            settings: Arc::new(Settings::new(gate.into())),
        }
    }

    /// The response for a request the rules deny (default: the status and
    /// text of the refusal). The rate-limit headers are added to it.
    pub fn on_denied(
        self,
        respond: impl Fn(&Verdict) -> Response<String> + Send + Sync + 'static,
    ) -> Self {
        self.respond_with(|responders| responders.set_denied(respond))
    }

    /// The response for a request whose caller cannot be found (default: the
    /// extractor's status, plain text).
    pub fn on_missing_key(
        self,
        respond: impl Fn(&KeyError) -> Response<String> + Send + Sync + 'static,
    ) -> Self {
        self.respond_with(|responders| responders.set_missing_key(respond))
    }

    fn respond_with(mut self, set: impl FnOnce(&mut Responders<Response<String>>)) -> Self {
        set(&mut Arc::make_mut(&mut self.settings).responders);
        self
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, Arc::clone(&self.settings))
    }
}
