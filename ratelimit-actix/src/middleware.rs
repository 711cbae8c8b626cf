//! [`RateLimit`]: the middleware factory (`App::wrap`).

use std::future::{Ready, ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::HttpResponse;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use ratelimit_core::Verdict;
use ratelimit_core::http::{Gate, KeyError, Responders};

use crate::service::RateLimitMiddleware;
use crate::settings::Settings;

/// Rate limits every request of the app, scope or resource it wraps, as its
/// [`Gate`] says: who asks, which rules, what cost, which header fields —
/// the same gate, deciding alike, as `ratelimit-tower`'s layer. See the
/// [crate docs](crate) for an example.
///
/// Refusals: 429 with `Retry-After` when the rules deny, 503 when the store
/// is down and the failure policy denies, the extractor's status (400, 401,
/// 500) when no caller can be found — each overridable.
#[derive(Debug, Clone)]
#[must_use]
pub struct RateLimit {
    settings: Arc<Settings>,
}

impl RateLimit {
    /// A middleware passing requests through `gate` (a
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
        respond: impl Fn(&Verdict) -> HttpResponse + Send + Sync + 'static,
    ) -> Self {
        self.respond_with(|responders| responders.set_denied(respond))
    }

    /// The response for a request whose caller cannot be found (default:
    /// the extractor's status, plain text).
    pub fn on_missing_key(
        self,
        respond: impl Fn(&KeyError) -> HttpResponse + Send + Sync + 'static,
    ) -> Self {
        self.respond_with(|responders| responders.set_missing_key(respond))
    }

    fn respond_with(mut self, set: impl FnOnce(&mut Responders<HttpResponse>)) -> Self {
        set(&mut Arc::make_mut(&mut self.settings).responders);
        self
    }
}

impl<S, B> Transform<S, ServiceRequest> for RateLimit
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = RateLimitMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RateLimitMiddleware::new(
            Rc::new(service),
            Arc::clone(&self.settings),
        )))
    }
}
