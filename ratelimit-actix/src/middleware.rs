//! [`RateLimit`]: the middleware factory (`App::wrap`) and its settings.

use std::fmt;
use std::future::{Ready, ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderValue;
use actix_web::{HttpRequest, HttpResponse};
use ratelimit_core::headers::HeaderOptions;
use ratelimit_core::{DistributedRateLimiter, Rules, Verdict, verdict::Source};

use crate::key::{KeyError, KeyExtractor, UserServiceOrIp};
use crate::service::RateLimitMiddleware;
use crate::settings::Settings;

/// Rate limits every request of the app, scope or resource it wraps, with a
/// [`DistributedRateLimiter`]. See the [crate docs](crate) for an example.
///
/// Defaults (the same as `ratelimit-tower`'s layer): callers found by
/// [`UserServiceOrIp`]; every rule that applies to the caller checked at
/// once; cost 1; `RateLimit` and `RateLimit-Policy` on every response
/// (see [`admitted_headers`](Self::admitted_headers)); 429 with
/// `Retry-After` when denied, 503 with `Retry-After` when the store is down
/// and the failure policy denies.
#[derive(Clone)]
#[must_use]
pub struct RateLimit {
    settings: Arc<Settings>,
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("settings", &self.settings)
            .finish()
    }
}

impl RateLimit {
    /// A middleware checking requests with `limiter`.
    pub fn new(limiter: DistributedRateLimiter) -> Self {
        Self {
            settings: Arc::new(Settings {
                limiter,
                extractor: Arc::new(UserServiceOrIp::default()),
                rules: Rules::applicable(),
                cost: None,
                headers: HeaderOptions::new(),
                on_denied: Arc::new(default_denial),
                on_missing_key: Arc::new(default_key_error),
            }),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Settings)) -> Self {
        change(Arc::make_mut(&mut self.settings));
        self
    }

    /// How callers are found (default [`UserServiceOrIp`]).
    pub fn key_extractor(self, extractor: impl KeyExtractor + Send + Sync) -> Self {
        self.with(|s| s.extractor = Arc::new(extractor))
    }

    /// Which rules a request is checked against (default
    /// [`Rules::applicable`]): e.g. `Rules::route(["login", "default"])` on
    /// one scope or resource. A rule the limiter does not have (say its rule
    /// store lost it) is answered by the failure policy; a named rule that
    /// does not apply to the caller gets 500, a server misconfiguration.
    pub fn rules(self, rules: Rules) -> Self {
        self.with(|s| s.rules = rules)
    }

    /// The cost of a request (default 1).
    pub fn cost(self, cost: impl Fn(&HttpRequest) -> u32 + Send + Sync + 'static) -> Self {
        self.with(|s| s.cost = Some(Arc::new(cost)))
    }

    /// Also send `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
    pub fn legacy_headers(self, on: bool) -> Self {
        self.with(|s| s.headers = s.headers.legacy(on))
    }

    /// Whether admitted responses carry the rate-limit headers too (default
    /// `true`). With `false` only denials carry them, and an admitted
    /// response goes out untouched — a little less work per request, for
    /// clients that do not pace themselves by the headers.
    pub fn admitted_headers(self, on: bool) -> Self {
        self.with(|s| s.headers = s.headers.admitted(on))
    }

    /// The response for a denied request (default: 429, plain text). The
    /// rate-limit headers are added to it.
    pub fn on_denied(
        self,
        respond: impl Fn(&Verdict) -> HttpResponse + Send + Sync + 'static,
    ) -> Self {
        self.with(|s| s.on_denied = Arc::new(respond))
    }

    /// The response for a request whose caller cannot be found.
    pub fn on_missing_key(
        self,
        respond: impl Fn(&KeyError) -> HttpResponse + Send + Sync + 'static,
    ) -> Self {
        self.with(|s| s.on_missing_key = Arc::new(respond))
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

/// Made at compile time, so a denial neither checks nor copies it.
const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

fn plain(status: StatusCode, body: &'static str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(TEXT_PLAIN)
        .body(body)
}

/// 429 for a denial by the rules, 503 when the store is down and the
/// failure policy denied — the same responses as the tower layer's.
pub(crate) fn default_denial(verdict: &Verdict) -> HttpResponse {
    if verdict.source() == Source::FailClosed {
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "Rate limiting is unavailable; try again later.\n",
        )
    } else {
        plain(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n")
    }
}

pub(crate) fn default_key_error(error: &KeyError) -> HttpResponse {
    HttpResponse::build(error.status())
        .content_type(TEXT_PLAIN)
        .body(format!("{}\n", error.reason()))
}
