//! [`RateLimitLayer`]: the layer and its settings.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::{Response, StatusCode};
use ratelimit_core::headers::HeaderOptions;
use ratelimit_core::{DistributedRateLimiter, Rules, Verdict};
use tower::Layer;

use crate::RequestHead;
use crate::key::{KeyError, KeyExtractor, UserServiceOrIp};
use crate::service::RateLimit;
use crate::settings::Settings;

/// Rate limits every request that passes through, with a
/// [`DistributedRateLimiter`]. See the [crate docs](crate) for an example.
///
/// Defaults: callers found by [`UserServiceOrIp`]; every rule that applies
/// to the caller checked at once; cost 1; `RateLimit` and
/// `RateLimit-Policy` on every response (see
/// [`admitted_headers`](Self::admitted_headers)); 429 with `Retry-After` when
/// denied, 503 with `Retry-After` when the store is down and the failure
/// policy denies.
#[derive(Clone)]
#[must_use]
pub struct RateLimitLayer {
    settings: Arc<Settings>,
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("settings", &self.settings)
            .finish()
    }
}

impl RateLimitLayer {
    /// A layer checking requests with `limiter`.
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
        // Copies the settings only if this layer was cloned before.
        change(Arc::make_mut(&mut self.settings));
        self
    }

    /// How callers are found (default [`UserServiceOrIp`]).
    pub fn key_extractor(self, extractor: impl KeyExtractor) -> Self {
        self.with(|s| s.extractor = Arc::new(extractor))
    }

    /// Which rules a request is checked against (default
    /// [`Rules::applicable`]): e.g. `Rules::route(["login", "default"])` on
    /// one route with `Router::route_layer`. A rule the limiter does not
    /// have (say its rule store lost it) is answered by the failure policy;
    /// a named rule that does not apply to the caller (a rule for another
    /// user) gets 500, a server misconfiguration.
    pub fn rules(self, rules: Rules) -> Self {
        self.with(|s| s.rules = rules)
    }

    /// The cost of a request (default 1), from its head — e.g. by route or
    /// by a header the client cannot forge.
    pub fn cost(self, cost: impl Fn(&RequestHead<'_>) -> u32 + Send + Sync + 'static) -> Self {
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
        respond: impl Fn(&Verdict) -> Response<String> + Send + Sync + 'static,
    ) -> Self {
        self.with(|s| s.on_denied = Arc::new(move |verdict| respond(verdict).map(Cow::Owned)))
    }

    /// The response for a request whose caller cannot be found (default: the
    /// extractor's status, plain text).
    pub fn on_missing_key(
        self,
        respond: impl Fn(&KeyError) -> Response<String> + Send + Sync + 'static,
    ) -> Self {
        self.with(|s| s.on_missing_key = Arc::new(respond))
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, Arc::clone(&self.settings))
    }
}

fn plain<T: Into<Cow<'static, str>>>(status: StatusCode, body: T) -> Response<Cow<'static, str>> {
    // Checked at compile time: `from_static` at run time checks every byte
    // of it on every denial.
    const TEXT_PLAIN: http::HeaderValue =
        http::HeaderValue::from_static("text/plain; charset=utf-8");
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, TEXT_PLAIN);
    response
}

/// 429 for a denial by the rules, 503 when the store is down and the
/// failure policy denied.
pub(crate) fn default_denial(verdict: &Verdict) -> Response<Cow<'static, str>> {
    if verdict.source() == ratelimit_core::verdict::Source::FailClosed {
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "Rate limiting is unavailable; try again later.\n",
        )
    } else {
        plain(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n")
    }
}

pub(crate) fn default_key_error(error: &KeyError) -> Response<String> {
    plain(error.status(), format!("{}\n", error.reason())).map(Cow::into_owned)
}
