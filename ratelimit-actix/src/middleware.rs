//! [`RateLimit`]: the middleware factory (`App::wrap`) and its
//! framework-specific settings.

use std::future::{Ready, ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::HttpResponse;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderValue;
use ratelimit_core::Verdict;
use ratelimit_core::http::{Gate, KeyError, Refusal, Responders};

use crate::fields::Fields;
use crate::service::RateLimitMiddleware;

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

/// What a middleware and its instances share: the gate, and the
/// application's own refusals.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) gate: Gate,
    responders: Responders<HttpResponse>,
}

impl RateLimit {
    /// A middleware passing requests through `gate` (a
    /// [`DistributedRateLimiter`](ratelimit_core::DistributedRateLimiter)
    /// converts into a gate with the defaults).
    pub fn new(gate: impl Into<Gate>) -> Self {
        let settings = Settings {
            gate: gate.into(),
            responders: Responders::new(),
        };
        Self {
            settings: Arc::new(settings),
        }
    }

    /// The response for a request the rules deny (default: the status and
    /// text of the refusal). The rate-limit headers are added to it.
    pub fn on_denied(
        mut self,
        respond: impl Fn(&Verdict) -> HttpResponse + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.settings)
            .responders
            .set_denied(respond);
        self
    }

    /// The response for a request whose caller cannot be found (default:
    /// the extractor's status, plain text).
    pub fn on_missing_key(
        mut self,
        respond: impl Fn(&KeyError) -> HttpResponse + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.settings)
            .responders
            .set_missing_key(respond);
        self
    }
}

impl Settings {
    /// The response to a refused request, header fields included.
    pub(crate) fn refuse(&self, refusal: &mut Refusal<HeaderValue>) -> HttpResponse {
        let mut response = self
            .responders
            .denied(refusal)
            .unwrap_or_else(|| plain(refusal.status()).body(refusal.body()));
        Gate::add_fields(&mut Fields(response.headers_mut()), refusal.take_fields());
        response
    }

    /// The response to a request whose caller cannot be found.
    pub(crate) fn missing_key(&self, error: &KeyError) -> HttpResponse {
        self.responders
            .missing_key(error)
            .unwrap_or_else(|| plain(error.status()).body(format!("{}\n", error.reason())))
    }
}

/// A plain-text response builder with `status`.
fn plain(status: u16) -> actix_web::HttpResponseBuilder {
    // Made at compile time, so a refusal neither checks nor copies it.
    const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = HttpResponse::build(status);
    builder.content_type(TEXT_PLAIN);
    builder
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
